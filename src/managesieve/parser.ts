/**
 * The tokens of a ManageSieve command (RFC 5804 section 4): atoms (command names, numbers)
 * and strings, quoted ("..." with \" and \\ escapes, at most 1024 octets) or literal ({N+} or
 * {N} and N octets). Strings are UTF-8; decoding them is strict (utf8 below).
 */
import type { RawCommand } from './reader.js';

export type Token = { kind: 'atom'; text: string } | { kind: 'string'; data: Buffer };

export class ParseError extends Error {}

const SP = 0x20;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const MAX_QUOTED = 1024;

function tokenizePiece(piece: Buffer, out: Token[]): void {
  let i = 0;
  while (i < piece.length) {
    const c = piece[i]!;
    if (c === SP) {
      i++;
      continue;
    }
    if (c === DQUOTE) {
      const bytes: number[] = [];
      i++;
      for (;;) {
        if (i >= piece.length) throw new ParseError('Unterminated quoted string');
        const b = piece[i]!;
        if (b === DQUOTE) break;
        if (b === BACKSLASH) {
          const next = piece[i + 1];
          if (next !== DQUOTE && next !== BACKSLASH) throw new ParseError('Invalid escape in quoted string');
          bytes.push(next);
          i += 2;
        } else if (b === 0x0d || b === 0x0a || b === 0) {
          throw new ParseError('Invalid character in quoted string');
        } else {
          bytes.push(b);
          i++;
        }
        if (bytes.length > MAX_QUOTED) throw new ParseError('Quoted string too long; use a literal');
      }
      i++;
      out.push({ kind: 'string', data: Buffer.from(bytes) });
      continue;
    }
    let end = i;
    while (end < piece.length && piece[end] !== SP) {
      const b = piece[end]!;
      if (b === DQUOTE || b < 0x20 || b > 0x7e || b === 0x7b || b === 0x7d || b === 0x28 || b === 0x29) {
        throw new ParseError('Invalid character in atom');
      }
      end++;
    }
    out.push({ kind: 'atom', text: piece.subarray(i, end).toString('latin1') });
    i = end;
  }
}

/** The tokens of a command, the literals in their places. */
export function tokenize(raw: RawCommand): Token[] {
  const out: Token[] = [];
  raw.pieces.forEach((piece, index) => {
    tokenizePiece(piece, out);
    const literal = raw.literals[index];
    if (literal !== undefined) out.push({ kind: 'string', data: literal });
  });
  return out;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Strict UTF-8 (RFC 5804 section 4: strings are UTF-8); undefined when the octets are not. */
export function utf8(data: Buffer): string | undefined {
  try {
    return decoder.decode(data);
  } catch {
    return undefined;
  }
}

/** The string argument at `index` (an atom where a client sends one bare, as for SASL responses). */
export function stringArg(args: Token[], index: number, what: string): Buffer {
  const t = args[index];
  if (!t) throw new ParseError(`Missing ${what}`);
  if (t.kind !== 'string') throw new ParseError(`${what} must be a string`);
  return t.data;
}

/** A string argument decoded as UTF-8. */
export function textArg(args: Token[], index: number, what: string): string {
  const text = utf8(stringArg(args, index, what));
  if (text === undefined) throw new ParseError(`${what} is not valid UTF-8`);
  return text;
}

/** A number argument (RFC 5804 section 4: number = 1*DIGIT, below 2^32). */
export function numberArg(args: Token[], index: number, what: string): number {
  const t = args[index];
  if (!t || t.kind !== 'atom' || !/^\d{1,10}$/.test(t.text) || Number(t.text) > 0xffffffff) throw new ParseError(`Invalid ${what}`);
  return Number(t.text);
}

export function argCount(args: Token[], n: number): void {
  if (args.length !== n) throw new ParseError(args.length > n ? 'Too many arguments' : 'Missing arguments');
}
