/**
 * Comparators (RFC 4790: i;octet, i;ascii-casemap, i;ascii-numeric) and match types (RFC 5228
 * 2.7.1 :is :contains :matches, RFC 5231 :count :value, regex draft), with match variables.
 */
import { compileRegex } from './regex.js';

export type Comparator = 'i;octet' | 'i;ascii-casemap' | 'i;ascii-numeric';
export type Relation = 'gt' | 'ge' | 'lt' | 'le' | 'eq' | 'ne';

export interface MatchSpec {
  type: 'is' | 'contains' | 'matches' | 'regex' | 'count' | 'value';
  relation?: Relation;
  comparator: Comparator;
}

/** Budget of character compares for one :matches (a long pattern on a long header). */
export const MAX_WILDCARD_STEPS = 10_000_000;

const fold = (s: string, c: Comparator): string => (c === 'i;ascii-casemap' ? s.replace(/[A-Z]/g, (x) => x.toLowerCase()) : s);

/** i;ascii-numeric (RFC 4790 9.1): leading digits as a number; no digits is positive infinity. */
function numeric(s: string): bigint | undefined {
  const m = /^[0-9]+/.exec(s);
  return m ? BigInt(m[0]) : undefined;
}

/** -1, 0, 1 under the comparator. */
export function compare(a: string, b: string, c: Comparator): number {
  if (c === 'i;ascii-numeric') {
    const x = numeric(a);
    const y = numeric(b);
    if (x === undefined && y === undefined) return 0;
    if (x === undefined) return 1;
    if (y === undefined) return -1;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const x = fold(a, c);
  const y = fold(b, c);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function relate(cmp: number, r: Relation): boolean {
  switch (r) {
    case 'gt':
      return cmp > 0;
    case 'ge':
      return cmp >= 0;
    case 'lt':
      return cmp < 0;
    case 'le':
      return cmp <= 0;
    case 'eq':
      return cmp === 0;
    case 'ne':
      return cmp !== 0;
  }
}

/** One character of a pattern segment: a literal (folded) or "?" (any one character). */
type PatternChar = string | null;

/** The pattern split at its "*"s; "\\" escapes the next character (RFC 5228 2.7.1). */
function parsePattern(key: string, c: Comparator): PatternChar[][] {
  const segments: PatternChar[][] = [[]];
  const chars = [...key];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    const current = segments[segments.length - 1]!;
    if (ch === '\\' && i + 1 < chars.length) current.push(fold(chars[++i]!, c));
    else if (ch === '*') segments.push([]);
    else if (ch === '?') current.push(null);
    else current.push(fold(ch, c));
  }
  return segments;
}

/**
 * RFC 5228 2.7.1 :matches with "*" (any sequence) and "?" (one character). On a match, returns
 * the values of the wildcards in order (RFC 5229 3.2: ${1}...), else undefined. Each "*" takes
 * as little as it can (the last one the rest); segments between "*"s are placed leftmost, which
 * finds a match whenever there is one, in O(value x pattern) compares at most.
 */
export function wildcardMatch(value: string, key: string, c: Comparator): string[] | undefined {
  const segments = parsePattern(key, c);
  const chars = [...value];
  const folded = chars.map((ch) => fold(ch, c));
  let steps = 0;
  const fits = (seg: PatternChar[], at: number): boolean => {
    if (at < 0 || at + seg.length > folded.length) return false;
    for (let k = 0; k < seg.length; k++) {
      if (++steps > MAX_WILDCARD_STEPS) throw new Error('match exceeds the cost limit');
      const p = seg[k];
      if (p !== null && p !== folded[at + k]) return false;
    }
    return true;
  };
  const captures: string[] = [];
  const questionMarks = (seg: PatternChar[], at: number): void => {
    seg.forEach((p, k) => {
      if (p === null) captures.push(chars[at + k]!);
    });
  };
  const first = segments[0]!;
  if (segments.length === 1) {
    if (first.length !== chars.length || !fits(first, 0)) return undefined;
    questionMarks(first, 0);
    return captures;
  }
  const last = segments[segments.length - 1]!;
  const lastAt = chars.length - last.length;
  if (lastAt < first.length || !fits(first, 0) || !fits(last, lastAt)) return undefined;
  questionMarks(first, 0);
  let cursor = first.length;
  for (let i = 1; i < segments.length - 1; i++) {
    const seg = segments[i]!;
    let at = cursor;
    while (at + seg.length <= lastAt && !fits(seg, at)) at++;
    if (at + seg.length > lastAt) return undefined;
    captures.push(chars.slice(cursor, at).join(''));
    questionMarks(seg, at);
    cursor = at + seg.length;
  }
  captures.push(chars.slice(cursor, lastAt).join(''));
  questionMarks(last, lastAt);
  return captures;
}

/** The regex extension (POSIX extended syntax, see regex.ts). */
export function regexMatch(value: string, key: string, c: Comparator): string[] | undefined {
  const m = compileRegex(key, c === 'i;ascii-casemap').exec(value);
  return m ? Array.from(m, (x) => x ?? '') : undefined;
}

export interface MatchResult {
  matched: boolean;
  /** Match variables of the successful :matches/:regex (${0} is the whole value). */
  captures?: string[];
}

/** One value against the keys (RFC 5228 2.7: true if any key matches). Not for :count. */
export function matchValue(value: string, keys: string[], m: MatchSpec): MatchResult {
  for (const key of keys) {
    switch (m.type) {
      case 'is':
        if (compare(value, key, m.comparator) === 0) return { matched: true };
        break;
      case 'contains':
        if (m.comparator === 'i;ascii-numeric') {
          if (compare(value, key, m.comparator) === 0) return { matched: true };
        } else if (fold(value, m.comparator).includes(fold(key, m.comparator))) return { matched: true };
        break;
      case 'matches': {
        const caps = wildcardMatch(value, key, m.comparator);
        if (caps) return { matched: true, captures: [value, ...caps] };
        break;
      }
      case 'regex': {
        const caps = regexMatch(value, key, m.comparator);
        if (caps) return { matched: true, captures: caps };
        break;
      }
      case 'value':
        if (relate(compare(value, key, m.comparator), m.relation ?? 'eq')) return { matched: true };
        break;
      case 'count':
        break;
    }
  }
  return { matched: false };
}

/** Values against keys; :count counts the values (RFC 5231 section 4.1). */
export function matchValues(values: string[], keys: string[], m: MatchSpec): MatchResult {
  if (m.type === 'count') {
    const n = String(values.length);
    for (const key of keys) if (relate(compare(n, key, m.comparator), m.relation ?? 'eq')) return { matched: true };
    return { matched: false };
  }
  for (const v of values) {
    const r = matchValue(v, keys, m);
    if (r.matched) return r;
  }
  return { matched: false };
}
