/**
 * Sequence sets (RFC 3501 section 9: sequence-set; RFC 9051 section 9). `*` is the largest
 * number in use; `a:b` may be given in either order. For UIDs, `n:*` always includes the last
 * message even when n is larger than its UID (RFC 9051 section 6.4.8).
 */
import { ParseError } from './parser.js';

export interface SeqRange {
  /** Inclusive bounds; Infinity stands for `*`. */
  from: number;
  to: number;
}

const MAX_RANGES = 10_000;

export function parseSequenceSet(text: string): SeqRange[] {
  if (!/^[0-9:*,]+$/.test(text)) throw new ParseError('invalid sequence set');
  const parts = text.split(',');
  if (parts.length > MAX_RANGES) throw new ParseError('sequence set too long');
  return parts.map((part) => {
    const bounds = part.split(':');
    if (bounds.length > 2 || bounds.some((b) => b === '')) throw new ParseError('invalid sequence set');
    const nums = bounds.map((b) => {
      if (b === '*') return Infinity;
      if (!/^\d{1,10}$/.test(b)) throw new ParseError('invalid sequence number');
      const n = Number(b);
      if (n === 0 || n > 0xffffffff) throw new ParseError('invalid sequence number');
      return n;
    });
    const a = nums[0]!;
    const b = nums[1] ?? a;
    return { from: Math.min(a, b), to: Math.max(a, b) };
  });
}

/**
 * The members of `values` (a mailbox's UIDs, ascending) that the set selects, as indexes in
 * ascending order, each once. `*` is the largest number in use (RFC 3501 section 9): the last UID
 * for UIDs, the number of messages for sequence numbers.
 */
export function selectIndexes(ranges: SeqRange[], values: readonly number[], isUid: boolean): number[] {
  if (values.length === 0) return [];
  const max = isUid ? values[values.length - 1]! : values.length;
  if (ranges.length === 1) {
    // One range (1:*, the common case) selects ascending indexes once each: no set, no sort.
    const only: number[] = [];
    addRange(ranges[0]!, values, isUid, max, (i) => only.push(i));
    return only;
  }
  const out = new Set<number>();
  for (const r of ranges) addRange(r, values, isUid, max, (i) => out.add(i));
  return [...out].sort((a, b) => a - b);
}

/**
 * Calls add(index) for the indexes one range selects, ascending. A range is taken in either
 * order, so n:* with n beyond the last UID still means the last message (RFC 3501 section 6.4.8).
 */
function addRange(r: SeqRange, values: readonly number[], isUid: boolean, max: number, add: (i: number) => void): void {
  let from = r.from === Infinity ? max : r.from;
  let to = r.to === Infinity ? max : r.to;
  if (from > to) [from, to] = [to, from];
  if (isUid) {
    let lo = 0;
    let hi = values.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (values[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < values.length && values[i]! <= to; i++) add(i);
  } else {
    for (let seq = Math.max(1, from); seq <= Math.min(to, values.length); seq++) add(seq - 1);
  }
}

/** Compact UID set text for responses (COPYUID, VANISHED, ESEARCH ALL): 1:3,7,9:10. */
export function formatSet(values: Iterable<number>): string {
  const sorted = [...values].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}:${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** The same order, but keeping the caller's order (COPYUID pairs must correspond). */
export function formatList(values: number[]): string {
  return values.join(',');
}
