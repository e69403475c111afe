/**
 * Header fields as Dovecot 2.3's message-header-parser.c splits them: one field is its first
 * line plus the continuation lines (those starting with SP or TAB); the name runs to the first
 * ':' with trailing blanks dropped; a line without ':' (or with a name over 1000 bytes) is a
 * field with the empty name. An empty line (LF or CRLF) ends the header.
 */

const LF = 0x0a;
const CR = 0x0d;
const MAX_NAME_LEN = 1000;

export interface HeaderField {
  /** The name (binary string), "" for a line without ':'. */
  name: string;
  /** Raw bytes of the field, continuation lines included, its last line end excluded. */
  start: number;
  end: number;
  /** Where the next line starts (after this field's last LF, or the end of the data). */
  next: number;
  /** Size of the last line's end: 0 (data ended), 1 (LF) or 2 (CRLF). */
  newlineSize: number;
  /** Offset of the ':' after the name, -1 when the field has the empty name. */
  colon: number;
}

function isLwsp(c: number | undefined): boolean {
  return c === 0x20 || c === 0x09;
}

/** One physical line at pos: [pos, contentEnd) without its [CR]LF; next = after the LF. */
function readLine(m: Buffer, pos: number, end: number): { contentEnd: number; next: number; nl: number } {
  const lf = m.indexOf(LF, pos);
  if (lf < 0 || lf >= end) return { contentEnd: end, next: end, nl: 0 };
  if (lf > pos && m[lf - 1] === CR) return { contentEnd: lf - 1, next: lf + 1, nl: 2 };
  return { contentEnd: lf, next: lf + 1, nl: 1 };
}

/** Is the line at pos the empty line that ends a header? Returns its size (1 or 2) or 0. */
export function eohSize(m: Buffer, pos: number, end: number): number {
  if (pos < end && m[pos] === LF) return 1;
  if (pos + 1 < end && m[pos] === CR && m[pos + 1] === LF) return 2;
  return 0;
}

/**
 * The field starting at pos, or null when the data ends there. The caller checks eohSize()
 * first: an empty line is the end of the header, not a field.
 */
export function readHeaderField(m: Buffer, pos: number, end: number): HeaderField | null {
  if (pos >= end) return null;
  let line = readLine(m, pos, end);
  // the name: up to the first ':' of the first line
  let colon = -1;
  for (let i = pos; i < line.contentEnd; i++) {
    const c = m[i]!;
    if (c > 0x3a) continue;
    if (c === 0x3a) {
      colon = i;
      break;
    }
  }
  // Dovecot stops looking for ':' at the LF; the CR before it can hold no ':' anyway.
  let name = '';
  if (colon >= 0) {
    let nameEnd = colon;
    while (nameEnd > pos && isLwsp(m[nameEnd - 1])) nameEnd--;
    if (nameEnd - pos <= MAX_NAME_LEN) name = m.toString('latin1', pos, nameEnd);
    else colon = -1;
  }
  let endPos = line.contentEnd;
  let newlineSize = line.nl;
  let next = line.next;
  // continuation lines
  while (newlineSize > 0 && next < end && isLwsp(m[next])) {
    line = readLine(m, next, end);
    endPos = line.contentEnd;
    newlineSize = line.nl;
    next = line.next;
  }
  return { name, start: pos, end: endPos, next, newlineSize, colon };
}

/** The name as C code compares it: up to a NUL. */
export function cName(name: string): string {
  const nul = name.indexOf('\0');
  return nul < 0 ? name : name.slice(0, nul);
}

/**
 * The field's value as Dovecot hands it to its ENVELOPE/BODYSTRUCTURE code (full_value with
 * SKIP_INITIAL_LWSP and DROP_CR): blanks after ':' skipped (all but one when the value is only
 * blanks), each line break inside the field reduced to LF, the final line end dropped.
 */
export function fieldValue(m: Buffer, f: HeaderField): string {
  let out = '';
  let pos = f.start;
  for (let first = true; ; first = false) {
    const lf = m.indexOf(LF, pos);
    // f.end is the end of the last line's content: every LF inside the field comes before it
    const lineEnd = lf < 0 || lf >= f.end ? f.end : lf;
    const contentEnd = lineEnd === lf && lf > pos && m[lf - 1] === CR ? lf - 1 : lineEnd;
    if (first) {
      let v = pos;
      if (f.colon >= 0) {
        const afterColon = f.colon + 1;
        v = afterColon;
        while (v < contentEnd && isLwsp(m[v])) v++;
        if (v === contentEnd && afterColon < contentEnd) v = afterColon + 1;
      }
      out = m.toString('latin1', v, contentEnd);
    } else {
      out += '\n' + m.toString('latin1', pos, contentEnd);
    }
    if (lineEnd === f.end) return out;
    pos = lf + 1;
  }
}
