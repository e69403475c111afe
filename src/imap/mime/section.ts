/**
 * BODY[section] (RFC 3501 6.4.5) as Dovecot 2.3 answers it (lib-imap-storage/imap-msgpart.c,
 * lib-mail/istream-header-filter.c):
 *
 * - Part numbers: inside a multipart, N is its Nth part (0 counts as 1); in anything else only
 *   1 is valid and means the part itself (so [1] of a non-multipart message is its body and
 *   [1.MIME] its header, and [2.1] of a text part 2 is part 2 again); after a message/rfc822
 *   part, further numbers walk into the message it contains.
 * - [p] is the part's body; [p.MIME] its MIME header (for a message/rfc822 part too);
 *   [p.HEADER], [p.TEXT], [p.HEADER.FIELDS ...] exist only when p is message/rfc822 and are
 *   about the message inside it.
 * - HEADER.FIELDS (.NOT) keep/drop whole fields (continuation lines included), line ends as
 *   CRLF, then the empty line that ends the header. For the top-level message a missing empty
 *   line is added to HEADER.FIELDS (not to .NOT); inside a message/rfc822 the header is read
 *   up to its empty line or the end of the message, whatever boundaries come first.
 * - NUL bytes are sent as 0x80 (IMAP literals may not hold NULs).
 * - A section that does not exist is sent by Dovecot as an empty literal: {0}\r\n (never NIL);
 *   extractSection() returns null for it and the server must send Literal(Buffer.alloc(0)).
 */
import { cName, eohSize, readHeaderField } from './header.js';
import type { MimePart } from './parser.js';
import { asciiLower } from './rfc822.js';

export interface SectionSpec {
  /** Part numbers; [] for the message itself. */
  path: number[];
  text?: 'HEADER' | 'TEXT' | 'MIME' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT';
  /** Field names of HEADER.FIELDS (.NOT), upper-cased as Dovecot echoes them. */
  fields?: string[];
}

const FIELD_LIST = /^ ?\((.*)\)$/s;

/** The field names in "(From "To" Subject)"; null if the list is not valid or empty. */
function parseFieldList(text: string): string[] | null {
  const m = FIELD_LIST.exec(text);
  if (m === null) return null;
  const inner = m[1]!;
  const fields: string[] = [];
  let i = 0;
  while (i < inner.length) {
    const c = inner[i]!;
    if (c === ' ' && fields.length > 0) {
      i++;
      if (inner[i] === ' ' || i >= inner.length) return null;
      continue;
    }
    if (c === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= inner.length) return null;
        const d = inner[i]!;
        if (d === '"') break;
        if (d === '\\') {
          i++;
          if (i >= inner.length) return null;
        } else if (d === '\r' || d === '\n') {
          return null;
        }
        value += inner[i];
        i++;
      }
      i++;
      fields.push(value);
    } else {
      const start = i;
      while (i < inner.length && !/[ ()"{\r\n\x00-\x1f\x7f%*\\]/.test(inner[i]!)) i++;
      if (i === start) return null;
      fields.push(inner.slice(start, i));
    }
    if (i < inner.length && inner[i] !== ' ') return null;
  }
  if (fields.length === 0) return null;
  return fields.map((f) => f.replace(/[a-z]+/g, (s) => s.toUpperCase()));
}

/**
 * Parses the inside of BODY[...]: "", "1.2", "HEADER", "1.MIME", "2.HEADER.FIELDS (From To)"...
 * Returns null when Dovecot would answer BAD: an empty part number ("1..2", "1."), MIME of the
 * whole message, an unknown word, an empty or broken field list.
 */
export function parseSectionSpec(text: string): SectionSpec | null {
  let i = 0;
  let nextDigit = true;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) nextDigit = false;
    else if (!nextDigit && c === 0x2e) nextDigit = true;
    else break;
  }
  let numbers = '';
  let rest = text;
  if (i === 0) {
    numbers = '';
  } else if (i === text.length) {
    if (text[i - 1] === '.') return null;
    numbers = text;
    rest = '';
  } else {
    if (text[i - 1] !== '.') return null;
    numbers = text.slice(0, i - 1);
    rest = text.slice(i);
  }
  const path = numbers === '' ? [] : numbers.split('.').map(sectionNumber);
  if (rest === '') return { path };
  const upper = rest.replace(/[a-z]+/g, (s) => s.toUpperCase());
  if (upper === 'MIME') return path.length === 0 ? null : { path, text: 'MIME' };
  if (upper === 'TEXT') return { path, text: 'TEXT' };
  if (upper === 'HEADER') return { path, text: 'HEADER' };
  if (upper.startsWith('HEADER.FIELDS.NOT')) {
    const fields = parseFieldList(rest.slice(17));
    return fields === null ? null : { path, text: 'HEADER.FIELDS.NOT', fields };
  }
  if (upper.startsWith('HEADER.FIELDS')) {
    const fields = parseFieldList(rest.slice(13));
    return fields === null ? null : { path, text: 'HEADER.FIELDS', fields };
  }
  return null;
}

/** A part number as Dovecot reads it: decimal, wrapping at 2^32. */
function sectionNumber(digits: string): number {
  let n = 0;
  for (let i = 0; i < digits.length; i++) n = (n * 10 + digits.charCodeAt(i) - 0x30) >>> 0;
  return n;
}

/** How Dovecot names the section in its FETCH response: BODY[<this>]. */
export function formatSectionSpec(spec: SectionSpec): string {
  let s = spec.path.join('.');
  if (spec.text !== undefined) s += (s === '' ? '' : '.') + spec.text;
  if (spec.fields !== undefined) {
    const items = spec.fields.map((f) =>
      /^[^ ()"{\r\n\x00-\x1f\x7f%*\\\]]+$/.test(f) ? f : `"${f.replace(/[\r\n]/g, '').replace(/[\\"]/g, (c) => `\\${c}`)}"`,
    );
    s += ` (${items.join(' ')})`;
  }
  return s;
}

/** imap_msgpart_find(): the part a path leads to, or null. */
export function findPart(root: MimePart, path: number[]): MimePart | null {
  let part: MimePart | null = root;
  for (let i = 0; i < path.length && part !== null;) {
    const num = path[i++]!;
    const more = i < path.length;
    if (part.multipart) {
      part = part.children[Math.max(num, 1) - 1] ?? null;
    } else if (num !== 1 || (more && !part.rfc822)) {
      part = null;
    }
    if (part !== null && part.rfc822 && more) part = part.children[0] ?? null;
  }
  return part;
}

/** The bytes to send: NULs as 0x80, as Dovecot does for every BODY[] literal. */
function noNuls(m: Buffer, start: number, end: number): Buffer {
  const slice = m.subarray(start, Math.max(start, end));
  if (slice.indexOf(0) < 0) return slice;
  const copy = Buffer.from(slice);
  for (let i = copy.indexOf(0); i >= 0; i = copy.indexOf(0, i + 1)) copy[i] = 0x80;
  return copy;
}

const CRLF = Buffer.from('\r\n');

/**
 * The header read from `start` up to its empty line (or the end of the data), keeping only the
 * fields named (or, with exclude, all others), each line ending in CRLF.
 */
function filterHeader(m: Buffer, start: number, names: string[], exclude: boolean, addMissingEoh: boolean): Buffer {
  const wanted = new Set(names.map((n) => asciiLower(n)));
  const end = m.length;
  const out: Buffer[] = [];
  let seenEoh = false;
  let endsWithNewline = true;
  let pos = start;
  while (pos < end) {
    const eoh = eohSize(m, pos, end);
    if (eoh > 0) {
      out.push(CRLF);
      seenEoh = true;
      break;
    }
    const f = readHeaderField(m, pos, end)!;
    if (wanted.has(asciiLower(cName(f.name))) !== exclude) {
      // every line of the field, with its line end made CRLF
      let line = f.start;
      for (;;) {
        const lf = m.indexOf(0x0a, line);
        if (lf < 0 || lf >= f.end) {
          out.push(m.subarray(line, f.end));
          if (f.newlineSize > 0) out.push(CRLF);
          endsWithNewline = f.newlineSize > 0;
          break;
        }
        out.push(m.subarray(line, lf > line && m[lf - 1] === 0x0d ? lf - 1 : lf), CRLF);
        line = lf + 1;
      }
    }
    pos = f.next;
  }
  if (!seenEoh && addMissingEoh) {
    if (!endsWithNewline) out.push(CRLF);
    out.push(CRLF);
  }
  const buf = Buffer.concat(out);
  return noNuls(buf, 0, buf.length);
}

/**
 * The bytes of BODY[section] for a message in CRLF form, or null when the section does not
 * exist (Dovecot then sends an empty literal, {0}). Partial fetches <start.len> are cut from the
 * returned Buffer by the caller.
 */
export function extractSection(message: Buffer, root: MimePart, spec: SectionSpec): Buffer | null {
  const m = message;
  if (spec.path.length === 0) {
    switch (spec.text) {
      case undefined:
        return noNuls(m, 0, m.length);
      case 'HEADER':
        return noNuls(m, root.headerStart, root.headerEnd);
      case 'TEXT':
        return noNuls(m, root.bodyStart, root.bodyEnd);
      case 'HEADER.FIELDS':
        return filterHeader(m, root.headerStart, spec.fields ?? [], false, true);
      case 'HEADER.FIELDS.NOT':
        return filterHeader(m, root.headerStart, spec.fields ?? [], true, false);
      default:
        return null; // MIME of the whole message is not a valid section
    }
  }
  const part = findPart(root, spec.path);
  if (part === null) return null;
  if (spec.text === undefined) return noNuls(m, part.bodyStart, part.bodyEnd);
  if (spec.text === 'MIME') return noNuls(m, part.headerStart, part.headerEnd);
  // HEADER, TEXT and the field lists are about the message inside a message/rfc822 part
  const inner = part.rfc822 ? part.children[0] : undefined;
  if (inner === undefined) return null;
  switch (spec.text) {
    case 'HEADER':
      return noNuls(m, inner.headerStart, inner.headerEnd);
    case 'TEXT':
      return noNuls(m, inner.bodyStart, inner.bodyEnd);
    case 'HEADER.FIELDS':
      return filterHeader(m, inner.headerStart, spec.fields ?? [], false, false);
    case 'HEADER.FIELDS.NOT':
      return filterHeader(m, inner.headerStart, spec.fields ?? [], true, false);
  }
  return null;
}
