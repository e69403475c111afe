/**
 * One Maildir folder, shared by every session of this process that uses it (IMAP views, POP3).
 *
 * The disk is the truth: file names carry flags and keywords (Maildir info), dovecot-uidlist
 * maps base names to UIDs (shared with Dovecot, under its dotlock), and our own append-only
 * index (maild-index) keeps what Dovecot's binary index would: MODSEQs, the expunge history
 * QRESYNC needs, sizes and dates already computed. sync() brings the in-memory table up to date
 * with what other processes did; operations change disk and table together, one at a time.
 * maild-cache (cache.ts) keeps what the protocol layer computed from message files (ENVELOPE,
 * BODYSTRUCTURE, header fields for SEARCH), loaded the first time a command asks for it.
 *
 * The parts, each in its own module:
 *   message-table.ts   the in-memory table (records by UID, recently expunged, expunge history)
 *   folder-uids.ts     dovecot-uidlist: UIDVALIDITY, UIDNEXT, base name -> UID, assignment
 *   folder-keywords.ts dovecot-keywords: keyword letters a..z -> names
 *   index-file.ts      maild-index: MODSEQs, expunges, \Recent, sizes
 *   folder-scan.ts     listing cur/ and new/ (skipped when their mtimes prove no change)
 *   message-files.ts   finding, renaming, removing, linking and copying message files
 * This class ties them together: sync() (scan -> UIDs -> table -> index), store() (flags),
 * expunge(), append() and transfer() (COPY/MOVE), each under the folder's mutex.
 */
import { EventEmitter } from 'node:events';
import type { ReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { DirectorySyncer } from '../dir-sync.js';
import { uniqueBaseName } from '../maildir.js';
import { MaildirQuota } from '../quota.js';
import { createDurably, readExpected, readExpectedNow, readHead } from '../fsio.js';
import { bareLineFeeds, crlfToLf } from '../line-ends.js';
import { freshName, parseName, withFlags } from './formats.js';
import { baseWithSizes } from '../dovecot/filename.js';
import { IndexFile, indexLine, type IndexedMessage } from './index-file.js';
import { FolderKeywords } from './folder-keywords.js';
import { FolderUids } from './folder-uids.js';
import { FolderScanner } from './folder-scan.js';
import { MessageTable } from './message-table.js';
import { messagePath, moveToCur, placeMessage, removeMessage, renameMessage } from './message-files.js';
import { MetaCache, type CacheEntry, type CacheFields, type CacheStats } from './cache.js';
import { Mutex } from './mutex.js';
import type { MailboxChange, MailboxStatus, MessageRecord } from './types.js';
import { FLAG_DELETED, FLAG_SEEN } from './types.js';

/** Messages up to this size are read in one read when their size is known (mail.blocking_reads). */
export const SMALL_FILE = 256 * 1024;

/** Counts the message files this process opened (tests prove what a command did not read). */
export const messageFileAccess = { opens: 0 };

export interface MailboxOptions {
  logger: Logger;
  syncer: DirectorySyncer;
  /** The user's Maildir root (INBOX's directory): where Dovecot's UIDVALIDITY counter lives. */
  root: string;
  /** Small message files and directory stats with blocking calls (config mail.blocking_reads). */
  blockingReads?: boolean;
}

export interface StoreResult {
  modseq: number;
  /** UIDs whose flags changed. */
  changed: number[];
  /** UIDs refused by UNCHANGEDSINCE (RFC 7162 section 3.1.3). */
  modified: number[];
}

export class Mailbox extends EventEmitter<{ change: [MailboxChange] }> {
  readonly dir: string;
  readonly name: string;
  readonly #opts: MailboxOptions;
  readonly #mutex = new Mutex();
  highestModseq = 1;
  /** The messages by UID, and those expunged lately (message-table.ts). */
  readonly #table = new MessageTable();
  /** dovecot-uidlist: base names to UIDs. */
  readonly #uidlist: FolderUids;
  readonly #keywords: FolderKeywords;
  /**
   * \Recent (RFC 3501 section 2.3.2), as Dovecot keeps it (first_recent_uid of its index): the
   * lowest UID no session has claimed yet. Every message from it up is recent; the first
   * session that SELECTs the mailbox (or has it selected when mail arrives) claims them and
   * this moves past them; EXAMINE and STATUS only look. Kept in maild-index as `r <uid>`, so
   * it survives restarts; a second process reads it at open only, so across processes a
   * message may be recent in one session of each (never in none). Undefined until the first
   * sync when the index has no `r` line: then it starts at the UIDNEXT the uidlist had, or
   * lower for a message still in new/ (what no reader has seen yet is recent).
   */
  #firstRecent: number | undefined;
  /** maild-index (index-file.ts). */
  readonly #index: IndexFile;
  readonly #scanner: FolderScanner;
  /** Sessions using this mailbox (the service closes it at zero). */
  refs = 0;
  /**
   * The quota of the Maildir this folder is in (the service sets it from the account opening
   * the folder): append and copy check it, and append, copy and expunge record their change.
   */
  quota: MaildirQuota;
  readonly #cache: MetaCache;
  /** Whether a base names a message of the mailbox (what the metadata cache keeps). */
  readonly #isLive = (base: string): boolean => {
    const uid = this.#uidlist.uidOf(base);
    return uid !== undefined && this.#table.get(uid)?.base === base;
  };

  private constructor(dir: string, name: string, opts: MailboxOptions) {
    super();
    this.dir = dir;
    this.name = name;
    this.#opts = opts;
    this.#cache = new MetaCache(dir, { logger: opts.logger });
    this.#uidlist = new FolderUids(dir, { root: opts.root, logger: opts.logger });
    this.#keywords = new FolderKeywords(dir);
    this.#scanner = new FolderScanner(dir, name, { blockingStats: opts.blockingReads });
    this.#index = new IndexFile(dir, {
      snapshot: () => ({
        uidValidity: this.uidValidity,
        highestModseq: this.highestModseq,
        firstRecent: this.#firstRecent,
        expungeLog: this.#table.expungeLog,
        records: this.#table.records(),
      }),
      liveEntries: () => this.#table.size + this.#table.expungeLog.length,
    });
    this.quota = new MaildirQuota(opts.root, 0, opts.root);
    this.setMaxListeners(0);
  }

  get uidValidity(): number {
    return this.#uidlist.uidValidity;
  }

  get uidNext(): number {
    return this.#uidlist.uidNext;
  }

  /** Opens the folder in `dir`; MAILBOX_NOT_FOUND when it has no cur/ (INBOX is created). */
  static async open(dir: string, name: string, opts: MailboxOptions, create = false): Promise<Mailbox> {
    const cur = path.join(dir, 'cur');
    const exists = await fs.stat(cur).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!exists && !create) throw new MailError('MAILBOX_NOT_FOUND', `no mailbox ${name}`);
    // INBOX is created on first use; a Maildir missing new/ or tmp/ is repaired.
    for (const sub of ['cur', 'new', 'tmp']) await fs.mkdir(path.join(dir, sub), { recursive: true, mode: 0o700 });
    const mailbox = new Mailbox(dir, name, opts);
    await mailbox.#mutex.run(() => mailbox.#load());
    await mailbox.sync(true);
    return mailbox;
  }

  // ---- reading -----------------------------------------------------------------------------

  /** UIDs in ascending order (the caller must not modify the array). */
  get uids(): readonly number[] {
    return this.#table.uids;
  }

  /** How many times cur/ and new/ were listed (tests prove a command did not list them). */
  get listings(): number {
    return this.#scanner.listings;
  }

  get count(): number {
    return this.#table.uids.length;
  }

  record(uid: number): MessageRecord | undefined {
    return this.#table.get(uid);
  }

  /**
   * The last record of a message expunged lately (flags, sizes, date as they were), for a
   * session that has not announced the expunge yet; undefined once it is long gone.
   */
  expungedRecord(uid: number): MessageRecord | undefined {
    return this.#table.expungedRecord(uid);
  }

  /** The lowest UID not claimed as \Recent by any session (see #firstRecent). */
  get firstRecentUid(): number {
    return this.#firstRecent ?? this.uidNext;
  }

  /** Messages no session has claimed as \Recent yet (STATUS RECENT). */
  recentCount(): number {
    return this.#table.countFrom(this.firstRecentUid);
  }

  /**
   * A SELECTing session claims the recent messages up to `through`: returns where the recent
   * ones began (the session's are those from there to `through`); later sessions see them as
   * not recent. Recorded in maild-index in the background (a lost line only makes a message
   * recent again after a restart).
   */
  claimRecent(through: number): number {
    const from = this.firstRecentUid;
    if (through < from) return from;
    this.#firstRecent = through + 1;
    const line = indexLine.firstRecent(through + 1);
    this.#mutex
      .run(() => this.#index.append([line]))
      .catch((err: unknown) =>
        this.#opts.logger.warn({ err: (err as Error).message, mailbox: this.dir }, 'recording the recent messages failed'),
      );
    return from;
  }

  keywordNames(): string[] {
    return this.#keywords.names();
  }

  /** Expunges after `modseq` (QRESYNC): UIDs, ascending. */
  expungedSince(modseq: number): number[] | undefined {
    return this.#table.expungedSince(modseq);
  }

  filePath(rec: MessageRecord): string {
    return messagePath(this.dir, rec);
  }

  /** The stored message (LF line ends); EXPUNGED when it is gone. */
  async read(uid: number): Promise<Buffer> {
    return (await this.readSmall(uid, SMALL_FILE)) ?? this.#readFile(uid, (file) => fs.readFile(file));
  }

  /**
   * The whole stored message in one read (with blocking calls under mail.blocking_reads) when
   * its size is known (S=) and at most `limit` bytes; null when it is larger or its size
   * unknown (the caller streams it). EXPUNGED when it is gone.
   */
  async readSmall(uid: number, limit: number): Promise<Buffer | null> {
    const size = this.#table.get(uid)?.size ?? -1;
    if (size < 0 || size > limit) return null;
    const readWhole = this.#opts.blockingReads ? readExpectedNow : readExpected;
    return this.#readFile(uid, (file) => readWhole(file, size));
  }

  /** A stream of the stored file, or undefined when it is gone. */
  async openStream(uid: number): Promise<ReadStream | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const rec = this.#table.get(uid);
      if (!rec) return undefined;
      messageFileAccess.opens++;
      const handle = await fs.open(this.filePath(rec), 'r').catch(() => undefined);
      // The stream owns the handle and closes it (a bare fd would be closed again by the GC).
      if (handle) return handle.createReadStream({ autoClose: true });
      if (attempt === 0) await this.sync(true); // renamed or removed by another process: look again
    }
    return undefined;
  }

  /**
   * The first `bytes` bytes of the stored message (its header, when the caller knows its
   * length); EXPUNGED when it is gone.
   */
  readHead(uid: number, bytes: number): Promise<Buffer> {
    return this.#readFile(uid, (file) => readHead(file, bytes));
  }

  /** Reads a message's file; a file renamed by another process is found again by a sync. */
  async #readFile<T>(uid: number, read: (file: string) => Promise<T>): Promise<T> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const rec = this.#table.get(uid);
      if (!rec) break;
      try {
        messageFileAccess.opens++;
        return await read(this.filePath(rec));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await this.sync(true); // renamed by another process: find its new name
      }
    }
    throw new MailError('EXPUNGED', `message ${uid} no longer exists`);
  }

  // ---- metadata cache (maild-cache) ------------------------------------------------------------

  /**
   * Makes the cached metadata available to cached() (a no-op once loaded). `schema` names the
   * caller's encoding of the fields; records of another schema are misses.
   */
  loadCache(schema: string): Promise<void> {
    return this.#cache.load(schema, this.#isLive);
  }

  /** The cached fields of a message (or one expunged lately), if loaded and present (a view: use it at once). */
  cached(uid: number): CacheEntry | undefined {
    const rec = this.#table.liveOrExpunged(uid);
    if (!rec) return undefined;
    return this.#cache.lookup(rec.base, rec.size);
  }

  /**
   * Queues fields of a message for the cache (merged over what it has); flushCache() writes
   * them. Returns true when enough is queued that the caller should flush before going on.
   */
  putCached(uid: number, fields: CacheFields): boolean {
    const rec = this.#table.get(uid);
    if (!rec) return false;
    this.#cache.put(rec.base, rec.size, fields);
    return this.#cache.wantsFlush;
  }

  /** Writes what putCached() queued (one append), compacting the file when garbage dominates. */
  async flushCache(): Promise<void> {
    await this.#cache.flush();
    if (this.#cache.needsCompaction) await this.#cache.compact(this.#isLive);
  }

  /** Records, sizes and state of the metadata cache (for logs and tests). */
  cacheStats(): CacheStats {
    return this.#cache.stats();
  }

  /** Fills in sizes and dates not known from file names (stat, and a read for W=). */
  async ensureDetails(uids: Iterable<number>): Promise<void> {
    const lines: string[] = [];
    for (const uid of uids) {
      const rec = this.#table.get(uid);
      if (!rec || (rec.vsize >= 0 && rec.internalDate >= 0)) continue;
      const file = this.filePath(rec);
      try {
        const st = await fs.stat(file);
        rec.internalDate = st.mtimeMs;
        if (rec.size < 0) rec.size = st.size;
        if (rec.vsize < 0) {
          messageFileAccess.opens++;
          rec.vsize = rec.size + bareLineFeeds(await fs.readFile(file));
        }
        lines.push(indexLine.sizes(uid, rec.size, rec.vsize, rec.internalDate));
      } catch {
        // Gone meanwhile; the next sync drops it. Report something sane until then.
        if (rec.size < 0) rec.size = 0;
        if (rec.vsize < 0) rec.vsize = 0;
        if (rec.internalDate < 0) rec.internalDate = Date.now();
      }
    }
    if (lines.length) await this.#index.append(lines);
  }

  async status(): Promise<MailboxStatus> {
    await this.ensureDetails(this.#table.uids);
    let unseen = 0;
    let deleted = 0;
    let size = 0;
    for (const uid of this.#table.uids) {
      const rec = this.#table.get(uid)!;
      if (!(rec.flags & FLAG_SEEN)) unseen++;
      if (rec.flags & FLAG_DELETED) deleted++;
      size += rec.vsize;
    }
    return {
      messages: this.#table.uids.length,
      recent: this.recentCount(),
      uidNext: this.uidNext,
      uidValidity: this.uidValidity,
      unseen,
      deleted,
      size,
      highestModseq: this.highestModseq,
    };
  }

  // ---- loading and syncing -------------------------------------------------------------------

  async #load(): Promise<void> {
    await this.#uidlist.load();
    await this.#keywords.reload();
    await this.#loadIndex();
  }

  /** What maild-index knew at open of messages not in the table yet (their MODSEQs and sizes). */
  #indexed = new Map<number, IndexedMessage>();

  async #loadIndex(): Promise<void> {
    const loaded = await this.#index.load(this.uidValidity);
    this.highestModseq = loaded.highestModseq;
    this.#firstRecent = loaded.firstRecent;
    this.#table.restoreExpungeLog(loaded.expungeLog);
    this.#indexed = loaded.messages;
  }

  /** Marks the folder as changed by something this process knows about (a delivery). */
  markDirty(): void {
    this.#scanner.markDirty();
  }

  /**
   * Brings the table up to date with the disk: new files get UIDs (in dovecot-uidlist, under
   * its dotlock), new/ files move to cur/, vanished files are expunges, renamed files are flag
   * changes. Cheap when nothing changed (two stats). Emits 'change' when something did.
   */
  sync(force = false): Promise<MailboxChange | null> {
    return this.#mutex.run(() => this.#sync(force));
  }

  async #sync(force: boolean): Promise<MailboxChange | null> {
    const onDisk = await this.#scanner.scan(force);
    if (!onDisk) return null;

    const uidNextBefore = this.uidNext;
    // New files: UIDs from dovecot-uidlist if another process gave them, else from us.
    const unknown = [...onDisk.keys()].filter((b) => this.#uidlist.uidOf(b) === undefined);
    if (unknown.length > 0 || this.#uidlist.needsWrite) await this.#uidlist.assign(unknown);

    const modseq = this.highestModseq + 1;
    const change: MailboxChange = { modseq, added: [], expunged: [], flagged: [] };
    const indexLines: string[] = [];
    // Vanished files are expunges.
    for (const uid of this.#table.uids) {
      const rec = this.#table.get(uid)!;
      if (!onDisk.has(rec.base)) change.expunged.push(uid);
    }
    for (const uid of change.expunged) this.#forget(uid, modseq, indexLines);

    const added: MessageRecord[] = [];
    for (const [base, { name, inNew }] of onDisk) {
      const uid = this.#uidlist.uidOf(base);
      if (uid === undefined) continue; // could not be assigned (lock timeout): next sync
      const same = this.#table.get(uid);
      if (same && same.name === name && same.inNew === inNew) continue; // nothing to parse
      const parsed = parseName(name);
      if (!this.#keywords.knows(parsed.keywords)) await this.#keywords.reload();
      const keywords = this.#keywords.namesOf(parsed.keywords);
      const existing = this.#table.get(uid);
      if (existing) {
        if (existing.name !== name || existing.inNew !== inNew) {
          const flagsChanged = existing.flags !== parsed.flags || existing.keywords.join(' ') !== keywords.join(' ');
          existing.name = name;
          existing.inNew = inNew;
          if (flagsChanged) {
            existing.flags = parsed.flags;
            existing.keywords = keywords;
            existing.modseq = modseq;
            change.flagged.push(uid);
            indexLines.push(indexLine.modseq(uid, modseq));
          }
        }
        continue;
      }
      const known = this.#indexed.get(uid);
      const rec: MessageRecord = {
        uid,
        base,
        name,
        inNew,
        flags: parsed.flags,
        keywords,
        modseq: known?.modseq || modseq,
        size: parsed.size ?? known?.size ?? -1,
        vsize: parsed.vsize ?? known?.vsize ?? -1,
        internalDate: known?.date ?? -1,
      };
      if (!known?.modseq) indexLines.push(indexLine.modseq(uid, modseq));
      added.push(rec);
    }
    added.sort((a, b) => a.uid - b.uid);
    this.#table.add(added);
    for (const rec of added) change.added.push(rec.uid);
    if (this.#firstRecent === undefined) {
      // No claim on record yet: what had no UID before, and what is still in new/, is recent.
      this.#firstRecent = uidNextBefore;
      for (const r of added) if (r.inNew && r.uid < this.#firstRecent) this.#firstRecent = r.uid;
      indexLines.push(indexLine.firstRecent(this.#firstRecent));
    }
    // Move new/ to cur/ as Dovecot does once a mailbox is synced (maildir description: "new"
    // holds mail not yet seen by any reader).
    const fromNew = added.filter((r) => r.inNew);
    if (fromNew.length)
      await this.#scanner.own(['new', 'cur'], async () => {
        for (const rec of fromNew) await moveToCur(this.dir, rec);
      });

    const changed = change.added.length + change.expunged.length + change.flagged.length > 0;
    if (changed) {
      this.highestModseq = modseq;
      indexLines.push(indexLine.highestModseq(modseq));
      await this.#index.append(indexLines);
      this.emit('change', change);
      return change;
    }
    if (indexLines.length) await this.#index.append(indexLines);
    return null;
  }

  /** The directories the files of these messages are in. */
  #subsOf(uids: readonly number[]): Array<'cur' | 'new'> {
    return uids.some((uid) => this.#table.get(uid)?.inNew) ? ['cur', 'new'] : ['cur'];
  }

  /** Takes an expunged message out of the table, the uidlist and (once long gone) the cache. */
  #forget(uid: number, modseq: number, indexLines: string[]): void {
    const gone = this.#table.remove(uid, modseq);
    if (!gone) return;
    this.#uidlist.forget(gone.removed.base);
    if (gone.dropped) this.#cache.forget(gone.dropped.base);
    indexLines.push(indexLine.expunge(uid, modseq));
  }

  /**
   * STORE: sets, adds or removes flags and keywords on the given UIDs. With `unchangedSince`,
   * messages modified after it are left alone and reported (CONDSTORE).
   */
  store(uids: number[], mode: 'set' | 'add' | 'remove', flags: number, keywords: string[], unchangedSince?: number): Promise<StoreResult> {
    return this.#mutex.run(async () => {
      const modseq = this.highestModseq + 1;
      const result: StoreResult = { modseq, changed: [], modified: [] };
      if (mode !== 'remove') await this.#keywords.indexesOf(keywords);
      const lowerKeywords = keywords.map((k) => k.toLowerCase());
      const indexLines: string[] = [];
      await this.#scanner.own(this.#subsOf(uids), async () => {
        for (const uid of uids) {
          const rec = this.#table.get(uid);
          if (!rec) continue;
          if (unchangedSince !== undefined && rec.modseq > unchangedSince) {
            result.modified.push(uid);
            continue;
          }
          let newFlags = rec.flags;
          let newKeywords = rec.keywords;
          if (mode === 'set') {
            newFlags = flags;
            newKeywords = keywords;
          } else if (mode === 'add') {
            newFlags = rec.flags | flags;
            newKeywords = [...rec.keywords, ...keywords.filter((k) => !rec.keywords.some((r) => r.toLowerCase() === k.toLowerCase()))];
          } else {
            newFlags = rec.flags & ~flags;
            newKeywords = rec.keywords.filter((k) => !lowerKeywords.includes(k.toLowerCase()));
          }
          if (newFlags === rec.flags && newKeywords.join('\n') === rec.keywords.join('\n')) {
            // RFC 7162 section 3.1.3: an UNCHANGEDSINCE store that changes nothing still succeeds.
            continue;
          }
          const name = withFlags(rec.name, newFlags, await this.#keywords.indexesOf(newKeywords));
          if (!(await renameMessage(this.dir, rec, name))) continue;
          rec.flags = newFlags;
          rec.keywords = newKeywords;
          rec.modseq = modseq;
          result.changed.push(uid);
          indexLines.push(indexLine.modseq(uid, modseq));
        }
      });
      if (result.changed.length) {
        this.highestModseq = modseq;
        indexLines.push(indexLine.highestModseq(modseq));
        await this.#index.append(indexLines);
        this.emit('change', { modseq, added: [], expunged: [], flagged: result.changed });
      }
      return result;
    });
  }

  /**
   * Removes messages (their files), records the expunges and takes their size off the quota.
   * Returns the UIDs expunged: those another session removed meanwhile are neither here nor counted.
   */
  async expunge(uids: number[]): Promise<number[]> {
    // Sizes not known from the file names (S=) are needed for maildirsize.
    if (this.quota.limited) await this.ensureDetails(uids);
    return this.#mutex.run(async () => {
      const modseq = this.highestModseq + 1;
      const done: number[] = [];
      const indexLines: string[] = [];
      let bytes = 0;
      await this.#scanner.own(this.#subsOf(uids), async () => {
        for (const uid of uids) {
          const rec = this.#table.get(uid);
          if (!rec) continue;
          bytes += Math.max(0, rec.size);
          await removeMessage(this.dir, rec);
          this.#forget(uid, modseq, indexLines);
          done.push(uid);
        }
      });
      if (done.length) {
        this.highestModseq = modseq;
        indexLines.push(indexLine.highestModseq(modseq));
        await this.#index.append(indexLines);
        this.emit('change', { modseq, added: [], expunged: done, flagged: [] });
        await this.quota.recordDone(-bytes, -done.length, this.#opts.logger);
      }
      return done;
    });
  }

  /**
   * APPEND: writes the message durably into cur/ with its flags and date, then gives it a UID.
   * `data` may use CRLF or LF line ends (stored with LF, as Dovecot stores mail). QUOTA_EXCEEDED
   * when the stored message would take the Maildir over its quota.
   */
  append(data: Buffer, flags: number, keywords: string[], internalDate?: Date): Promise<number> {
    return this.#mutex.run(async () => {
      const stored = crlfToLf(data);
      await this.quota.check(stored.length);
      const vsize = stored.length + bareLineFeeds(stored);
      const keywordIdx = await this.#keywords.indexesOf(keywords);
      const base = baseWithSizes(uniqueBaseName(), stored.length, vsize);
      const tmp = path.join(this.dir, 'tmp', base);
      await createDurably(tmp, [stored], (err) => new MailError('STORAGE_ERROR', `append: ${err.code ?? err}`, { cause: err }));
      const date = internalDate ?? new Date();
      await fs.utimes(tmp, date, date);
      const name = freshName(base, flags, keywordIdx);
      const [uid] = await this.#scanner.own(['cur'], async () => {
        await fs.rename(tmp, path.join(this.dir, 'cur', name));
        await this.#opts.syncer.sync(path.join(this.dir, 'cur'));
        return this.#adopt([{ base, name, flags, keywords, size: stored.length, vsize, date: date.getTime() }]);
      });
      await this.quota.recordDone(stored.length, 1, this.#opts.logger);
      return uid!;
    });
  }

  /**
   * Gives UIDs to files this process put into cur/ and records them (caller holds the mutex).
   * A file that a concurrent sync already picked up keeps the UID it got there.
   */
  async #adopt(
    files: Array<{ base: string; name: string; flags: number; keywords: string[]; size: number; vsize: number; date: number }>,
  ): Promise<number[]> {
    await this.#uidlist.assign(files.map((f) => f.base));
    const modseq = this.highestModseq + 1;
    const uids: number[] = [];
    const fresh: MessageRecord[] = [];
    const indexLines: string[] = [];
    for (const f of files) {
      const uid = this.#uidlist.uidOf(f.base)!;
      uids.push(uid);
      if (this.#table.has(uid)) continue;
      fresh.push({
        uid,
        base: f.base,
        name: f.name,
        inNew: false,
        flags: f.flags,
        keywords: f.keywords,
        modseq,
        size: f.size,
        vsize: f.vsize,
        internalDate: f.date,
      });
      indexLines.push(indexLine.modseq(uid, modseq), indexLine.sizes(uid, f.size, f.vsize, f.date));
    }
    if (fresh.length === 0) return uids;
    this.#table.add(fresh);
    this.highestModseq = modseq;
    indexLines.push(indexLine.highestModseq(modseq));
    await this.#index.append(indexLines);
    this.emit('change', { modseq, added: fresh.map((r) => r.uid), expunged: [], flagged: [] });
    return uids;
  }

  /**
   * COPY or MOVE to another mailbox; returns [source UID, target UID] pairs (UIDPLUS). Copies are
   * hard links, as Dovecot makes them on one filesystem (a byte copy otherwise); a move renames
   * the file and records the expunge here. Target directory fsynced before the return. The two
   * mailboxes' locks are never held together, so opposite transfers cannot deadlock. The target
   * may be this mailbox: the messages get new UIDs (and a move expunges the old ones, RFC 6851).
   * A copy must fit the target's quota (QUOTA_EXCEEDED otherwise, before anything is copied);
   * a move within one Maildir changes no usage.
   */
  async transfer(target: Mailbox, uids: number[], move: boolean): Promise<Array<[number, number]>> {
    await this.ensureDetails(uids);
    const counted = !move || target.quota.maildir !== this.quota.maildir;
    if (counted) await target.quota.check(uids.reduce((n, uid) => n + Math.max(0, this.#table.get(uid)?.size ?? 0), 0));
    // 1. Put the files into the target's cur/ (under this mailbox's lock).
    const placed = await this.#mutex.run(async () => {
      const done: Array<{ source: MessageRecord; base: string; name: string; meta: CacheFields | undefined }> = [];
      // A move takes the files out of this folder; the expunges are recorded in step 3.
      const place = (fn: () => Promise<void>) => (move ? this.#scanner.own(this.#subsOf(uids), fn) : fn());
      await place(async () => {
        try {
          for (const uid of uids) {
            let rec = this.#table.get(uid);
            if (!rec) continue;
            const base = baseWithSizes(uniqueBaseName(), rec.size, rec.vsize);
            let name = freshName(base, rec.flags, []);
            try {
              await placeMessage(this.dir, rec, path.join(target.dir, 'cur', name), move);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
              // The target folder was removed, or the source file was renamed (another process set
              // a flag) or moved away (another session's MOVE, not yet expunged here): a rescan tells.
              const targetCur = await fs.stat(path.join(target.dir, 'cur')).catch(() => undefined);
              if (!targetCur) throw new MailError('MAILBOX_NOT_FOUND', `mailbox ${target.name} was removed`);
              await this.#sync(true);
              rec = this.#table.get(uid);
              if (!rec) continue;
              name = freshName(base, rec.flags, []);
              await placeMessage(this.dir, rec, path.join(target.dir, 'cur', name), move);
            }
            const meta = this.#cache.lookup(rec.base, rec.size)?.fields();
            done.push({ source: { ...rec }, base, name, meta });
          }
        } finally {
          if (done.length) await this.#opts.syncer.sync(path.join(target.dir, 'cur'));
        }
      });
      return done;
    });
    if (placed.length === 0) return [];
    // 2. UIDs in the target (under its lock); keyword letters are per mailbox.
    const pairs = await target.#mutex.run(async () => {
      for (const f of placed) {
        if (f.source.keywords.length === 0) continue;
        const wanted = withFlags(f.name, f.source.flags, await target.#keywords.indexesOf(f.source.keywords));
        await fs.rename(path.join(target.dir, 'cur', f.name), path.join(target.dir, 'cur', wanted));
        f.name = wanted;
      }
      const newUids = await target.#adopt(
        placed.map((f) => ({
          base: f.base,
          name: f.name,
          flags: f.source.flags,
          keywords: f.source.keywords,
          size: f.source.size,
          vsize: f.source.vsize,
          date: f.source.internalDate,
        })),
      );
      return placed.map((f, i) => [f.source.uid, newUids[i]!] as [number, number]);
    });
    if (counted) {
      const bytes = placed.reduce((n, f) => n + Math.max(0, f.source.size), 0);
      await target.quota.recordDone(bytes, placed.length, this.#opts.logger);
      if (move) await this.quota.recordDone(-bytes, -placed.length, this.#opts.logger);
    }
    // The copies have the same content: their cached metadata comes along.
    const schema = this.#cache.schema;
    if (placed.some((f) => f.meta) && schema !== undefined && target.#cache.adopt(schema)) {
      for (const f of placed) if (f.meta) target.#cache.put(f.base, f.source.size, f.meta);
      await target.#cache.flush();
    }
    // 3. A move expunges the sources (a sync may have noticed already: then nothing is left to do).
    if (move) {
      await this.#mutex.run(async () => {
        await this.#opts.syncer.sync(path.join(this.dir, 'cur'));
        const gone = placed.map((f) => f.source.uid).filter((uid) => this.#table.has(uid));
        if (gone.length === 0) return;
        const modseq = this.highestModseq + 1;
        const indexLines: string[] = [];
        for (const uid of gone) this.#forget(uid, modseq, indexLines);
        this.highestModseq = modseq;
        indexLines.push(indexLine.highestModseq(modseq));
        await this.#index.append(indexLines);
        this.emit('change', { modseq, added: [], expunged: gone, flagged: [] });
      });
    }
    return pairs;
  }

  /**
   * Rewrites dovecot-uidlist without the entries of messages known to be gone (Dovecot appends
   * and compacts the same way). Entries another process added meanwhile are kept. maild-cache
   * is compacted too when records of gone messages dominate it.
   */
  async compact(): Promise<void> {
    if (this.#cache.needsCompaction) await this.#cache.compact(this.#isLive);
    await this.#mutex.run(() => this.#uidlist.compact());
  }

  /** Message and unseen counts without touching the disk. */
  totals(): { messages: number; unseen: number } {
    return this.#table.totals();
  }
}
