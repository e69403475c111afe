/**
 * IMAP data values (RFC 3501 section 4, RFC 9051 section 4) and their wire encoding. Response
 * builders produce ImapValue trees; the writer turns them into bytes, choosing quoted strings or
 * literals as the content requires.
 */

/** An atom or other verbatim token: \Seen, NIL-like keywords, BODY[1.2], numbers as text. */
export class Atom {
  constructor(readonly text: string) {}
}

/** A string that must be sent as a literal {n} (message data). */
export class Literal {
  constructor(readonly data: Buffer) {}
}

/**
 * Values written back to back, with no separator and no parentheses: RFC 3501 has no space
 * between the parts of a multipart body (`(part)(part) "mixed"`) or between the addresses of an
 * ENVELOPE address list.
 */
export class Concat {
  constructor(readonly items: ImapValue[]) {}
}

/**
 * A value already in its wire form (encoded earlier with encodeToBuffer, e.g. an ENVELOPE from
 * the metadata cache): its bytes are written as they are, literals included.
 */
export class Raw {
  constructor(readonly data: Buffer) {}
}

/**
 * null -> NIL; number/bigint -> number; string -> quoted string or literal; Buffer -> literal
 * when it needs one, else quoted; Atom -> verbatim; Raw -> its bytes; array -> parenthesized list.
 */
export type ImapValue = null | number | bigint | string | Buffer | Atom | Literal | Concat | Raw | ImapValue[];

export const NIL = null;

const QUOTED_SAFE = /^[\x20-\x7e]*$/;
const MAX_QUOTED = 1024;

/** Can this text go in a quoted string? (No CR/LF/NUL, 7-bit unless UTF-8 is allowed, short.) */
function isQuotable(text: string, utf8 = false): boolean {
  if (text.length > MAX_QUOTED) return false;
  if (QUOTED_SAFE.test(text)) return true;
  // eslint-disable-next-line no-control-regex
  return utf8 && !/[\u0000-\u001f\u007f]/.test(text);
}

export function quote(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Encodes one value onto `out` (strings and buffers; literals as {n}CRLF + bytes). */
export function encodeValue(value: ImapValue, out: Array<string | Buffer>, utf8 = false): void {
  if (value === null) {
    out.push('NIL');
  } else if (typeof value === 'number' || typeof value === 'bigint') {
    out.push(String(value));
  } else if (typeof value === 'string') {
    if (isQuotable(value, utf8)) out.push(quote(value));
    else {
      const data = Buffer.from(value, 'utf8');
      out.push(`{${data.length}}\r\n`, data);
    }
  } else if (value instanceof Atom) {
    out.push(value.text);
  } else if (value instanceof Concat) {
    for (const v of value.items) encodeValue(v, out, utf8);
  } else if (value instanceof Literal) {
    out.push(`{${value.data.length}}\r\n`, value.data);
  } else if (value instanceof Raw) {
    out.push(value.data);
  } else if (Buffer.isBuffer(value)) {
    const text = value.toString('latin1');
    if (value.length <= MAX_QUOTED && QUOTED_SAFE.test(text)) out.push(quote(text));
    else out.push(`{${value.length}}\r\n`, value);
  } else {
    out.push('(');
    value.forEach((v, i) => {
      if (i > 0) out.push(' ');
      encodeValue(v, out, utf8);
    });
    out.push(')');
  }
}

/** Encodes a value to one Buffer (tests and small responses). */
export function encodeToBuffer(value: ImapValue, utf8 = false): Buffer {
  const out: Array<string | Buffer> = [];
  encodeValue(value, out, utf8);
  // One conversion per run of strings, not per string (ENVELOPEs are made of dozens).
  const parts: Buffer[] = [];
  let text = '';
  for (const p of out) {
    if (typeof p === 'string') {
      text += p;
    } else {
      if (text) parts.push(Buffer.from(text, 'utf8'));
      text = '';
      parts.push(p);
    }
  }
  if (parts.length === 0) return Buffer.from(text, 'utf8');
  if (text) parts.push(Buffer.from(text, 'utf8'));
  return Buffer.concat(parts);
}
