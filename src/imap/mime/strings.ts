/**
 * IMAP strings as Dovecot 2.3 writes them in ENVELOPE and BODYSTRUCTURE (lib-imap/imap-quote.c),
 * expressed as ImapValue nodes so that encodeValue() produces the very same bytes.
 *
 * Text here is a "binary string": one JS char per byte (latin1), so any header byte survives.
 *
 * Dovecot's choice between a quoted string and a literal differs from values.ts's default:
 * - it writes a literal for 8-bit bytes, CR or LF, and also once a string has more than four
 *   quoted-specials (" or \), where values.ts would quote;
 * - it quotes any other text, whatever its length and even with TAB or other controls, where
 *   values.ts would switch to a literal (over 1024 bytes, or outside 0x20-0x7e).
 * So a string whose Dovecot form values.ts would not choose by itself is returned as a Literal
 * or as an Atom holding the already-quoted text.
 */
import { Atom, Concat, Literal, type ImapValue } from '../values.js';

/** How many quoted-specials Dovecot escapes before it prefers a literal (imap-quote.c). */
const QUOTED_MAX_ESCAPE_CHARS = 4;
const VALUES_TS_QUOTABLE = /^[\x20-\x7e]*$/;
const VALUES_TS_MAX_QUOTED = 1024;

/** A binary string to a Buffer, byte for byte. */
export function bin(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** Quoted form of text that needs no literal: escape " and \ (CR, LF and 8-bit never reach here). */
function quotedValue(text: string): ImapValue {
  // printable ASCII: a plain string, which values.ts quotes the same way (and cheaply)
  if (text.length <= VALUES_TS_MAX_QUOTED && VALUES_TS_QUOTABLE.test(text)) return text;
  // values.ts would send a literal; Dovecot quotes. Keep Dovecot's bytes (all 7-bit here).
  return new Atom(`"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`);
}

/** imap_append_nstring(): NIL, "quoted" or {literal}. */
export function nstring(text: string | null | undefined): ImapValue {
  if (text === null || text === undefined) return null;
  let escapes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) {
      if (escapes++ >= QUOTED_MAX_ESCAPE_CHARS) return new Literal(bin(text));
    } else if (c === 0x0d || c === 0x0a || c >= 0x80) {
      return new Literal(bin(text));
    }
  }
  return quotedValue(text);
}

/** imap_append_string(): like nstring() for a value that is never NIL. */
export function astring(text: string): ImapValue {
  return nstring(text);
}

/**
 * imap_append_nstring_nolf(): CRs and LFs are dropped; a line break followed by anything but
 * whitespace (or the end) becomes one space.
 */
export function nstringNoLf(text: string | null | undefined): ImapValue {
  if (text === null || text === undefined) return null;
  if (text.indexOf('\r') < 0 && text.indexOf('\n') < 0) return nstring(text);
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\r' && c !== '\n') {
      out += c;
    } else {
      const next = text[i + 1];
      if (next !== undefined && next !== ' ' && next !== '\t' && next !== '\r' && next !== '\n') out += ' ';
    }
  }
  return nstring(out);
}

/**
 * imap_append_string_for_humans(), used for the subject and display names: TAB, CR, LF become
 * spaces, runs of spaces collapse, leading and trailing spaces go, NUL becomes 0x80. Anything
 * changed (including a " or \ present) is sent as a literal; untouched text is quoted as is.
 */
export function forHumans(text: string): ImapValue {
  let modify = false;
  let lastLwsp = true;
  let whitespacePrefix = true;
  let removeCount = 0;
  const size = text.length;
  for (let i = 0; i < size; i++) {
    const c = text.charCodeAt(i);
    switch (c) {
      case 0:
        lastLwsp = false;
        modify = true;
        break;
      case 0x0d:
      case 0x0a:
      case 0x09:
      case 0x20:
        if (c !== 0x20) modify = true;
        if (lastLwsp) {
          modify = true;
          removeCount++;
        }
        lastLwsp = true;
        break;
      case 0x22:
      case 0x5c:
        modify = true;
        lastLwsp = false;
        break;
      default:
        if (c >= 0x80) modify = true;
        lastLwsp = false;
        break;
    }
    if (!lastLwsp) whitespacePrefix = false;
  }
  if (lastLwsp && size > 0 && !whitespacePrefix) {
    modify = true;
    removeCount++;
  }
  if (!modify) {
    // Dovecot's fast path: quoted without any escaping (there is nothing to escape).
    return quotedValue(text);
  }
  if (size === removeCount) return '';

  let out = '';
  lastLwsp = true;
  whitespacePrefix = true;
  for (let i = 0; i < size; i++) {
    const c = text.charCodeAt(i);
    switch (c) {
      case 0:
        out += '\x80';
        lastLwsp = false;
        break;
      case 0x0d:
      case 0x0a:
      case 0x09:
      case 0x20:
        if (!lastLwsp) out += ' ';
        lastLwsp = true;
        break;
      default:
        lastLwsp = false;
        out += text[i];
        break;
    }
    if (!lastLwsp) whitespacePrefix = false;
  }
  if (lastLwsp && size > 0 && !whitespacePrefix) out = out.slice(0, -1);
  return new Literal(bin(out));
}

/**
 * A list whose first items are written with no space between them, then the rest spaced, as
 * RFC 3501 writes multipart bodies (`((part)(part) "mixed" ...)`) and address lists.
 */
export const UnspacedList = {
  of2(unspaced: ImapValue[], rest: ImapValue[] = []): ImapValue[] {
    return unspaced.length ? [new Concat(unspaced), ...rest] : [...rest];
  },
};
