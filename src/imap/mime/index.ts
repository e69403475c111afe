/**
 * The message-structure side of IMAP FETCH (RFC 3501 6.4.5, 7.4.2; RFC 9051 the same):
 * ENVELOPE, BODY, BODYSTRUCTURE, BODY[section] and the raw header fields for SEARCH HEADER,
 * matching what Dovecot 2.3 answers byte for byte (see test/fixtures/mime/ for the recorded
 * answers and test/unit/imap-mime.test.ts for the comparison).
 *
 * Every function takes the message in its IMAP form, with CRLF line ends (toCrlf() makes it
 * from the LF form stored on disk). Sizes, offsets and line counts are those of that form.
 *
 *   const msg = toCrlf(stored);
 *   const root = parseStructure(msg);
 *   encodeValue(bodyStructure(msg, root, true), out);
 *   const spec = parseSectionSpec('1.2.HEADER.FIELDS (From To)');  // null -> BAD
 *   const data = spec && extractSection(msg, root, spec);          // null -> send {0}\r\n
 */
import { envelopeData, envelopeValue } from './envelope.js';
import { partStructure } from './bodystructure.js';
import { cName, eohSize, fieldValue, readHeaderField } from './header.js';
import type { MimePart } from './parser.js';
import type { ImapValue } from '../values.js';

export type { MimePart } from './parser.js';
export { parseStructure } from './parser.js';
export type { SectionSpec } from './section.js';
export { extractSection, findPart, formatSectionSpec, parseSectionSpec } from './section.js';
export { UnspacedList } from './strings.js';

const LF = 0x0a;
const CR = 0x0d;

/**
 * LF -> CRLF, as Dovecot's istream-crlf does when it sends a message: an LF gets a CR unless
 * one is right before it; CRLF stays; a bare CR (not followed by LF) is left alone, so it stays
 * a bare CR and counts as an ordinary byte (not a line end) in sizes and line counts, exactly
 * as in Dovecot. Returns the input itself when it has no bare LF.
 */
export function toCrlf(buf: Buffer): Buffer {
  let missing = 0;
  for (let i = buf.indexOf(LF); i >= 0; i = buf.indexOf(LF, i + 1)) {
    if (i === 0 || buf[i - 1] !== CR) missing++;
  }
  if (missing === 0) return buf;
  const out = Buffer.allocUnsafe(buf.length + missing);
  let o = 0;
  let from = 0;
  for (let i = buf.indexOf(LF); i >= 0; i = buf.indexOf(LF, i + 1)) {
    if (i === 0 || buf[i - 1] !== CR) {
      o += buf.copy(out, o, from, i);
      out[o++] = CR;
      from = i;
    }
  }
  o += buf.copy(out, o, from);
  return out;
}

/** The end of the top-level header (after its empty line, or the end of the data). */
function topHeaderEnd(m: Buffer): number {
  let pos = 0;
  while (pos < m.length) {
    const eoh = eohSize(m, pos, m.length);
    if (eoh > 0) return pos + eoh;
    pos = readHeaderField(m, pos, m.length)!.next;
  }
  return pos;
}

/** ENVELOPE of the message (its top-level header). */
export function envelope(message: Buffer, root?: MimePart): ImapValue {
  const end = root !== undefined ? root.headerEnd : topHeaderEnd(message);
  return envelopeValue(envelopeData(message, 0, end));
}

/** BODY (extended = false) or BODYSTRUCTURE (extended = true) of the message. */
export function bodyStructure(message: Buffer, root: MimePart, extended: boolean): ImapValue {
  return partStructure(message, root, extended);
}

/**
 * The header fields of a part (for SEARCH HEADER and the like), in order: the name as written,
 * the raw bytes of the field including its continuation lines (without the final CRLF), and
 * the value: the text after ':' with leading blanks skipped and the line breaks of folding
 * removed (the blanks that follow them are kept).
 */
export function headerFields(message: Buffer, part: MimePart): Array<{ name: string; raw: Buffer; value: Buffer }> {
  const out: Array<{ name: string; raw: Buffer; value: Buffer }> = [];
  let pos = part.headerStart;
  const end = part.headerEnd;
  while (pos < end && eohSize(message, pos, end) === 0) {
    const f = readHeaderField(message, pos, end)!;
    pos = f.next;
    out.push({
      name: cName(f.name),
      raw: message.subarray(f.start, f.end),
      value: Buffer.from(fieldValue(message, f).replace(/\n/g, ''), 'latin1'),
    });
  }
  return out;
}
