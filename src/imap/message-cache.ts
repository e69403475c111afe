/**
 * What IMAP keeps in the store's per-mailbox metadata cache (store/mail/cache.ts), so that
 * FETCH ENVELOPE/BODY/BODYSTRUCTURE and SEARCH on the usual header keys never parse a message
 * file twice: the three FETCH items in their encoded wire form, and the decoded header fields
 * SEARCH compares (the same values search.ts computes from the file, so the answers are
 * identical either way), with the header's length for the searches that need other fields.
 *
 * CACHE_SCHEMA names this encoding: change it whenever what is stored or how it is computed
 * changes (ENVELOPE/BODYSTRUCTURE builders, header decoding), and old records become misses.
 */
import libmime from 'libmime';
import { parseAddresses, writeAddresses } from './mime/address.js';
import { bodyStructure, envelope, headerFields, type MimePart } from './mime/index.js';
import { encodeToBuffer } from './values.js';

export const CACHE_SCHEMA = 'imap 2';

export const FIELD_ENVELOPE = 1;
export const FIELD_BODY = 2;
export const FIELD_BODYSTRUCTURE = 3;
export const FIELD_SEARCH = 4;

/** The address fields SEARCH FROM/TO/CC/BCC compare as addresses (comments removed). */
const ADDRESS_FIELDS: ReadonlySet<string> = new Set(['from', 'to', 'cc', 'bcc']);

/**
 * The name under which decodedHeaders() keeps the addresses of an address field written out
 * again (writeAddresses): "address:from". A colon never occurs in a field name (RFC 5322
 * section 2.2), so these never meet a real field.
 */
export function addressKey(field: string): string {
  return `address:${field}`;
}

/** Header fields (lower case) whose decoded values the cache holds for SEARCH, in stored order. */
export const CACHED_HEADERS: readonly string[] = [
  'from',
  'to',
  'cc',
  'bcc',
  'subject',
  'date',
  'message-id',
  'in-reply-to',
  ...[...ADDRESS_FIELDS].map(addressKey),
];
const CACHED_INDEX = new Map(CACHED_HEADERS.map((h, i) => [h, i]));
const CACHED_SET: ReadonlySet<string> = new Set(CACHED_HEADERS);

export function isCachedHeader(field: string): boolean {
  return CACHED_INDEX.has(field);
}

function decodeWords(value: string): string {
  // (libmime changes nothing in a value without an encoded word or its NUL join marker.)
  if (!value.includes('=?') && !value.includes('\u0000')) return value;
  try {
    return libmime.decodeWords(value);
  } catch {
    return value; // keep the raw text
  }
}

function push(headers: Map<string, string[]>, key: string, value: string): void {
  const list = headers.get(key);
  if (list) list.push(value);
  else headers.set(key, [value]);
}

/**
 * The top-level header fields as SEARCH compares them: name in lower case -> values in order,
 * each unfolded, trimmed and with RFC 2047 encoded words decoded. `only`: just these names.
 * From, To, Cc and Bcc also under addressKey(name): their addresses without comments, as
 * Dovecot matches SEARCH FROM/TO/CC/BCC (parsed before decoding, so an encoded comma in a
 * name stays part of the name).
 */
export function decodedHeaders(data: Buffer, root: MimePart, only?: ReadonlySet<string>): Map<string, string[]> {
  const headers = new Map<string, string[]>();
  for (const h of headerFields(data, root)) {
    const k = h.name.toLowerCase();
    const wantValue = !only || only.has(k);
    const wantAddress = ADDRESS_FIELDS.has(k) && (!only || only.has(addressKey(k)));
    if (!wantValue && !wantAddress) continue;
    const raw = h.raw.toString('utf8');
    const value = raw
      .slice(raw.indexOf(':') + 1)
      .replace(/\r?\n[ \t]/g, ' ')
      .trim();
    if (wantValue) push(headers, k, decodeWords(value));
    if (wantAddress) push(headers, addressKey(k), decodeWords(writeAddresses(parseAddresses(value))));
  }
  return headers;
}

/** The offset in the stored form (LF line ends) of an offset in the CRLF form made from it. */
export function storedOffset(raw: Buffer, crlfOffset: number): number {
  let crlf = 0;
  let i = 0;
  while (i < raw.length && crlf < crlfOffset) {
    const lf = raw.indexOf(0x0a, i);
    if (lf === -1 || crlf + (lf - i) >= crlfOffset) return i + (crlfOffset - crlf);
    // bytes up to the LF, plus the CR that conversion adds before a bare LF
    crlf += lf - i + (lf > 0 && raw[lf - 1] === 0x0d ? 1 : 2);
    i = lf + 1;
  }
  return Math.min(i, raw.length);
}

// eslint-disable-next-line no-control-regex
const SURROGATE = /[\ud800-\udfff]/;

/** FIELD_SEARCH: u32 header length (stored form), then per CACHED_HEADERS u16 count + (u32 length, UTF-8)*. */
function encodeSearch(headers: Map<string, string[]>, headerBytes: number): Buffer | undefined {
  const parts: Buffer[] = [];
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32LE(headerBytes >>> 0);
  parts.push(head);
  for (const name of CACHED_HEADERS) {
    const values = headers.get(name) ?? [];
    if (values.length > 0xffff) return undefined;
    const count = Buffer.allocUnsafe(2);
    count.writeUInt16LE(values.length);
    parts.push(count);
    for (const v of values) {
      const bytes = Buffer.from(v, 'utf8');
      // A lone surrogate would not survive UTF-8: such a message is searched in its file.
      if (SURROGATE.test(v) && bytes.toString('utf8') !== v) return undefined;
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(bytes.length);
      parts.push(len, bytes);
    }
  }
  return Buffer.concat(parts);
}

/** The cached SEARCH data of one message. */
export class SearchMeta {
  private constructor(private readonly buf: Buffer) {}

  /** The data, or undefined when it is not well formed (then the message is read instead). */
  static from(buf: Buffer): SearchMeta | undefined {
    let p = 4;
    for (let i = 0; i < CACHED_HEADERS.length; i++) {
      if (p + 2 > buf.length) return undefined;
      const count = buf.readUInt16LE(p);
      p += 2;
      for (let j = 0; j < count; j++) {
        if (p + 4 > buf.length) return undefined;
        p += 4 + buf.readUInt32LE(p);
      }
    }
    return p === buf.length ? new SearchMeta(buf) : undefined;
  }

  /** Length of the header in the stored file (the bytes a search of other fields reads). */
  get headerBytes(): number {
    return this.buf.readUInt32LE(0);
  }

  /** The decoded values of a cached field ([] when the message has none). */
  values(field: string): string[] {
    const want = CACHED_INDEX.get(field);
    if (want === undefined) throw new Error(`${field} is not cached`);
    const b = this.buf;
    let p = 4;
    for (let i = 0; i < want; i++) {
      const count = b.readUInt16LE(p);
      p += 2;
      for (let j = 0; j < count; j++) p += 4 + b.readUInt32LE(p);
    }
    const count = b.readUInt16LE(p);
    p += 2;
    const out: string[] = [];
    for (let j = 0; j < count; j++) {
      const len = b.readUInt32LE(p);
      out.push(b.toString('utf8', p + 4, p + 4 + len));
      p += 4 + len;
    }
    return out;
  }
}

/**
 * Every cached field of a message: `raw` as stored, `data` its CRLF form, `root` its structure,
 * `headers` its decodedHeaders() when the caller has them already.
 */
export function cacheFields(raw: Buffer, data: Buffer, root: MimePart, headers?: Map<string, string[]>): Array<[number, Buffer]> {
  const fields: Array<[number, Buffer]> = [
    [FIELD_ENVELOPE, encodeToBuffer(envelope(data, root))],
    [FIELD_BODY, encodeToBuffer(bodyStructure(data, root, false))],
    [FIELD_BODYSTRUCTURE, encodeToBuffer(bodyStructure(data, root, true))],
  ];
  const search = encodeSearch(headers ?? decodedHeaders(data, root, CACHED_SET), storedOffset(raw, root.headerEnd));
  if (search) fields.push([FIELD_SEARCH, search]);
  return fields;
}
