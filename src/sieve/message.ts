/**
 * Message access for the tests: header fields (unfolded, RFC 2047 decoded), addresses
 * (RFC 5322 3.4), MIME parts for `body` (RFC 5173). Parsed lazily, once per run.
 */

export interface HeaderField {
  name: string;
  /** Unfolded raw value (leading white space removed). */
  raw: string;
}

export interface MimePart {
  contentType: string;
  headers: HeaderField[];
  /** Decoded body (transfer encoding removed, charset decoded for text). */
  text: string;
  /** Body as in the message. */
  raw: string;
  children: MimePart[];
}

export class SieveMessage {
  readonly headers: HeaderField[];
  readonly body: string;
  readonly size: number;
  private parts?: MimePart;

  constructor(message: Buffer) {
    this.size = message.length;
    const s = message.toString('latin1');
    const { headers, body } = splitHeader(s);
    this.headers = headers;
    this.body = body;
  }

  /** RFC 5228 5.7: values of the named fields, decoded (RFC 2047), in order. */
  headerValues(name: string): string[] {
    const n = name.toLowerCase();
    return this.headers.filter((h) => h.name.toLowerCase() === n).map((h) => decodeMimeWords(h.raw.replace(/[ \t]+$/, '')));
  }

  rawHeaderValues(name: string): string[] {
    const n = name.toLowerCase();
    return this.headers.filter((h) => h.name.toLowerCase() === n).map((h) => h.raw);
  }

  mime(): MimePart {
    this.parts ??= parsePart(this.headers, this.body, 0);
    return this.parts;
  }
}

function splitHeader(s: string): { headers: HeaderField[]; body: string } {
  const m = /\r?\n\r?\n/.exec(s);
  const headerText = m ? s.slice(0, m.index) : s;
  const body = m ? s.slice(m.index + m[0].length) : '';
  if (m === null && /^\r?\n/.test(s)) return { headers: [], body: s.replace(/^\r?\n/, '') };
  const headers: HeaderField[] = [];
  for (const line of headerText.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && headers.length > 0) {
      headers[headers.length - 1]!.raw += line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    headers.push({ name, raw: line.slice(colon + 1).replace(/^[ \t]+/, '') });
  }
  for (const h of headers) h.raw = toUtf8(h.raw);
  return { headers, body };
}

/** Header bytes read as latin1: 8-bit UTF-8 is turned back into characters when valid. */
function toUtf8(latin1: string): string {
  if (!/[\x80-\xff]/.test(latin1)) return latin1;
  // invalid UTF-8 octets become U+FFFD, as Pigeonhole does
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

function decodeCharset(bytes: Buffer, charset: string): string {
  const cs = charset.toLowerCase().replace(/\*.*$/, '');
  try {
    return new TextDecoder(cs === 'us-ascii' ? 'utf-8' : cs).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

/** RFC 2047 encoded words; white space between adjacent encoded words is dropped (6.2). */
export function decodeMimeWords(value: string): string {
  if (!value.includes('=?')) return value;
  return value
    .replace(/(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)/g, '$1')
    .replace(/=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g, (whole, charset: string, enc: string, text: string) => {
      try {
        const bytes =
          enc.toUpperCase() === 'B'
            ? Buffer.from(text, 'base64')
            : Buffer.from(
                text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
                'latin1',
              );
        return decodeCharset(bytes, charset);
      } catch {
        return whole;
      }
    });
}

/** The addresses of an address-list header (RFC 5322 3.4), group names and comments dropped. */
export function parseAddresses(value: string): string[] {
  // remove comments (nested), keeping quoted strings intact
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted) {
      out += c;
      if (c === '\\' && i + 1 < value.length) out += value[++i];
      else if (c === '"') quoted = false;
    } else if (depth > 0) {
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
    } else if (c === '"') {
      quoted = true;
      out += c;
    } else if (c === '(') {
      depth++;
      out += ' ';
    } else out += c;
  }
  // split on commas outside quotes and angle brackets; groups "name: a, b;" contribute members
  const items: string[] = [];
  let cur = '';
  quoted = false;
  let angle = false;
  for (let i = 0; i < out.length; i++) {
    const c = out[i]!;
    if (quoted) {
      cur += c;
      if (c === '\\' && i + 1 < out.length) cur += out[++i];
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    if (c === '<') angle = true;
    if (c === '>') angle = false;
    if (!angle && c === ':' && !cur.includes('@') && !cur.includes('<')) {
      cur = '';
      continue;
    }
    if (!angle && (c === ',' || c === ';')) {
      items.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  items.push(cur);
  const addresses: string[] = [];
  for (const item of items) {
    const t = item.trim();
    if (!t) continue;
    const m = /<([^>]*)>/.exec(t);
    let addr = (m ? m[1]! : t).trim();
    addr = addr.replace(/^@[^:]*:/, ''); // obsolete source route
    addresses.push(addr.replace(/\s+/g, ''));
  }
  return addresses;
}

export function localPart(addr: string): string {
  const at = addr.lastIndexOf('@');
  return at < 0 ? addr : addr.slice(0, at);
}

export function domainPart(addr: string): string {
  const at = addr.lastIndexOf('@');
  return at < 0 ? '' : addr.slice(at + 1);
}

function param(value: string, name: string): string | undefined {
  const re = new RegExp(`;\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'i');
  const m = re.exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

const MAX_MIME_DEPTH = 16;
const MAX_MIME_PARTS = 1000;

function parsePart(headers: HeaderField[], body: string, depth: number, defaultType = 'text/plain', count = { n: 0 }): MimePart {
  const ctHeader = headers.find((h) => h.name.toLowerCase() === 'content-type')?.raw ?? '';
  const contentType = (/^\s*([^;\s]+)/.exec(ctHeader)?.[1] ?? defaultType).toLowerCase();
  const cte = (headers.find((h) => h.name.toLowerCase() === 'content-transfer-encoding')?.raw ?? '').trim().toLowerCase();
  const part: MimePart = { contentType, headers, raw: body, text: '', children: [] };
  count.n++;
  if (contentType.startsWith('multipart/') && depth < MAX_MIME_DEPTH) {
    const boundary = param(ctHeader, 'boundary');
    if (boundary) {
      const delim = `--${boundary}`;
      const lines = body.split(/\r?\n/);
      let current: string[] | undefined;
      const chunks: string[] = [];
      for (const line of lines) {
        if (line.startsWith(delim)) {
          if (current) chunks.push(current.join('\r\n'));
          if (line.slice(delim.length).startsWith('--')) {
            current = undefined;
            break;
          }
          current = [];
        } else if (current) current.push(line);
      }
      if (current) chunks.push(current.join('\r\n'));
      const childDefault = contentType === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
      for (const chunk of chunks) {
        if (count.n >= MAX_MIME_PARTS) break;
        const split = chunk.startsWith('\r\n') || chunk === '' ? { headers: [], body: chunk.replace(/^\r\n/, '') } : splitHeader(chunk);
        part.children.push(parsePart(split.headers, split.body, depth + 1, childDefault, count));
      }
    }
    return part;
  }
  if (contentType === 'message/rfc822' && depth < MAX_MIME_DEPTH) {
    const split = splitHeader(body);
    part.children.push(parsePart(split.headers, split.body, depth + 1, 'text/plain', count));
    return part;
  }
  let bytes: Buffer;
  if (cte === 'base64') bytes = Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
  else if (cte === 'quoted-printable')
    bytes = Buffer.from(
      body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
      'latin1',
    );
  else bytes = Buffer.from(body, 'latin1');
  part.text = contentType.startsWith('text/') ? decodeCharset(bytes, param(ctHeader, 'charset') ?? 'utf-8') : bytes.toString('latin1');
  return part;
}

/** All leaf and container parts in order (RFC 5173 5.2 :content visits every part). */
export function flattenParts(p: MimePart): MimePart[] {
  return [p, ...p.children.flatMap(flattenParts)];
}
