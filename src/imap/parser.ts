/**
 * Tokenises an assembled IMAP command (RFC 3501 section 9, formal syntax; RFC 9051 the same)
 * into tag, command name and argument tokens. Command modules interpret the tokens; this layer
 * only knows the lexical forms: atoms (with the BODY[...]<...> section form of FETCH),
 * quoted strings, literals and parenthesised lists. Never throws anything but ParseError.
 */
import type { Segment } from './reader.js';

export interface AtomToken {
  type: 'atom';
  value: string;
  /** For BODY[...], BODY.PEEK[...], BINARY[...]: the text between the brackets. */
  section?: string;
  /** The name before the bracket, upper case (BODY, BODY.PEEK, BINARY, ...). */
  sectionOf?: string;
  /** <start> or <start.length> after the section. */
  partial?: { start: number; length?: number };
}
export interface StringToken {
  type: 'string';
  value: Buffer;
  literal: boolean;
}
export interface ListToken {
  type: 'list';
  items: Token[];
}
export type Token = AtomToken | StringToken | ListToken;

export interface ParsedCommand {
  tag: string;
  /** Upper case; "UID FETCH" etc. for UID commands. */
  name: string;
  args: Token[];
}

export class ParseError extends Error {
  readonly tag: string | undefined;
  constructor(message: string, tag?: string) {
    super(message);
    this.name = 'ParseError';
    this.tag = tag;
  }
}

export const MAX_NESTING = 32;
/** Commands whose second word is a command (RFC 3501 section 6.4.8). */
const UID_COMMANDS = new Set(['FETCH', 'STORE', 'COPY', 'MOVE', 'SEARCH', 'EXPUNGE', 'SORT', 'THREAD']);
/**
 * The FETCH items with a section in brackets (RFC 3501 section 9 fetch-att, RFC 3516 BINARY).
 * Anywhere else '[' and ']' are ordinary astring characters, as in `SELECT [Gmail]/Sent`.
 */
const SECTION_ITEMS = new Set(['BODY', 'BODY.PEEK', 'BINARY', 'BINARY.PEEK', 'BINARY.SIZE']);

/**
 * tag = 1*<any ASTRING-CHAR except "+"> (RFC 3501 section 9). Like Dovecot, ']' is refused too
 * (it would make "tag]" ambiguous in a response code), and so is anything outside 7-bit ASCII:
 * the tag is echoed in the tagged response.
 */
export function isValidTag(tag: string): boolean {
  return /^[\x21\x23-\x24\x26-\x27\x2c-\x5b\x5e-\x7a\x7c-\x7e]+$/.test(tag);
}

/** A character that ends an atom: SP, parentheses, quote, controls, '{' (a literal). */
function endsAtom(c: number): boolean {
  return c <= 0x20 || c === 0x28 || c === 0x29 || c === 0x22 || c === 0x7b || c === 0x7f;
}

/** A flat view over the command's segments, walking text and literals in order. */
class Cursor {
  readonly #segments: Segment[];
  #seg = 0;
  #pos = 0;
  tag: string | undefined;

  constructor(segments: Segment[]) {
    this.#segments = segments;
    this.#skipEmpty();
  }

  #skipEmpty(): void {
    while (this.#seg < this.#segments.length) {
      const s = this.#segments[this.#seg]!;
      if ('text' in s && this.#pos >= s.text.length) {
        // A text segment that ended in a literal marker is followed by the literal.
        this.#seg++;
        this.#pos = 0;
        continue;
      }
      return;
    }
  }

  get done(): boolean {
    return this.#seg >= this.#segments.length;
  }

  /** The current byte, or -1 at a literal or the end. */
  peek(): number {
    const s = this.#segments[this.#seg];
    if (!s || !('text' in s)) return -1;
    return s.text[this.#pos] ?? -1;
  }

  atLiteral(): boolean {
    const s = this.#segments[this.#seg];
    return !!s && 'literal' in s;
  }

  next(): number {
    const c = this.peek();
    this.#pos++;
    this.#skipEmpty();
    return c;
  }

  takeLiteral(): Buffer {
    const s = this.#segments[this.#seg] as { literal: Buffer };
    this.#seg++;
    this.#pos = 0;
    this.#skipEmpty();
    return s.literal;
  }

  fail(message: string): never {
    throw new ParseError(message, this.tag);
  }
}

function readAtom(c: Cursor): AtomToken {
  let value = '';
  let token: AtomToken | undefined;
  while (!c.done && !c.atLiteral()) {
    const ch = c.peek();
    if (ch === 0x5b /* [ */ && SECTION_ITEMS.has(value.toUpperCase())) {
      const sectionOf = value.toUpperCase();
      c.next();
      let depth = 0;
      let section = '';
      let inQuote = false;
      for (;;) {
        if (c.done || c.atLiteral()) c.fail('unterminated section [');
        const x = c.next();
        // section-spec is 7-bit text (header names are astrings): it is echoed in the response.
        if (x < 0x20 || x > 0x7e) c.fail(x === 0x0d || x === 0x0a ? 'line break inside a section' : 'invalid character in a section');
        if (inQuote) {
          if (x === 0x5c /* \ */) {
            const esc = c.done || c.atLiteral() ? -1 : c.next();
            if (esc !== 0x22 && esc !== 0x5c) c.fail('invalid escape in a section');
            section += String.fromCharCode(x, esc);
            continue;
          }
          if (x === 0x22) inQuote = false;
          section += String.fromCharCode(x);
          continue;
        }
        if (x === 0x22) inQuote = true;
        else if (x === 0x28) {
          if (++depth > MAX_NESTING) c.fail('too deeply nested');
        } else if (x === 0x29) depth--;
        else if (x === 0x5d /* ] */ && depth === 0) break;
        section += String.fromCharCode(x);
      }
      value += `[${section}]`;
      token = { type: 'atom', value, section, sectionOf };
      if (c.peek() === 0x3c /* < */) {
        c.next();
        let partial = '';
        while (!c.done && c.peek() !== 0x3e /* > */) {
          const x = c.next();
          if (x < 0) c.fail('unterminated partial <');
          partial += String.fromCharCode(x);
        }
        if (c.next() !== 0x3e) c.fail('unterminated partial <');
        const m = /^(\d{1,10})(?:\.(\d{1,10}))?$/.exec(partial);
        if (!m) c.fail(`invalid partial <${partial}>`);
        const start = Number(m[1]);
        token.partial = m[2] === undefined ? { start } : { start, length: Number(m[2]) };
        if (m[2] !== undefined && token.partial.length === 0) c.fail('partial length must not be zero');
        value += `<${partial}>`;
        token.value = value;
      }
      if (!c.done && !c.atLiteral() && !endsAtom(c.peek())) c.fail('unexpected characters after a section');
      return token;
    }
    if (endsAtom(ch)) break;
    value += String.fromCharCode(c.next());
  }
  if (value === '') c.fail('expected an atom');
  // 8-bit bytes are not ATOM-CHARs, but clients send UTF-8 search words unquoted: read them as
  // UTF-8 (mailbox names stay 7-bit: modified UTF-7 refuses them later).
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(value)) value = Buffer.from(value, 'latin1').toString('utf8');
  return { type: 'atom', value };
}

function readQuoted(c: Cursor): StringToken {
  c.next(); // opening quote
  const bytes: number[] = [];
  for (;;) {
    if (c.done || c.atLiteral()) c.fail('unterminated quoted string');
    const ch = c.next();
    if (ch === 0x22) break;
    if (ch === 0x5c) {
      const esc = c.next();
      // RFC 3501: only \" and \\ may be escaped in a quoted string.
      if (esc !== 0x22 && esc !== 0x5c) c.fail('invalid escape in quoted string');
      bytes.push(esc);
      continue;
    }
    if (ch === 0x0d || ch === 0x0a || ch === 0x00) c.fail('invalid character in quoted string');
    bytes.push(ch);
  }
  return { type: 'string', value: Buffer.from(bytes), literal: false };
}

/** `{N}` or `{N+}` at the end of a text segment, then the literal segment. */
function readLiteral(c: Cursor): StringToken {
  let marker = '';
  while (!c.done && !c.atLiteral()) marker += String.fromCharCode(c.next());
  if (!/^\{\d+\+?\}$/.test(marker) || !c.atLiteral()) c.fail('invalid literal');
  return { type: 'string', value: c.takeLiteral(), literal: true };
}

function readToken(c: Cursor, depth: number): Token {
  const ch = c.peek();
  if (c.atLiteral()) c.fail('literal without a marker');
  if (ch === 0x28 /* ( */) {
    if (depth >= MAX_NESTING) c.fail('too deeply nested');
    c.next();
    const items: Token[] = [];
    for (;;) {
      if (c.done) c.fail("missing ')'");
      if (c.peek() === 0x29) {
        c.next();
        return { type: 'list', items };
      }
      if (items.length > 0) {
        if (c.peek() !== 0x20) c.fail('expected a space');
        c.next();
        if (c.peek() === 0x29) c.fail("space before ')'");
      }
      items.push(readToken(c, depth + 1));
    }
  }
  if (ch === 0x22) return readQuoted(c);
  if (ch === 0x7b) return readLiteral(c);
  if (ch === 0x29) c.fail("unexpected ')'");
  return readAtom(c);
}

/** Parses a whole command. The tag is known to the error as soon as it was read. */
export function parseCommand(segments: Segment[]): ParsedCommand {
  const c: Cursor = new Cursor(segments);
  if (c.done) throw new ParseError('empty command');
  const tagToken = readToken(c, 0);
  if (tagToken.type !== 'atom' || tagToken.section !== undefined || !isValidTag(tagToken.value)) throw new ParseError('invalid tag');
  c.tag = tagToken.value;
  if (c.peek() !== 0x20) c.fail('missing command');
  c.next();
  const nameToken = readToken(c, 0);
  if (nameToken.type !== 'atom' || nameToken.section !== undefined) c.fail('invalid command name');
  let name = nameToken.value.toUpperCase();
  const args: Token[] = [];
  while (!c.done) {
    if (c.peek() !== 0x20) c.fail('expected a space between arguments');
    c.next();
    if (c.done) c.fail('trailing space');
    args.push(readToken(c, 0));
  }
  if (name === 'UID') {
    const sub = args.shift();
    if (!sub || sub.type !== 'atom' || !UID_COMMANDS.has(sub.value.toUpperCase()))
      c.fail('UID needs FETCH, STORE, COPY, MOVE, SEARCH or EXPUNGE');
    name = `UID ${sub.value.toUpperCase()}`;
  }
  return { tag: c.tag, name, args };
}

// ---- helpers for command modules ---------------------------------------------------------

/** An astring (atom, quoted or literal) as text. */
export function astring(t: Token | undefined, what: string, utf8 = true): string {
  if (!t || t.type === 'list' || (t.type === 'atom' && t.section !== undefined)) throw new ParseError(`${what} expected`);
  return t.type === 'atom' ? t.value : t.value.toString(utf8 ? 'utf8' : 'latin1');
}

export function atom(t: Token | undefined, what: string): string {
  if (!t || t.type !== 'atom') throw new ParseError(`${what} expected`);
  return t.value;
}

export function list(t: Token | undefined, what: string): Token[] {
  if (!t || t.type !== 'list') throw new ParseError(`${what} expected`);
  return t.items;
}

export function isNil(t: Token | undefined): boolean {
  return t?.type === 'atom' && t.value.toUpperCase() === 'NIL';
}

export function number(t: Token | undefined, what: string, max = 0xffffffff): number {
  const v = atom(t, what);
  if (!/^\d{1,20}$/.test(v)) throw new ParseError(`${what}: a number expected`);
  const n = Number(v);
  if (n > max) throw new ParseError(`${what}: number too large`);
  return n;
}

/** A 63-bit number (MODSEQ values, RFC 7162). */
export function number64(t: Token | undefined, what: string): bigint {
  const v = atom(t, what);
  if (!/^\d{1,19}$/.test(v)) throw new ParseError(`${what}: a number expected`);
  const n = BigInt(v);
  if (n > 0x7fffffffffffffffn) throw new ParseError(`${what}: number too large`);
  return n;
}
