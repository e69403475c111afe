/**
 * RFC 822/2045 token parsing of header values, following Dovecot 2.3's lib-mail rfc822-parser.c
 * and rfc2231-parser.c step by step, quirks included (that is the point: ENVELOPE and
 * BODYSTRUCTURE must come out as Dovecot's do).
 *
 * Values are binary strings (one char per byte). Return codes follow Dovecot's: 1 = parsed and
 * more input follows, 0 = parsed and the input ended, -1 = syntax error.
 */

/** U+FFFD as UTF-8 bytes: what Dovecot puts in place of NUL bytes in header values. */
export const NUL_REPLACEMENT = '\xef\xbf\xbd';

/** atext chars are 1, alpha and digits 2, atext-but-MIME-tspecials ('/', '=', '?') 4. */
const ATEXT = new Uint8Array(256);
{
  const row = (start: number, values: number[]): void => values.forEach((v, i) => (ATEXT[start + i] = v));
  row(32, [0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 4]);
  row(48, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 4, 0, 4]);
  row(64, [0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
  row(80, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 1, 1]);
  row(96, [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
  row(112, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 0]);
  for (let c = 128; c < 256; c++) ATEXT[c] = 2;
}

function isAtext(c: number): boolean {
  return ATEXT[c & 0xff] !== 0;
}

function isAtextNonTspecial(c: number): boolean {
  return (ATEXT[c & 0xff]! & 3) !== 0;
}

/** strcasecmp() in the C locale: only ASCII letters fold. */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

function asciiEqualsIgnoreCase(a: string, b: string): boolean {
  return a.length === b.length && asciiLower(a) === asciiLower(b);
}

export class Rfc822Parser {
  pos = 0;
  end: number;
  /** The text of the last comment skipped, when collecting (address parsing). */
  lastComment: string | null;
  nulReplacement: string | null = null;

  constructor(
    readonly data: string,
    collectComments = false,
  ) {
    this.end = data.length;
    this.lastComment = collectComments ? '' : null;
  }

  /** The char code at the current position (NaN past the end, which matches nothing). */
  cur(): number {
    return this.data.charCodeAt(this.pos);
  }

  skipComment(): number {
    const d = this.data;
    let level = 1;
    if (this.lastComment !== null) this.lastComment = '';
    let start = ++this.pos;
    for (; this.pos < this.end; this.pos++) {
      switch (d.charCodeAt(this.pos)) {
        case 0:
          if (this.lastComment !== null && this.nulReplacement !== null) {
            this.lastComment += d.slice(start, this.pos) + this.nulReplacement;
            start = this.pos + 1;
          }
          break;
        case 0x28: // (
          level++;
          break;
        case 0x29: // )
          if (--level === 0) {
            if (this.lastComment !== null) this.lastComment += d.slice(start, this.pos);
            this.pos++;
            return this.pos < this.end ? 1 : 0;
          }
          break;
        case 0x0a: {
          if (this.lastComment === null) break;
          let len = this.pos - start;
          if (len > 0 && d.charCodeAt(start + len - 1) === 0x0d) len--;
          this.lastComment += d.slice(start, start + len);
          start = this.pos + 1;
          break;
        }
        case 0x5c: {
          this.pos++;
          if (this.pos >= this.end) return -1;
          const c = d.charCodeAt(this.pos);
          if (c === 0x0d || c === 0x0a || c === 0) {
            this.pos--;
            break;
          }
          if (this.lastComment !== null) this.lastComment += d.slice(start, this.pos - 1);
          start = this.pos;
          break;
        }
      }
    }
    return -1;
  }

  skipLwsp(): number {
    while (this.pos < this.end) {
      const c = this.data.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) {
        this.pos++;
        continue;
      }
      if (c !== 0x28) break;
      if (this.skipComment() < 0) return -1;
    }
    return this.pos < this.end ? 1 : 0;
  }

  /** rfc822_parse_atom(); appends to out[0]. */
  parseAtom(out: { s: string }): number {
    if (this.pos >= this.end || !isAtext(this.cur())) return -1;
    const start = this.pos++;
    for (; this.pos < this.end; this.pos++) {
      if (isAtext(this.cur())) continue;
      out.s += this.data.slice(start, this.pos);
      return this.skipLwsp();
    }
    out.s += this.data.slice(start, this.pos);
    return 0;
  }

  parseDotAtom(out: { s: string }): number {
    if (this.pos >= this.end || !isAtext(this.cur())) return -1;
    let start = this.pos++;
    while (this.pos < this.end) {
      if (isAtext(this.cur())) {
        this.pos++;
        continue;
      }
      if (start === this.pos) return -1;
      out.s += this.data.slice(start, this.pos);
      const ret = this.skipLwsp();
      if (ret <= 0) return ret;
      if (this.cur() !== 0x2e) return 1;
      this.pos++;
      out.s += '.';
      if (this.skipLwsp() <= 0) return -1;
      start = this.pos;
    }
    out.s += this.data.slice(start, this.pos);
    return 0;
  }

  parseMimeToken(out: { s: string }): number {
    const start = this.pos;
    for (; this.pos < this.end; this.pos++) {
      const c = this.cur();
      if (isAtextNonTspecial(c) || c === 0x2e) continue;
      out.s += this.data.slice(start, this.pos);
      return this.skipLwsp();
    }
    out.s += this.data.slice(start, this.pos);
    return 0;
  }

  parseQuotedString(out: { s: string }): number {
    const d = this.data;
    this.pos++;
    let start = this.pos;
    for (; this.pos < this.end; this.pos++) {
      switch (d.charCodeAt(this.pos)) {
        case 0:
          if (this.nulReplacement !== null) {
            out.s += d.slice(start, this.pos) + this.nulReplacement;
            start = this.pos + 1;
          }
          break;
        case 0x22:
          out.s += d.slice(start, this.pos);
          this.pos++;
          return this.skipLwsp();
        case 0x0a: {
          let len = this.pos - start;
          if (len > 0 && d.charCodeAt(start + len - 1) === 0x0d) len--;
          out.s += d.slice(start, start + len);
          start = this.pos + 1;
          break;
        }
        case 0x5c: {
          this.pos++;
          if (this.pos >= this.end) return -1;
          const c = d.charCodeAt(this.pos);
          if (c === 0x0d || c === 0x0a || c === 0) {
            this.pos--;
            break;
          }
          out.s += d.slice(start, this.pos - 1);
          start = this.pos;
          break;
        }
      }
    }
    return -1;
  }

  private parseAtomOrDot(out: { s: string }): number {
    const start = this.pos;
    for (; this.pos < this.end; this.pos++) {
      const c = this.cur();
      if (isAtext(c) || c === 0x2e) continue;
      out.s += this.data.slice(start, this.pos);
      return this.skipLwsp();
    }
    out.s += this.data.slice(start, this.pos);
    return 0;
  }

  parsePhrase(out: { s: string }): number {
    if (this.pos >= this.end) return 0;
    if (this.cur() === 0x2e) return -1;
    for (;;) {
      const ret = this.cur() === 0x22 ? this.parseQuotedString(out) : this.parseAtomOrDot(out);
      if (ret <= 0) return ret;
      const c = this.cur();
      if (!isAtext(c) && c !== 0x22 && c !== 0x2e) break;
      out.s += ' ';
    }
    return this.skipLwsp();
  }

  private parseDomainLiteral(out: { s: string }): number {
    const d = this.data;
    let start = this.pos++;
    for (; this.pos < this.end; this.pos++) {
      switch (d.charCodeAt(this.pos)) {
        case 0:
          if (this.nulReplacement !== null) {
            out.s += d.slice(start, this.pos) + this.nulReplacement;
            start = this.pos + 1;
          }
          break;
        case 0x5b:
          return -1;
        case 0x5d:
          out.s += d.slice(start, this.pos + 1);
          this.pos++;
          return this.skipLwsp();
        case 0x0a: {
          let len = this.pos - start;
          if (len > 0 && d.charCodeAt(start + len - 1) === 0x0d) len--;
          out.s += d.slice(start, start + len);
          start = this.pos + 1;
          break;
        }
        case 0x5c: {
          // the '\' is kept in the output
          this.pos++;
          if (this.pos >= this.end) return -1;
          const c = d.charCodeAt(this.pos);
          if (c === 0x0d || c === 0x0a || c === 0) {
            out.s += d.slice(start, this.pos);
            start = this.pos;
            this.pos--;
          }
          break;
        }
      }
    }
    return -1;
  }

  /** At '@': the domain after it. */
  parseDomain(out: { s: string }): number {
    this.pos++;
    if (this.skipLwsp() <= 0) return -1;
    if (this.cur() === 0x5b) return this.parseDomainLiteral(out);
    return this.parseDotAtom(out);
  }

  /** "type/subtype" into out; on errors out keeps what Dovecot keeps. */
  parseContentType(out: { s: string }): number {
    const pos0 = out.s.length;
    if (this.skipLwsp() <= 0) return -1;
    if (this.parseMimeToken(out) <= 0 || out.s.length === pos0) return -1;
    if (this.cur() !== 0x2f) {
      out.s = out.s.slice(0, pos0);
      return -1;
    }
    this.pos++;
    if (this.skipLwsp() <= 0) {
      out.s = out.s.slice(0, pos0);
      return -1;
    }
    out.s += '/';
    const pos1 = out.s.length;
    const ret = this.parseMimeToken(out);
    if (ret < 0 || out.s.length === pos1 || (this.pos !== this.end && this.cur() !== 0x3b)) {
      out.s = out.s.slice(0, pos0);
      return -1;
    }
    return ret;
  }

  /** One "; key=value"; returns 0 at the end, -1 on error, 1 with key/value set. */
  parseContentParam(result: { key: string | null; value: string }): number {
    result.key = null;
    result.value = '';
    if (this.pos >= this.end) return 0;
    if (this.cur() !== 0x3b) return -1;
    this.pos++;
    if (this.skipLwsp() <= 0) return -1;
    const key = { s: '' };
    if (this.parseMimeToken(key) <= 0) return -1;
    if (this.cur() !== 0x3d) return -1;
    this.pos++;
    const value = { s: '' };
    let ret = this.skipLwsp();
    if (ret <= 0) {
      // broken / no value
    } else if (this.cur() === 0x22) {
      ret = this.parseQuotedString(value);
    } else if (this.pos < this.end && this.cur() === 0x3d) {
      // workaround for broken input: name==?utf-8?b?...?=
      const start = this.pos;
      while (this.pos < this.end) {
        const c = this.cur();
        if (c === 0x3b || c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) break;
        this.pos++;
      }
      value.s += this.data.slice(start, this.pos);
    } else {
      ret = this.parseMimeToken(value);
    }
    result.key = key.s;
    result.value = value.s;
    return ret < 0 ? -1 : 1;
  }
}

/** C-string view of a value: Dovecot keeps these in NUL-terminated strings. */
function cstr(s: string): string {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}

interface Rfc2231Param {
  key: string;
  value: string;
  idx: number;
  extended: boolean;
}

/**
 * rfc2231_parse(): all "; key=value" parameters, RFC 2231 continuations (key*0, key*1*, ...)
 * merged into one key ("key*" with the still-encoded value when any piece was extended). Plain
 * parameters come first in their order, then the merged ones sorted by key. Parameters with a
 * missing index are kept as they were written.
 */
export function rfc2231Parse(parser: Rfc822Parser): Array<[string, string]> {
  const prevReplacement = parser.nulReplacement;
  parser.nulReplacement = NUL_REPLACEMENT;
  const result: Array<[string, string]> = [];
  const params: Rfc2231Param[] = [];
  // Dovecot reuses one struct for every parameter and resets idx only when digits follow the
  // '*', so "key*" inherits the index of the previous RFC 2231 parameter.
  let idx = 0;
  let extended = false;
  const kv = { key: null as string | null, value: '' };
  for (;;) {
    const ret = parser.parseContentParam(kv);
    if (ret === 0) break;
    if (ret < 0) {
      // try to continue anyway..
      if (parser.pos >= parser.end) break;
      parser.pos++;
      continue;
    }
    const key = cstr(kv.key!);
    const value = cstr(kv.value);
    const star = key.indexOf('*');
    let plain = star < 0;
    if (!plain) {
      let p = star;
      if (p + 1 < key.length) {
        p++;
        idx = 0;
        for (; p < key.length && key.charCodeAt(p) >= 0x30 && key.charCodeAt(p) <= 0x39; p++) {
          idx = (idx * 10 + key.charCodeAt(p) - 0x30) >>> 0;
        }
      }
      if (key[p] !== '*') {
        extended = false;
      } else {
        extended = true;
        p++;
      }
      if (p < key.length) plain = true;
      else params.push({ key: key.slice(0, star), value, idx, extended });
    }
    if (plain) result.push([key, value]);
  }
  parser.nulReplacement = prevReplacement;
  if (params.length === 0) return result;

  params.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.idx - b.idx));
  for (let i = 0; i < params.length;) {
    let ok = true;
    let haveExtended = false;
    let nextIdx = 0;
    let j = i;
    for (; j < params.length; j++) {
      if (!asciiEqualsIgnoreCase(params[i]!.key, params[j]!.key)) break;
      if (params[j]!.idx !== nextIdx) ok = false;
      if (params[j]!.extended) haveExtended = true;
      nextIdx++;
    }
    const next = j;
    if (!ok) {
      for (j = i; j < next; j++) {
        const p = params[j]!;
        result.push([`${p.key}*${p.idx}${p.extended ? '*' : ''}`, p.value]);
      }
    } else {
      let value = '';
      if (!params[i]!.extended && haveExtended) value += "''";
      for (j = i; j < next; j++) {
        const p = params[j]!;
        value += !p.extended && haveExtended ? p.value.replace(/%/g, '%25') : p.value;
      }
      result.push([haveExtended ? `${params[i]!.key}*` : params[i]!.key, value]);
    }
    i = next;
  }
  return result;
}
