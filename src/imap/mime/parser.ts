/**
 * The MIME tree of a message, built as Dovecot 2.3's lib-mail message-parser.c builds it (so
 * that part numbers, byte ranges, sizes and line counts are Dovecot's), together with the
 * Content-* data that BODYSTRUCTURE reports (message-part-data.c).
 *
 * The rules, for a message already in CRLF form:
 * - A header ends at its empty line, at the end of the data, or at a line that is a boundary
 *   of an enclosing multipart; in that last case the line end before the boundary line is not
 *   part of the header (the part's header then has no empty line, and its body is empty).
 * - A multipart's boundary counts only if the header ends with its empty line. A line is a
 *   boundary line when it starts with "--" and one of the open boundaries is a prefix of the
 *   rest (the newest first, the longest when several match). The line end before a boundary
 *   line belongs to the boundary, not to the part, unless the boundary is the body's first line.
 * - "--boundary--" closes the multipart and every multipart opened inside it; "--boundary"
 *   starts a new part, and closes anything opened inside the part before it.
 * - The default type is text/plain, or message/rfc822 directly inside multipart/digest. A
 *   part that is neither a multipart child nor has Content-Type or MIME-Version has no MIME
 *   data: its Content-* headers are ignored.
 * - message/rfc822 (only that type: not message/global) contains one message part.
 * - Limits: 100 nested parts and 10000 parts in all; past them the rest is plain body.
 *
 * The scan is one forward pass (every byte is looked at a bounded number of times, the number
 * of open boundaries being at most 100), it needs no recursion, and it never throws.
 */
import { cName, eohSize, fieldValue, readHeaderField, type HeaderField } from './header.js';
import { NUL_REPLACEMENT, Rfc822Parser, asciiLower, rfc2231Parse } from './rfc822.js';

export interface MimePart {
  /** Byte range of the header, including the empty line that ends it (when there is one). */
  headerStart: number;
  headerEnd: number;
  /** Byte range of the body. */
  bodyStart: number;
  bodyEnd: number;
  /** Lower-cased media type with the defaults applied (text/plain; message/rfc822 in a digest). */
  type: string;
  subtype: string;
  /** Content-Type parameters as written (names not lower-cased), RFC 2231 pieces merged. */
  params: Array<[string, string]>;
  /** The parts of a multipart, or the one message part of a message/rfc822. */
  children: MimePart[];
  /** Number of lines (LFs) of the body. */
  lines: number;
  /** Dovecot's part flags. */
  multipart: boolean;
  rfc822: boolean;
  /**
   * A multipart or message/rfc822 (declared, or by default in a digest) that the parser did not
   * open because of the limits (100 nested parts, 10000 in all): Dovecot reports it as
   * application/octet-stream, and so does `type`/`subtype` here.
   */
  truncated: boolean;
  /** Content-* data as BODYSTRUCTURE writes it (binary strings, raw header text); null = absent. */
  contentType: string | null;
  contentSubtype: string | null;
  encoding: string | null;
  id: string | null;
  description: string | null;
  md5: string | null;
  disposition: string | null;
  dispositionParams: Array<[string, string]>;
  language: string[] | null;
  location: string | null;
}

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const MAX_NESTED_PARTS = 100;
const MAX_TOTAL_PARTS = 10000;
const BOUNDARY_STRING_MAX_LEN = 80;
const BOUNDARY_END_MAX_LEN = BOUNDARY_STRING_MAX_LEN + 4;

function newPart(headerStart: number): MimePart {
  return {
    headerStart,
    headerEnd: headerStart,
    bodyStart: headerStart,
    bodyEnd: headerStart,
    type: 'text',
    subtype: 'plain',
    params: [],
    children: [],
    lines: 0,
    multipart: false,
    rfc822: false,
    truncated: false,
    contentType: null,
    contentSubtype: null,
    encoding: null,
    id: null,
    description: null,
    md5: null,
    disposition: null,
    dispositionParams: [],
    language: null,
    location: null,
  };
}

/** message_header_strdup(): NUL bytes become U+FFFD. */
export function headerStrdup(value: string): string {
  return value.indexOf('\0') < 0 ? value : value.replace(/\0/g, NUL_REPLACEMENT);
}

/** The Content-* headers of a part into its BODYSTRUCTURE data (first one of each wins). */
function parseContentHeader(part: MimePart, lname: string, value: string): void {
  switch (lname) {
    case 'content-id':
      if (part.id === null) part.id = headerStrdup(value);
      break;
    case 'content-md5':
      if (part.md5 === null) part.md5 = headerStrdup(value);
      break;
    case 'content-type':
      if (part.contentType === null) {
        const p = new Rfc822Parser(value);
        p.skipLwsp();
        const str = { s: '' };
        const ret = p.parseContentType(str);
        let t = str.s;
        const nul = t.indexOf('\0');
        if (nul >= 0) t = t.slice(0, nul);
        const slash = t.indexOf('/');
        part.contentType = slash < 0 ? t : t.slice(0, slash);
        part.contentSubtype = slash < 0 ? '' : t.slice(slash + 1);
        if (ret >= 0) part.params = rfc2231Parse(p);
      }
      break;
    case 'content-transfer-encoding':
      if (part.encoding === null) {
        const p = new Rfc822Parser(value);
        p.skipLwsp();
        const tok = { s: '' };
        if (p.parseMimeToken(tok) >= 0 && p.skipLwsp() === 0 && tok.s.length > 0) part.encoding = tok.s;
      }
      break;
    case 'content-language':
      if (part.language === null) {
        const p = new Rfc822Parser(value);
        const langs: string[] = [];
        const str = { s: '' };
        p.skipLwsp();
        while (p.parseAtom(str) >= 0) {
          langs.push(str.s);
          str.s = '';
          if (p.pos >= p.end || p.cur() !== 0x2c) break;
          p.pos++;
          p.skipLwsp();
        }
        if (langs.length > 0) part.language = langs;
      }
      break;
    case 'content-location':
      if (part.location === null) part.location = headerStrdup(value);
      break;
    case 'content-description':
      if (part.description === null) part.description = headerStrdup(value);
      break;
    case 'content-disposition':
      // Dovecot parses it again as long as the one kept has no parameters.
      if (part.dispositionParams.length === 0) {
        const p = new Rfc822Parser(value);
        p.skipLwsp();
        const tok = { s: '' };
        if (p.parseMimeToken(tok) >= 0) {
          part.disposition = tok.s;
          part.dispositionParams = rfc2231Parse(p);
        }
      }
      break;
  }
}

/** The lower-cased type/subtype of a part, as BODYSTRUCTURE reports it. */
function setType(part: MimePart, inDigest: boolean): void {
  const type = part.contentType === null ? null : asciiLower(part.contentType);
  part.truncated =
    !part.rfc822 &&
    !part.multipart &&
    (type === null ? inDigest : type === 'multipart' || (type === 'message' && asciiLower(part.contentSubtype ?? '') === 'rfc822'));
  if (part.truncated) {
    part.type = 'application';
    part.subtype = 'octet-stream';
  } else if (part.rfc822) {
    part.type = 'message';
    part.subtype = 'rfc822';
  } else if (part.contentType === null) {
    part.type = 'text';
    part.subtype = 'plain';
  } else {
    part.type = asciiLower(part.contentType);
    part.subtype = asciiLower(part.contentSubtype ?? '');
  }
}

function forgetContentData(part: MimePart): void {
  part.contentType = part.contentSubtype = null;
  part.params = [];
  part.encoding = part.id = part.description = part.md5 = part.location = null;
  part.disposition = null;
  part.dispositionParams = [];
  part.language = null;
}

interface Node {
  part: MimePart;
  parent: Node | null;
  isMime: boolean;
  digest: boolean;
  /** Where the body data starts in the stream (bodyStart differs when the header was cut). */
  segStart: number;
  linesAtBodyStart: number;
}

interface Boundary {
  node: Node;
  text: Buffer;
}

/** Counts LFs up to a position; positions are asked in (almost always) increasing order. */
class LineCounter {
  private pos = 0;
  private count = 0;
  constructor(private readonly m: Buffer) {}

  at(target: number): number {
    const m = this.m;
    if (target >= this.pos) {
      let p = this.pos;
      for (;;) {
        const lf = m.indexOf(LF, p);
        if (lf < 0 || lf >= target) break;
        this.count++;
        p = lf + 1;
      }
    } else {
      let p = target;
      for (;;) {
        const lf = m.indexOf(LF, p);
        if (lf < 0 || lf >= this.pos) break;
        this.count--;
        p = lf + 1;
      }
    }
    this.pos = target;
    return this.count;
  }
}

class StructureParser {
  private pos = 0;
  private readonly end: number;
  private readonly boundaries: Boundary[] = []; // newest last
  private nested = 0;
  private total = 1;
  private readonly lines: LineCounter;

  constructor(private readonly m: Buffer) {
    this.end = m.length;
    this.lines = new LineCounter(m);
  }

  parse(): MimePart {
    const root: Node = { part: newPart(0), parent: null, isMime: false, digest: false, segStart: 0, linesAtBodyStart: 0 };
    let node = root;
    let inHeader = true;
    for (;;) {
      if (inHeader) {
        const pushed = this.parseHeader(node);
        inHeader = false;
        if (!pushed && node.part.rfc822) {
          if (this.nested + 1 < MAX_NESTED_PARTS && this.total < MAX_TOTAL_PARTS) {
            node = this.append(node, node.part.bodyStart, false);
            inHeader = true;
            continue;
          }
          node.part.rfc822 = false; // past the limits: an opaque body
          setType(node.part, node.parent !== null && node.parent.digest);
        }
      }
      // body: look for the next boundary line from here (this line included)
      const found = this.findBoundaryLine(this.pos);
      if (found === null) {
        this.pos = this.end;
        for (let n: Node | null = node; n !== null; n = n.parent) this.finish(n, this.end);
        return root.part;
      }
      const { lineStart, boundary, closing } = found;
      let dataEnd = lineStart;
      if (lineStart > this.pos) {
        dataEnd--; // the LF before the boundary line belongs to the boundary
        if (dataEnd > this.pos && this.m[dataEnd - 1] === CR) dataEnd--;
      }
      while (node !== boundary.node) {
        this.finish(node, dataEnd);
        node = node.parent!;
      }
      const idx = this.boundaries.indexOf(boundary);
      this.boundaries.length = closing ? idx : idx + 1;
      // the rest of the boundary line
      const lf = this.m.indexOf(LF, lineStart);
      if (lf < 0) {
        this.pos = this.end;
        continue; // nothing follows: the body scan ends the message
      }
      this.pos = lf + 1;
      const top = this.boundaries[this.boundaries.length - 1];
      if (top !== undefined && top.node === node) {
        node = this.append(node, this.pos, true);
        inHeader = true;
      }
      // else: the epilogue, part of this multipart's body
    }
  }

  private append(parent: Node, headerStart: number, isMime: boolean): Node {
    const part = newPart(headerStart);
    parent.part.children.push(part);
    this.nested++;
    this.total++;
    return { part, parent, isMime, digest: false, segStart: 0, linesAtBodyStart: 0 };
  }

  private finish(n: Node, dataEnd: number): void {
    const part = n.part;
    part.bodyEnd = part.bodyStart + Math.max(0, dataEnd - n.segStart);
    part.lines = this.lines.at(part.bodyEnd) - n.linesAtBodyStart;
    if (n.parent !== null) this.nested--;
  }

  /**
   * Parses the header of n from this.pos. Sets the part's header/body start, its flags and
   * data; returns whether a multipart boundary was opened.
   */
  private parseHeader(n: Node): boolean {
    const m = this.m;
    const end = this.end;
    const part = n.part;
    const parseStart = this.pos;
    let prevNewline = 0;
    let lastBoundary: string | null = null;
    let seenContentType = false;
    let pushed = false;
    let sawEoh = false;
    let headerSize: number;
    for (;;) {
      const pos = this.pos;
      if (pos >= end) {
        headerSize = pos - parseStart;
        break;
      }
      const eoh = eohSize(m, pos, end);
      if (eoh > 0 && lastBoundary !== null && n.isMime) {
        if (this.nested + 1 < MAX_NESTED_PARTS) {
          this.boundaries.push({ node: n, text: Buffer.from(lastBoundary, 'latin1') });
          lastBoundary = null;
          pushed = true;
        } else {
          part.multipart = false;
        }
      }
      // Dovecot looks for a boundary before every header line, and once more after the empty
      // line: a boundary of an enclosing multipart there ends the header, and the line end just
      // before it (the empty line itself, after the empty line) is not part of the header.
      if (this.boundaries.length > 0 && m[pos] === DASH) {
        const b = this.findBoundary(pos);
        if (b !== null && b.boundary.node !== n) {
          headerSize = pos - parseStart - prevNewline;
          break;
        }
      }
      if (sawEoh) {
        headerSize = pos - parseStart;
        break;
      }
      if (eoh > 0) {
        this.pos = pos + eoh;
        prevNewline = eoh;
        sawEoh = true;
        continue;
      }
      const f = readHeaderField(m, pos, end)!;
      const lname = asciiLower(cName(f.name));
      if (lname === 'mime-version') {
        n.isMime = true;
      } else if (lname === 'content-type') {
        n.isMime = true;
        if (!seenContentType) {
          seenContentType = true;
          lastBoundary = this.contentTypeFlags(n, m, f);
        }
      }
      if (lname.startsWith('content-')) parseContentHeader(part, lname, fieldValue(m, f));
      prevNewline = f.newlineSize;
      this.pos = f.next;
    }

    part.headerEnd = part.headerStart + Math.max(0, headerSize);
    part.bodyStart = part.headerEnd;
    n.segStart = this.pos;
    n.linesAtBodyStart = this.lines.at(part.bodyStart);

    if (!n.isMime) {
      part.multipart = part.rfc822 = n.digest = false;
      forgetContentData(part);
    }
    const inDigest = n.parent !== null && n.parent.digest;
    if ((!seenContentType || !n.isMime) && inDigest) part.rfc822 = true;
    setType(part, inDigest);
    return pushed;
  }

  /** The first Content-Type decides the part's flags; returns its boundary when a multipart. */
  private contentTypeFlags(n: Node, m: Buffer, f: HeaderField): string | null {
    const p = new Rfc822Parser(fieldValue(m, f));
    p.skipLwsp();
    const str = { s: '' };
    const ret = p.parseContentType(str);
    const t = asciiLower(str.s);
    if (t === 'message/rfc822') {
      n.part.rfc822 = true;
    } else if (t.startsWith('multipart/')) {
      n.part.multipart = true;
      if (t.slice(10) === 'digest') n.digest = true;
    }
    if (ret < 0 || !n.part.multipart) return null;
    for (const [key, value] of rfc2231Parse(p)) {
      if (asciiLower(key) === 'boundary') return value.slice(0, BOUNDARY_STRING_MAX_LEN);
    }
    return null;
  }

  /** Which open boundary the line at lineStart (starting with "--") is, if any. */
  private findBoundary(lineStart: number): { boundary: Boundary; closing: boolean } | null {
    if (this.total >= MAX_TOTAL_PARTS) return null;
    const m = this.m;
    const end = this.end;
    if (lineStart + 1 >= end || m[lineStart] !== DASH || m[lineStart + 1] !== DASH) return null;
    const data = lineStart + 2;
    const lf = m.indexOf(LF, data);
    let findSize: number;
    let trailingDashes = false;
    if (lf < 0) {
      findSize = Math.min(end - data, BOUNDARY_END_MAX_LEN);
    } else {
      findSize = lf - data;
      if (findSize > 0 && m[data + findSize - 1] === CR) findSize--;
      if (findSize > 2 && m[data + findSize - 1] === DASH && m[data + findSize - 2] === DASH) trailingDashes = true;
    }
    let best: Boundary | null = null;
    for (let i = this.boundaries.length - 1; i >= 0; i--) {
      const b = this.boundaries[i]!;
      const len = b.text.length;
      if (len > findSize || (best !== null && best.text.length >= len)) continue;
      if (len > 0 && (m[data] !== b.text[0] || m.compare(b.text, 0, len, data, data + len) !== 0)) continue;
      best = b;
      if (len === findSize || (len === findSize - 2 && trailingDashes)) break;
    }
    if (best === null) return null;
    const len = best.text.length;
    const closing = end - data >= len + 2 && m[data + len] === DASH && m[data + len + 1] === DASH;
    return { boundary: best, closing };
  }

  /** The next boundary line at or after pos (pos being a line start). */
  private findBoundaryLine(pos: number): { lineStart: number; boundary: Boundary; closing: boolean } | null {
    if (this.boundaries.length === 0 || this.total >= MAX_TOTAL_PARTS) return null;
    const m = this.m;
    let line = pos;
    while (line < this.end) {
      if (m[line] === DASH) {
        const b = this.findBoundary(line);
        if (b !== null) return { lineStart: line, ...b };
      }
      const lf = m.indexOf(LF, line);
      if (lf < 0) return null;
      line = lf + 1;
    }
    return null;
  }
}

/** A root part covering the whole message as plain text: the fallback for internal errors. */
function fallbackRoot(message: Buffer): MimePart {
  const part = newPart(0);
  part.bodyEnd = message.length;
  return part;
}

/** The MIME tree of a message in CRLF form. Never throws. */
export function parseStructure(message: Buffer): MimePart {
  try {
    return new StructureParser(message).parse();
  } catch {
    return fallbackRoot(message);
  }
}
