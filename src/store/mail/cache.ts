/**
 * maild-cache: per-message metadata the protocol layer computed from a message file and wants
 * back without reading the file again (for IMAP: the encoded ENVELOPE, BODY and BODYSTRUCTURE,
 * and the decoded header fields SEARCH looks at). The store treats the fields as opaque bytes
 * under small numeric ids; a message is known by its Maildir base name, which flag changes do
 * not touch and which names the same (immutable) content for the message's whole life.
 *
 * The file, one per mailbox directory, is an append-only log:
 *
 *   maild-cache 1 <schema>\n                      header: format version and the producer's schema
 *   +<len> <crc> <payload>\n                      one record (len: decimal byte count of payload)
 *   ...
 *
 *   payload = u16 key length | key (UTF-8) | u32 message size (0xffffffff: unknown)
 *             | { u8 field id | u32 length | bytes }*            (integers little-endian)
 *   crc     = CRC-32 of the payload seeded with the CRC-32 of the schema, 8 hex digits
 *
 * A later record for a key replaces an earlier one. Every append is one write() with O_APPEND
 * that starts with a newline, so a record torn by a crash (or a disk full) becomes a line that
 * fails its framing check (the byte after `len` bytes of payload must be the newline) and is
 * skipped, and the next writer's records still start on a line of their own. Checksums are
 * verified on the first access to a record, not at load: a record that fails is a miss, the
 * protocol layer parses the message again and stores a fresh record. Records of another schema
 * (an older or newer maild appending to the same file) fail the seeded checksum the same way; a
 * header of another format or schema makes the whole file a miss and the next write replaces it.
 *
 * Loading is lazy (the first lookup of a command that needs cached fields) and keeps the file's
 * bytes in memory as they are (one Buffer per load or append batch) with a Map from key to
 * location: no JS object per field or message. Loaded caches of all mailboxes share a memory
 * budget; the least recently used are dropped (and reloaded on demand) beyond it.
 *
 * Writes are batched: put() queues, flush() appends the batch. Compaction (when records of
 * expunged messages, replaced records and damaged lines make up more than the live ones) rereads
 * the file, keeps the newest valid record of every live key, and replaces the file by a temp
 * file + fsync + rename under maild-cache.lock, a Dovecot-style dotlock. Appends do not take the
 * lock: an append that lands in the old file while another process compacts is lost, which only
 * costs a re-parse. Nothing here ever throws at a caller because of the file's content.
 */
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Logger } from '../../log.js';
import { acquireDotlock } from '../dovecot/dotlock.js';
import { replaceFile } from '../dovecot/fsutil.js';
import { readHead } from '../fsio.js';
import { Mutex } from './mutex.js';

export const CACHE_FILE = 'maild-cache';
const FORMAT = 1;
const MAGIC = 'maild-cache';
const NL = 0x0a;
const PLUS = 0x2b;
const SPACE = 0x20;
const UNKNOWN_SIZE = 0xffffffff;
/** Locations are chunk * 2^32 + offset; offsets stay below 4 GiB (files larger are not loaded). */
const CHUNK_SPAN = 2 ** 32;
const MAX_FILE = 1024 * 1024 * 1024;
/** A record larger than this is not stored (a pathological message is re-parsed instead). */
const MAX_RECORD = 4 * 1024 * 1024;
/** Below this much garbage, compaction is not worth a rewrite. */
const MIN_GARBAGE = 256 * 1024;
/** Pending bytes after which the caller is asked to flush in the middle of a long command. */
const FLUSH_HINT = 4 * 1024 * 1024;

// ---- CRC-32 (zlib.crc32 exists from Node 20.15 / 22.2; a table version before that) ----------

const nativeCrc = (zlib as { crc32?: (data: Uint8Array | string, value?: number) => number }).crc32;
let table: Uint32Array | undefined;
function jsCrc32(data: Uint8Array | string, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let crc = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
export const crc32: (data: Uint8Array | string, value?: number) => number = nativeCrc ?? jsCrc32;

// ---- shared memory budget --------------------------------------------------------------------

/**
 * Loaded caches, least recently used first. Weak: a mailbox the service forgot takes its cache
 * with it, without an unload.
 */
const loadedCaches = new Set<WeakRef<MetaCache>>();
let memoryBudget = 512 * 1024 * 1024;

/** Bytes all loaded caches may hold together (default 512 MiB); the least recently used go first. */
export function setCacheMemoryBudget(bytes: number): void {
  memoryBudget = bytes;
}

function enforceBudget(keep: MetaCache): void {
  let total = 0;
  for (const ref of loadedCaches) {
    const c = ref.deref();
    if (c) total += c.memoryBytes;
    else loadedCaches.delete(ref);
  }
  for (const ref of [...loadedCaches]) {
    if (total <= memoryBudget) break;
    const c = ref.deref();
    if (!c || c === keep || !c.evictable) continue;
    total -= c.memoryBytes;
    c.unload();
  }
}

// ---- records -----------------------------------------------------------------------------------

export type CacheFields = ReadonlyArray<readonly [number, Buffer]>;

/** One cached record (a view on the cache's memory: do not keep it across commands). */
export class CacheEntry {
  constructor(
    private readonly buf: Buffer,
    private readonly start: number,
    private readonly end: number,
  ) {}

  /** The field's bytes (a view, not a copy), or undefined when the record lacks it. */
  field(id: number): Buffer | undefined {
    const { buf, end } = this;
    let p = this.start + 2 + buf.readUInt16LE(this.start) + 4;
    while (p + 5 <= end) {
      const fid = buf[p]!;
      const len = buf.readUInt32LE(p + 1);
      if (fid === id) return buf.subarray(p + 5, Math.min(p + 5 + len, end));
      p += 5 + len;
    }
    return undefined;
  }

  fields(): Array<[number, Buffer]> {
    const out: Array<[number, Buffer]> = [];
    const { buf, end } = this;
    let p = this.start + 2 + buf.readUInt16LE(this.start) + 4;
    while (p + 5 <= end) {
      const len = buf.readUInt32LE(p + 1);
      out.push([buf[p]!, buf.subarray(p + 5, Math.min(p + 5 + len, end))]);
      p += 5 + len;
    }
    return out;
  }

  /** The message size the record was made for, or -1. */
  get size(): number {
    const s = this.buf.readUInt32LE(this.start + 2 + this.buf.readUInt16LE(this.start));
    return s === UNKNOWN_SIZE ? -1 : s;
  }
}

/** What frameAt() found (module state rather than an object per call: it runs per record). */
let frameLen = 0;
let frameCrc = 0;
let frameNext = 0;

/**
 * The framing of the record line starting at `pos`: the payload's offset, with frameLen,
 * frameCrc and frameNext set; -1 when it is not a whole record.
 */
function frameAt(buf: Buffer, pos: number, end: number): number {
  if (pos >= end || buf[pos] !== PLUS) return -1;
  let p = pos + 1;
  let len = 0;
  const digitsEnd = Math.min(end, p + 10);
  while (p < digitsEnd) {
    const c = buf[p]!;
    if (c < 0x30 || c > 0x39) break;
    len = len * 10 + (c - 0x30);
    p++;
  }
  if (p === pos + 1 || p + 10 > end || buf[p] !== SPACE || buf[p + 9] !== SPACE) return -1;
  let crc = 0;
  for (let k = p + 1; k < p + 9; k++) {
    const c = buf[k]!;
    if (c >= 0x30 && c <= 0x39) crc = crc * 16 + (c - 0x30);
    else if (c >= 0x61 && c <= 0x66) crc = crc * 16 + (c - 0x57);
    else return -1;
  }
  const payload = p + 10;
  if (len < 6 || payload + len >= end || buf[payload + len] !== NL) return -1;
  if (2 + buf.readUInt16LE(payload) + 4 > len) return -1;
  frameLen = len;
  frameCrc = crc;
  frameNext = payload + len + 1;
  return payload;
}

/** Where the next line starts after `pos` (end when there is none). */
function nextLine(buf: Buffer, pos: number, end: number): number {
  const nl = buf.indexOf(NL, pos);
  return nl === -1 || nl >= end ? end : nl + 1;
}

function keyOf(buf: Buffer, payload: number): string {
  const keyLen = buf.readUInt16LE(payload);
  return buf.toString('utf8', payload + 2, payload + 2 + keyLen);
}

/** Builds one record line; undefined when it would be too large. */
export function encodeRecord(key: string, size: number, fields: CacheFields, seed: number): Buffer | undefined {
  const keyBytes = Buffer.from(key, 'utf8');
  if (keyBytes.length > 0xffff) return undefined;
  let len = 2 + keyBytes.length + 4;
  for (const [, data] of fields) len += 5 + data.length;
  if (len > MAX_RECORD) return undefined;
  const payload = Buffer.allocUnsafe(len);
  payload.writeUInt16LE(keyBytes.length, 0);
  let p = 2 + keyBytes.copy(payload, 2);
  payload.writeUInt32LE(size >= 0 && size < UNKNOWN_SIZE ? size : UNKNOWN_SIZE, p);
  p += 4;
  for (const [id, data] of fields) {
    payload[p] = id;
    payload.writeUInt32LE(data.length, p + 1);
    p += 5 + data.copy(payload, p + 5);
  }
  const head = `+${len} ${crc32(payload, seed).toString(16).padStart(8, '0')} `;
  const out = Buffer.allocUnsafe(head.length + len + 1);
  out.write(head, 0, 'latin1');
  payload.copy(out, head.length);
  out[out.length - 1] = NL;
  return out;
}

export function headerLine(schema: string): string {
  return `${MAGIC} ${FORMAT} ${schema}\n`;
}

export interface MetaCacheOptions {
  logger?: Logger;
}

export interface CacheStats {
  loaded: boolean;
  /** Live records indexed. */
  records: number;
  /** Bytes of the file as this process knows it (loaded plus appended). */
  fileBytes: number;
  /** Bytes of the records indexed. */
  liveBytes: number;
  pending: number;
  compactions: number;
}

/**
 * The cache of one mailbox directory. `schema` names the producer's encoding of the fields
 * (it changes whenever the protocol layer changes what it stores); it is fixed by the first
 * load() or adopt().
 */
export class MetaCache {
  readonly file: string;
  readonly #opts: MetaCacheOptions;
  readonly #mutex = new Mutex();
  #schema: string | undefined;
  #seed = 0;
  #loaded = false;
  #loading: Promise<void> | undefined;
  /** The file as loaded, then the batches this process appended. */
  #chunks: Buffer[] = [];
  /** key -> location (chunk * 2^32 + offset of the record line); negative (-loc - 1) once verified; a Buffer while pending. */
  #index = new Map<string, number | Buffer>();
  #pending: Array<{ key: string; line: Buffer }> = [];
  #pendingBytes = 0;
  #fileBytes = 0;
  #liveBytes = 0;
  /** The file on disk has no usable header: the next flush replaces it. */
  #reset = false;
  #compactions = 0;
  #writeFailures = 0;
  readonly #ref = new WeakRef(this);

  constructor(dir: string, opts: MetaCacheOptions = {}) {
    this.file = path.join(dir, CACHE_FILE);
    this.#opts = opts;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  get schema(): string | undefined {
    return this.#schema;
  }

  get memoryBytes(): number {
    let n = this.#pendingBytes;
    for (const c of this.#chunks) n += c.length;
    return n;
  }

  get evictable(): boolean {
    return this.#pending.length === 0 && !this.#loading;
  }

  /** Pending writes are large enough to flush now (long commands). */
  get wantsFlush(): boolean {
    return this.#pendingBytes >= FLUSH_HINT;
  }

  stats(): CacheStats {
    return {
      loaded: this.#loaded,
      records: this.#index.size,
      fileBytes: this.#fileBytes,
      liveBytes: this.#liveBytes,
      pending: this.#pending.length,
      compactions: this.#compactions,
    };
  }

  /** Fixes the schema without loading (to queue records for a cache not loaded yet). */
  adopt(schema: string): boolean {
    if (this.#schema === undefined) {
      if (schema.includes('\n')) throw new Error('cache schema must be one line');
      this.#schema = schema;
      this.#seed = crc32(schema);
    }
    return this.#schema === schema;
  }

  /** Loads the file (once; again after unload()). `isLive` says which keys to keep. */
  async load(schema: string, isLive: (key: string) => boolean): Promise<void> {
    if (!this.adopt(schema)) return;
    if (this.#loaded) {
      this.#touch();
      return;
    }
    this.#loading ??= this.#mutex
      .run(async () => {
        if (this.#loaded) return;
        await this.#load(isLive);
      })
      .finally(() => {
        this.#loading = undefined;
      });
    await this.#loading;
    this.#touch();
    enforceBudget(this);
  }

  /** Most recently used now (for the memory budget). */
  #touch(): void {
    loadedCaches.delete(this.#ref);
    if (this.#loaded) loadedCaches.add(this.#ref);
  }

  async #load(isLive: (key: string) => boolean): Promise<void> {
    let buf: Buffer = Buffer.alloc(0);
    try {
      const st = await fs.stat(this.file);
      if (st.size <= MAX_FILE) buf = await fs.readFile(this.file);
      else this.#opts.logger?.warn({ file: this.file, size: st.size }, 'metadata cache too large: ignored and replaced');
      this.#reset = buf.length === 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.#opts.logger?.warn({ err: (err as Error).message, file: this.file }, 'metadata cache unreadable');
      this.#reset = true;
    }
    const pending = this.#pending;
    this.#index = new Map();
    this.#chunks = [];
    this.#fileBytes = buf.length;
    this.#liveBytes = 0;
    const header = headerLine(this.#schema!);
    if (buf.length > 0 && buf.toString('latin1', 0, header.length) !== header) {
      // Another format or schema (or garbage): everything is a miss; the next flush replaces it.
      this.#reset = true;
      buf = Buffer.alloc(0);
    }
    this.#chunks.push(buf);
    if (buf.length > 0) this.#scan(buf, 0, header.length, isLive);
    // Records queued before the load (adopt + put) stay the newest.
    for (const p of pending) this.#setIndex(p.key, p.line);
    this.#loaded = true;
  }

  /** Indexes the records of buf[from..] (chunk number `chunk`). */
  #scan(buf: Buffer, chunk: number, from: number, isLive: (key: string) => boolean): void {
    const end = buf.length;
    let pos = from;
    while (pos < end) {
      if (buf[pos] === NL) {
        pos++;
        continue;
      }
      const payload = frameAt(buf, pos, end);
      if (payload < 0) {
        pos = nextLine(buf, pos + 1, end);
        continue;
      }
      const next = frameNext;
      const key = keyOf(buf, payload);
      if (isLive(key)) this.#setIndex(key, chunk * CHUNK_SPAN + pos, next - pos);
      pos = next;
    }
  }

  #recordBytes(loc: number | Buffer): number {
    if (Buffer.isBuffer(loc)) return loc.length;
    const l = loc < 0 ? -loc - 1 : loc;
    const buf = this.#chunks[Math.floor(l / CHUNK_SPAN)]!;
    return frameAt(buf, l % CHUNK_SPAN, buf.length) < 0 ? 0 : frameNext - (l % CHUNK_SPAN);
  }

  #setIndex(key: string, loc: number | Buffer, bytes = this.#recordBytes(loc)): void {
    const old = this.#index.get(key);
    if (old !== undefined) this.#liveBytes -= this.#recordBytes(old);
    this.#index.set(key, loc);
    this.#liveBytes += bytes;
  }

  #drop(key: string): void {
    const old = this.#index.get(key);
    if (old === undefined) return;
    this.#liveBytes -= this.#recordBytes(old);
    this.#index.delete(key);
  }

  /**
   * The record of `key` (verified), or undefined: not loaded, absent, damaged, or made for a
   * message of another size (`size` >= 0 checks it).
   */
  lookup(key: string, size = -1): CacheEntry | undefined {
    const loc = this.#index.get(key);
    if (loc === undefined) return undefined;
    let entry: CacheEntry;
    if (Buffer.isBuffer(loc)) {
      const payload = frameAt(loc, 0, loc.length);
      entry = new CacheEntry(loc, payload, payload + frameLen);
    } else {
      const l = loc < 0 ? -loc - 1 : loc;
      const buf = this.#chunks[Math.floor(l / CHUNK_SPAN)]!;
      const payload = frameAt(buf, l % CHUNK_SPAN, buf.length);
      if (payload < 0 || (loc >= 0 && crc32(buf.subarray(payload, payload + frameLen), this.#seed) !== frameCrc)) {
        this.#drop(key);
        return undefined;
      }
      if (loc >= 0) this.#index.set(key, -loc - 1);
      entry = new CacheEntry(buf, payload, payload + frameLen);
    }
    if (size >= 0) {
      const s = entry.size;
      if (s >= 0 && s !== size) {
        this.#drop(key);
        return undefined;
      }
    }
    return entry;
  }

  /**
   * Stores fields for `key` (merged over the fields the current record has), written by the next
   * flush(). Needs a schema (load() or adopt()). Returns false when nothing was queued.
   */
  put(key: string, size: number, fields: CacheFields): boolean {
    if (this.#schema === undefined) return false;
    let all = fields;
    const current = this.#loaded ? this.lookup(key) : undefined;
    if (current) {
      const ids = new Set(fields.map(([id]) => id));
      all = [...current.fields().filter(([id]) => !ids.has(id)), ...fields];
    }
    const line = encodeRecord(key, size, all, this.#seed);
    if (!line) return false;
    this.#pending.push({ key, line });
    this.#pendingBytes += line.length;
    if (this.#loaded) this.#setIndex(key, line);
    return true;
  }

  /** The message is gone: its record is garbage now. */
  forget(key: string): void {
    if (this.#loaded) this.#drop(key);
  }

  /** Appends the queued records (one write). Errors are logged, never thrown. */
  flush(): Promise<void> {
    if (this.#pending.length === 0) return Promise.resolve();
    return this.#mutex.run(() => this.#flush());
  }

  async #flush(): Promise<void> {
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    this.#pendingBytes = 0;
    const data = Buffer.concat([Buffer.from('\n'), ...batch.map((p) => p.line)]);
    try {
      if (this.#reset || !(await this.#append(data))) await this.#create(data);
      this.#fileBytes += data.length;
    } catch (err) {
      // A cache: on a full disk or a read-only mail root the records are not retried; this
      // process keeps them in memory (the first failure is logged, later ones at debug).
      const log = { err: (err as Error).message, file: this.file };
      if (this.#writeFailures++ === 0) this.#opts.logger?.warn(log, 'metadata cache write failed');
      else this.#opts.logger?.debug(log, 'metadata cache write failed');
    }
    if (!this.#loaded) return;
    // The batch becomes a chunk of its own; pending index entries point into it.
    const chunk = this.#chunks.length;
    this.#chunks.push(data);
    let offset = 1;
    for (const p of batch) {
      if (this.#index.get(p.key) === p.line) this.#index.set(p.key, -(chunk * CHUNK_SPAN + offset) - 1);
      offset += p.line.length;
    }
  }

  /** O_APPEND to an existing file; false when there is none. */
  async #append(data: Buffer): Promise<boolean> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.file, fsConstants.O_WRONLY | fsConstants.O_APPEND);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    try {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off);
        if (bytesWritten <= 0) throw new Error('short write');
        off += bytesWritten;
      }
    } finally {
      await fh.close();
    }
    return true;
  }

  /** A new file (none, or one with a foreign header): header + data, under the lock. */
  async #create(data: Buffer): Promise<void> {
    const lock = await acquireDotlock(this.file, { timeoutMs: 2000, staleMs: 30_000 });
    try {
      // Someone may have made a good file meanwhile: then append to it.
      const header = headerLine(this.#schema!);
      const head = await readHeadIfExists(this.file, header.length);
      if (head !== undefined && head.toString('latin1') === header && (await this.#append(data))) {
        this.#reset = false;
        return;
      }
      const content = Buffer.concat([Buffer.from(header, 'latin1'), data]);
      await replaceFile(this.file, content, `${this.file}.${process.pid}.tmp`, { fsync: true });
      this.#reset = false;
      if (this.#loaded) {
        // Our view of the old file's records (if any) stays; the file now has only this batch.
        this.#fileBytes = header.length;
      }
    } finally {
      await lock.release();
    }
  }

  /** Whether records of dead messages and replaced records outweigh the live ones. */
  get needsCompaction(): boolean {
    if (!this.#loaded) return false;
    const garbage = this.#fileBytes - this.#liveBytes;
    return garbage > MIN_GARBAGE && garbage > this.#liveBytes;
  }

  /**
   * Rewrites the file with the newest valid record of every live key (temp + fsync + rename,
   * under the dotlock; skipped when another process holds it). Returns whether it did.
   */
  compact(isLive: (key: string) => boolean, force = false): Promise<boolean> {
    return this.#mutex.run(async () => {
      if (this.#pending.length) await this.#flush();
      if (!this.#loaded || this.#schema === undefined || (!force && !this.needsCompaction)) return false;
      let lock;
      try {
        lock = await acquireDotlock(this.file, { timeoutMs: 0, staleMs: 30_000 });
      } catch {
        return false;
      }
      try {
        let buf: Buffer;
        try {
          buf = await fs.readFile(this.file);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          buf = Buffer.alloc(0);
        }
        const header = headerLine(this.#schema);
        // The newest valid record of each live key, from the file as it is now (other processes'
        // appends included), then whatever this process knows that the file lost.
        const keep = new Map<string, Buffer>();
        if (buf.toString('latin1', 0, header.length) === header) {
          let pos = header.length;
          while (pos < buf.length) {
            if (buf[pos] === NL) {
              pos++;
              continue;
            }
            const payload = frameAt(buf, pos, buf.length);
            if (payload < 0) {
              pos = nextLine(buf, pos + 1, buf.length);
              continue;
            }
            const next = frameNext;
            const key = keyOf(buf, payload);
            if (isLive(key) && crc32(buf.subarray(payload, payload + frameLen), this.#seed) === frameCrc) {
              keep.delete(key);
              keep.set(key, buf.subarray(pos, next));
            }
            pos = next;
          }
        }
        for (const [key, loc] of [...this.#index]) {
          if (keep.has(key) || Buffer.isBuffer(loc) || !isLive(key) || !this.lookup(key)) continue;
          const l = -(this.#index.get(key) as number) - 1;
          const chunk = this.#chunks[Math.floor(l / CHUNK_SPAN)]!;
          if (frameAt(chunk, l % CHUNK_SPAN, chunk.length) >= 0) keep.set(key, chunk.subarray(l % CHUNK_SPAN, frameNext));
        }
        const parts: Buffer[] = [Buffer.from(header, 'latin1')];
        for (const line of keep.values()) parts.push(line);
        const content = Buffer.concat(parts);
        await replaceFile(this.file, content, `${this.file}.${process.pid}.tmp`, { fsync: true });
        this.#compactions++;
        this.#reset = false;
        // The new file is the whole cache now.
        this.#chunks = [content];
        this.#index = new Map();
        this.#fileBytes = content.length;
        this.#liveBytes = 0;
        this.#scan(content, 0, header.length, isLive);
        // Everything in it was just verified.
        for (const [key, loc] of this.#index) if (typeof loc === 'number' && loc >= 0) this.#index.set(key, -loc - 1);
        for (const p of this.#pending) this.#setIndex(p.key, p.line);
        return true;
      } catch (err) {
        this.#opts.logger?.warn({ err: (err as Error).message, file: this.file }, 'metadata cache compaction failed');
        return false;
      } finally {
        await lock.release();
      }
    });
  }

  /** Drops the in-memory copy (queued records are kept); the next load() reads the file again. */
  unload(): void {
    if (!this.#loaded) return;
    this.#loaded = false;
    this.#chunks = [];
    this.#index = new Map();
    this.#liveBytes = 0;
    loadedCaches.delete(this.#ref);
  }
}

/** The first bytes of the file, or undefined when it does not exist. */
function readHeadIfExists(file: string, bytes: number): Promise<Buffer | undefined> {
  return readHead(file, bytes).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}
