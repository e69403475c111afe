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

/** Budget for the backtracking of one :matches (hostile patterns such as "*a*a*a*a*b"). */
export const MAX_WILDCARD_STEPS = 1_000_000;

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

interface PatternPart {
  kind: 'literal' | 'star' | 'one';
  text: string;
}

function parsePattern(key: string): PatternPart[] {
  const parts: PatternPart[] = [];
  let lit = '';
  const chars = [...key];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '\\' && i + 1 < chars.length) {
      lit += chars[++i]!;
    } else if (ch === '*' || ch === '?') {
      if (lit) parts.push({ kind: 'literal', text: lit });
      lit = '';
      parts.push({ kind: ch === '*' ? 'star' : 'one', text: '' });
    } else lit += ch;
  }
  if (lit) parts.push({ kind: 'literal', text: lit });
  return parts;
}

/**
 * RFC 5228 2.7.1 :matches with "*" (any sequence) and "?" (one character), "\" escaping. On a
 * match, returns the values of the wildcards in order (RFC 5229 3.2: ${1}...), else undefined.
 */
export function wildcardMatch(value: string, key: string, c: Comparator): string[] | undefined {
  const parts = parsePattern(key);
  const chars = [...value];
  const folded = chars.map((ch) => fold(ch, c));
  let steps = 0;
  const captures: string[] = [];
  const go = (pi: number, vi: number): boolean => {
    if (++steps > MAX_WILDCARD_STEPS) throw new Error('match exceeds the cost limit');
    if (pi === parts.length) return vi === chars.length;
    const p = parts[pi]!;
    if (p.kind === 'literal') {
      const lit = [...fold(p.text, c)];
      for (let k = 0; k < lit.length; k++) if (folded[vi + k] !== lit[k]) return false;
      return go(pi + 1, vi + lit.length);
    }
    if (p.kind === 'one') {
      if (vi >= chars.length) return false;
      captures.push(chars[vi]!);
      if (go(pi + 1, vi + 1)) return true;
      captures.pop();
      return false;
    }
    // star: shortest first so that later wildcards get the most (Pigeonhole's non-greedy "*")
    for (let end = vi; end <= chars.length; end++) {
      captures.push(chars.slice(vi, end).join(''));
      if (go(pi + 1, end)) return true;
      captures.pop();
    }
    return false;
  };
  return go(0, 0) ? captures : undefined;
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
