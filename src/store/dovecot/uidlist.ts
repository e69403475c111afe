/**
 * dovecot-uidlist: the UID of every message of a Maildir folder, in the folder's directory.
 * Format (maildir-uidlist.c, Dovecot 2.3):
 *
 *   3 V<uidvalidity> N<nextuid> G<mailbox guid, 32 hex> [<key><value> ...]
 *   <uid> [<key><value> ...] :<base file name>
 *
 * Version 1 (Dovecot 1.0, Courier's courierimapuiddb): "1 <uidvalidity> <nextuid>" and
 * "<uid> <file name>". Version 2 was never released; 2.3 refuses it. Record keys are A-Z:
 * S physical size, W virtual size (only when the file name lacks them), G message GUID,
 * P POP3 UIDL, O POP3 order; header key P is the POP3 UIDL format. Unknown keys are kept.
 *
 * How Dovecot 2.3 reads and writes it, which the functions below follow:
 * - Writers hold dovecot-uidlist.lock (see dotlock.ts) and either append new records at the end
 *   WITHOUT touching the header, or rewrite the whole file (dovecot-uidlist.tmp + rename) when
 *   records changed, the file is old-format or has no GUID, or >25 % of the records are expunged.
 *   So the next UID is max(header N, last UID + 1): the fixture's INBOX says N1 and lists UID 10.
 * - Records whose file was expunged stay until the next rewrite.
 * - A last line without '\n' is not read (an append in progress; it is read once complete).
 * - Dovecot deletes the whole file (and so renumbers every message) when the header is broken,
 *   a UID is 0, >= 2^32-1, or not greater than the previous one, a v3 record has no ':' or a
 *   file name has '/'. This reader instead keeps every good record, skips bad lines and sets
 *   `corrupt`, so the caller can decide (and rewrite the file) without losing UIDs.
 * - Two records for one file name: the later one wins (Dovecot: "Duplicate file entry", it
 *   drops the earlier UID and rewrites the file). Invalid record keys are dropped (and rewritten).
 */
import { createHash } from 'node:crypto';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import { MailError } from '../../errors.js';
import { readIfExists, replaceFile } from './fsutil.js';

export const UIDLIST_NAME = 'dovecot-uidlist';
const MAX_UID = 0xfffffffe; // a UID must be below (uint32_t)-1

export interface ExtField {
  /** One character: A-Z for records; any non-space for the header. */
  key: string;
  value: string;
}

export interface UidlistRecord {
  uid: number;
  /** The message's base file name (without ":2,<flags>"). */
  base: string;
  /** Extension fields in file order. */
  ext: ExtField[];
}

export interface Uidlist {
  version: 1 | 3;
  uidValidity: number;
  /** The header's N. Use nextUid() for the effective value. */
  headerNextUid: number;
  /** Mailbox GUID, 32 lowercase hex digits; absent in v1 and in v3 files of old versions. */
  guid?: string;
  /** Header fields other than V, N and G, in order. */
  headerExt: ExtField[];
  /** Records in ascending UID order, one per file name. */
  records: UidlistRecord[];
}

export interface UidlistParse {
  /** Null when the header is unusable (Dovecot would delete the file and start over). */
  uidlist: Uidlist | null;
  /** True when Dovecot would consider the file broken (see above). */
  corrupt: boolean;
  /** One line per problem found, for logs. */
  problems: string[];
  /** A last line without '\n' that was not read, if any. */
  partialLine?: string;
}

/** The next UID to give: max(header N, last UID + 1) (maildir-uidlist.c update_read). */
export function nextUid(u: Uidlist): number {
  const last = u.records.length > 0 ? u.records[u.records.length - 1]!.uid : 0;
  return Math.max(u.headerNextUid, last + 1);
}

function parseUint32(s: string): number | null {
  if (!/^\d{1,10}$/.test(s)) return null;
  const n = Number(s);
  return n <= 0xffffffff ? n : null;
}

export function parseUidlist(text: string): UidlistParse {
  const problems: string[] = [];
  // Dovecot's line reader drops a CR before the LF.
  const lines = text.split('\n').map((l, i, all) => (i < all.length - 1 && l.endsWith('\r') ? l.slice(0, -1) : l));
  const partial = lines.pop()!; // '' when the file ends with '\n'
  const result: UidlistParse = { uidlist: null, corrupt: false, problems };
  if (partial !== '') {
    result.partialLine = partial;
    problems.push(`last line is not terminated and was not read: ${JSON.stringify(partial.slice(0, 80))}`);
  }
  const header = lines.shift();
  if (header === undefined) {
    problems.push('no complete header line');
    result.corrupt = true;
    return result;
  }
  const u = parseHeader(header, problems);
  if (!u) {
    result.corrupt = true;
    return result;
  }
  const byName = new Map<string, UidlistRecord>();
  let prevUid = 0;
  lines.forEach((line, i) => {
    const lineNo = i + 2;
    const rec = parseRecord(
      line,
      u.version,
      (msg) => {
        problems.push(`line ${lineNo}: ${msg}`);
        result.corrupt = true;
      },
      (msg) => problems.push(`line ${lineNo}: ${msg}`),
    );
    if (!rec) return;
    if (rec.uid <= prevUid) {
      problems.push(`line ${lineNo}: UIDs not ordered (${rec.uid} after ${prevUid}), line skipped`);
      result.corrupt = true;
      return;
    }
    if (u.version === 1 && rec.uid >= u.headerNextUid) {
      problems.push(`line ${lineNo}: UID ${rec.uid} not below the v1 header's next UID ${u.headerNextUid}`);
      result.corrupt = true;
    }
    prevUid = rec.uid;
    const earlier = byName.get(rec.base);
    if (earlier) {
      problems.push(`line ${lineNo}: duplicate file ${rec.base}: UID ${earlier.uid} replaced by ${rec.uid}`);
      u.records.splice(u.records.indexOf(earlier), 1);
    }
    byName.set(rec.base, rec);
    u.records.push(rec);
  });
  result.uidlist = u;
  return result;
}

function parseHeader(line: string, problems: string[]): Uidlist | null {
  const m = /^([0-9]) (.*)$/s.exec(line);
  if (!m) {
    problems.push('corrupted header (invalid version number)');
    return null;
  }
  const version = Number(m[1]);
  let uidValidity: number | null = 0;
  let next: number | null = 0;
  let guid: string | undefined;
  const headerExt: ExtField[] = [];
  if (version === 1) {
    const v1 = /^\s*(\d+)\s+(\d+)/.exec(m[2]!);
    uidValidity = v1 ? parseUint32(v1[1]!) : null;
    next = v1 ? parseUint32(v1[2]!) : null;
    if (uidValidity === null || next === null) {
      problems.push('corrupted header (version 1)');
      return null;
    }
  } else if (version === 3) {
    for (const token of m[2]!.split(' ')) {
      if (token === '') continue;
      const key = token[0]!;
      const value = token.slice(1);
      if (key === 'V' || key === 'N') {
        const n = parseUint32(value);
        if (n === null) {
          problems.push(`invalid ${key === 'V' ? 'UIDVALIDITY' : 'next UID'} in header: ${JSON.stringify(value)}`);
          return null;
        }
        if (key === 'V') uidValidity = n;
        else next = n;
      } else if (key === 'G') {
        if (!/^[0-9a-fA-F]{32}$/.test(value)) {
          problems.push(`invalid mailbox GUID in header: ${JSON.stringify(value)}`);
          return null;
        }
        guid = value.toLowerCase();
      } else {
        headerExt.push({ key, value });
      }
    }
  } else {
    problems.push(`unsupported version ${version}`);
    return null;
  }
  if (!uidValidity || !next) {
    problems.push(`broken header (uidvalidity=${uidValidity}, next uid=${next})`);
    return null;
  }
  const u: Uidlist = { version: version as 1 | 3, uidValidity, headerNextUid: next, headerExt, records: [] };
  if (guid !== undefined) u.guid = guid;
  return u;
}

function parseRecord(line: string, version: 1 | 3, corrupt: (msg: string) => void, note: (msg: string) => void): UidlistRecord | null {
  const m = /^(\d+) +/.exec(line);
  const uid = m ? parseUint32(m[1]!) : null;
  if (!m || !uid) {
    corrupt(`invalid data: ${JSON.stringify(line.slice(0, 80))}`);
    return null;
  }
  if (uid > MAX_UID) {
    corrupt(`UID too high (${uid})`);
    return null;
  }
  let rest = line.slice(m[0].length);
  const ext: ExtField[] = [];
  if (version === 3) {
    while (rest !== '' && rest[0] !== ':') {
      const sp = rest.indexOf(' ');
      const token = sp < 0 ? rest : rest.slice(0, sp);
      if (token[0]! >= 'A' && token[0]! <= 'Z') ext.push({ key: token[0]!, value: token.slice(1) });
      else note(`invalid extension field dropped: ${JSON.stringify(token)}`);
      rest = sp < 0 ? '' : rest.slice(sp).replace(/^ +/, '');
    }
    if (rest === '' || rest === ':') {
      corrupt(`record of UID ${uid} has no file name`);
      return null;
    }
    rest = rest.slice(1);
  }
  if (rest.includes('/')) {
    corrupt(`broken file name: ${JSON.stringify(rest.slice(0, 80))}`);
    return null;
  }
  // Dovecot keys records by the name up to ':' (maildir_filename_base_cmp).
  const colon = rest.indexOf(':');
  return { uid, base: colon < 0 ? rest : rest.slice(0, colon), ext };
}

function checkField(f: ExtField, record: boolean): void {
  if (f.key.length !== 1 || (record ? !/^[A-Z]$/.test(f.key) : /[\s:]/.test(f.key))) {
    throw new RangeError(`invalid uidlist extension key ${JSON.stringify(f.key)}`);
  }
  if (/[\s]/.test(f.value)) throw new RangeError(`uidlist extension value ${JSON.stringify(f.value)} contains white space`);
}

/** One record line, as maildir-uidlist.c writes it (the base is cut at ':'). */
function formatUidlistRecord(rec: UidlistRecord): string {
  if (!Number.isInteger(rec.uid) || rec.uid < 1 || rec.uid > MAX_UID) throw new RangeError(`invalid UID ${rec.uid}`);
  const colon = rec.base.indexOf(':');
  const base = colon < 0 ? rec.base : rec.base.slice(0, colon);
  if (base === '' || /[/\r\n]/.test(base)) throw new RangeError(`invalid file name ${JSON.stringify(rec.base)}`);
  let line = String(rec.uid);
  for (const f of rec.ext) {
    checkField(f, true);
    line += ` ${f.key}${f.value}`;
  }
  return `${line} :${base}\n`;
}

/** The whole file in version 3, as Dovecot writes it: V, N (effective next UID), G, other fields. */
export function formatUidlist(u: Uidlist): string {
  if (!Number.isInteger(u.uidValidity) || u.uidValidity < 1 || u.uidValidity > 0xffffffff) {
    throw new RangeError(`invalid UIDVALIDITY ${u.uidValidity}`);
  }
  const guid = u.guid ?? generateMailboxGuid();
  if (!/^[0-9a-f]{32}$/.test(guid)) throw new RangeError(`invalid mailbox GUID ${guid}`);
  let prev = 0;
  for (const r of u.records) {
    if (r.uid <= prev) throw new RangeError(`uidlist records not in ascending UID order at ${r.uid}`);
    prev = r.uid;
  }
  const next = nextUid(u);
  if (next > 0xffffffff) throw new RangeError('next UID overflows');
  let header = `3 V${u.uidValidity} N${next} G${guid}`;
  for (const f of u.headerExt) {
    checkField(f, false);
    header += ` ${f.key}${f.value}`;
  }
  return header + '\n' + u.records.map(formatUidlistRecord).join('');
}

/** Reads and parses a dovecot-uidlist; undefined when the file does not exist. */
export async function readUidlist(file: string): Promise<UidlistParse | undefined> {
  const text = await readIfExists(file);
  return text === undefined ? undefined : parseUidlist(text);
}

/**
 * Rewrites the whole file as Dovecot does: <file>.tmp, fsync, rename (maildir_uidlist_recreate).
 * The caller holds the dovecot-uidlist dotlock. A missing GUID is generated (as Dovecot would)
 * and returned.
 */
export async function writeUidlist(file: string, u: Uidlist, opts: { fsync?: boolean } = {}): Promise<string> {
  const guid = u.guid ?? generateMailboxGuid();
  const text = formatUidlist({ ...u, version: 3, guid });
  await replaceFile(file, text, `${file}.tmp`, opts);
  return guid;
}

/**
 * Appends records at the end without changing the header, as Dovecot does for new messages
 * (maildir_uidlist_sync_update). The caller holds the dotlock. The new UIDs must be greater than
 * every UID in the file; a partial last line (a writer that crashed mid-line) is cut off first.
 * Returns the effective next UID afterwards.
 */
export async function appendUidlist(file: string, records: readonly UidlistRecord[], opts: { fsync?: boolean } = {}): Promise<number> {
  const h = await fs.open(file, 'r+');
  try {
    const raw = await h.readFile();
    const parsed = parseUidlist(raw.toString('utf8'));
    if (!parsed.uidlist) {
      throw new MailError('STORAGE_ERROR', `cannot append to ${file}: ${parsed.problems.join('; ')}`);
    }
    const u = parsed.uidlist;
    let last = nextUid(u) - 1;
    for (const r of records) {
      if (r.uid <= last) throw new RangeError(`UID ${r.uid} is not above the last UID ${last} of ${file}`);
      last = r.uid;
    }
    const size = raw.lastIndexOf(0x0a) + 1; // a partial last line is dropped
    await writeRecordsAt(h, file, records, u.version, size, { ...opts, truncate: size < raw.length });
    return last + 1;
  } finally {
    await h.close();
  }
}

/**
 * Writes record lines at `offset` of an open uidlist of `version`, cutting the file there first
 * with `truncate`, and datasyncs unless told not to; returns the bytes written.
 */
async function writeRecordsAt(
  h: FileHandle,
  file: string,
  records: readonly UidlistRecord[],
  version: 1 | 3,
  offset: number,
  opts: { fsync?: boolean; truncate?: boolean },
): Promise<number> {
  if (version !== 3 && records.some((r) => r.ext.length > 0)) {
    throw new RangeError(`${file} is version ${version}: rewrite it before adding extension fields`);
  }
  if (opts.truncate) await h.truncate(offset);
  let lines = records.map(formatUidlistRecord).join('');
  if (version === 1) lines = lines.replace(/^(\d+) :/gm, '$1 ');
  const buf = Buffer.from(lines);
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await h.write(buf, off, buf.length - off, offset + off);
    off += bytesWritten;
  }
  if (opts.fsync !== false) await h.datasync();
  return buf.length;
}

/**
 * Which version of a uidlist file a reader has: its inode and size. Under the dotlock, a file
 * with the same stamp is the one read (Dovecot's writers append or replace it only while
 * holding the lock), so a writer can skip reading it again (maildir_uidlist_refresh compares
 * st_ino and st_size the same way).
 */
export interface UidlistStamp {
  ino: number;
  size: number;
}

/** The stamp of a uidlist file; undefined when there is none. */
export async function uidlistStamp(file: string): Promise<UidlistStamp | undefined> {
  try {
    const st = await fs.stat(file);
    return { ino: st.ino, size: st.size };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * readUidlist, with the stamp of the file read when it ends with a complete line (so that
 * records can be appended at its end without reading it again).
 */
export async function readUidlistStamped(file: string): Promise<{ parse: UidlistParse; stamp: UidlistStamp | undefined } | undefined> {
  let h;
  try {
    h = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await h.stat();
    const raw = await h.readFile();
    const complete = raw.length > 0 && raw[raw.length - 1] === 0x0a && raw.length === st.size;
    return { parse: parseUidlist(raw.toString('utf8')), stamp: complete ? { ino: st.ino, size: raw.length } : undefined };
  } finally {
    await h.close();
  }
}

/**
 * appendUidlist for a file whose stamp the caller has (it read or wrote the file under the
 * dotlock it still holds): the records go at `at.size` without reading the file again. Their
 * UIDs must be above every UID in the file. Returns the stamp afterwards.
 */
export async function appendUidlistAt(
  file: string,
  records: readonly UidlistRecord[],
  at: UidlistStamp & { version: 1 | 3 },
  opts: { fsync?: boolean } = {},
): Promise<UidlistStamp> {
  const h = await fs.open(file, 'r+');
  try {
    return { ino: at.ino, size: at.size + (await writeRecordsAt(h, file, records, at.version, at.size, opts)) };
  } finally {
    await h.close();
  }
}

/** A new, empty uidlist for a new folder (UIDVALIDITY: see uidvalidity.ts). */
export function newUidlist(uidValidity: number, guid = generateMailboxGuid()): Uidlist {
  return { version: 3, uidValidity, headerNextUid: 1, guid, headerExt: [], records: [] };
}

let guidClock: { sec: number; nsec: number } | undefined;
let guidStatic: Buffer | undefined;

/**
 * A mailbox GUID made the way Dovecot's guid_128_generate (src/lib/guid.c) makes one: nanoseconds
 * and seconds of the current time (little-endian, the nanoseconds counting up for uniqueness),
 * the PID, and the last 4 bytes of SHA-1 of the host name. Rendered as 32 lowercase hex digits.
 */
export function generateMailboxGuid(now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  const nsec = (now % 1000) * 1_000_000 + Math.floor(Math.random() * 1_000_000);
  if (!guidClock || sec > guidClock.sec || (sec === guidClock.sec && nsec > guidClock.nsec)) {
    guidClock = { sec, nsec };
  } else if (guidClock.nsec < 0xffffffff) {
    guidClock.nsec++;
  } else {
    guidClock = { sec: guidClock.sec + 1, nsec: 0 };
  }
  if (!guidStatic) {
    guidStatic = Buffer.alloc(8);
    guidStatic.writeUInt32LE(process.pid >>> 0, 0);
    createHash('sha1').update(os.hostname()).digest().subarray(16, 20).copy(guidStatic, 4);
  }
  const b = Buffer.alloc(16);
  b.writeUInt32LE(guidClock.nsec >>> 0, 0);
  b.writeUInt32LE(guidClock.sec >>> 0, 4);
  guidStatic.copy(b, 8);
  return b.toString('hex');
}
