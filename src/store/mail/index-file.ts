/**
 * maild-index: the append-only log that keeps, per folder, what Dovecot's binary index would:
 * MODSEQs (RFC 7162), the expunge history QRESYNC needs, the \Recent boundary, and sizes and dates
 * already computed. One line per fact:
 *   i <uidvalidity>                      first line: the incarnation of the folder it belongs to
 *   h <modseq>                           highest MODSEQ
 *   r <uid>                              the first UID no session has claimed as \Recent
 *   m <uid> <modseq>                     a message's MODSEQ
 *   x <uid> <modseq>                     an expunge
 *   s <uid> <size> <vsize> <date>        sizes (S=, W=) and INTERNALDATE (ms)
 * Lines are appended with O_APPEND (other processes' lines never interleave inside ours); the log is
 * compacted into the current state when it grows to several times that.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { acquireDotlock } from '../dovecot/dotlock.js';
import { replaceFile } from '../dovecot/fsutil.js';
import type { MessageRecord } from './types.js';

const INDEX_FILE = 'maild-index';
/** A line of maild-index: i/h/r <n>, m/x <uid> <modseq>, s <uid> <size> <vsize> <date>. */
const INDEX_LINE = /^([ihmxsr]) (\d{1,16})(?: (\d{1,16}))?(?: (\d{1,16}) (\d{1,16}))?$/;
/** Expunges remembered for QRESYNC (RFC 7162 section 3.2.5.2 lets a server forget old ones). */
export const MAX_EXPUNGE_LOG = 100_000;

export interface ExpungeEntry {
  uid: number;
  modseq: number;
}

/** What the index knows of a message that is not in the in-memory table yet. */
export interface IndexedMessage {
  modseq: number;
  size?: number;
  vsize?: number;
  date?: number;
}

/** The state read back from the index at open. */
export interface LoadedIndex {
  highestModseq: number;
  firstRecent: number | undefined;
  expungeLog: ExpungeEntry[];
  messages: Map<number, IndexedMessage>;
}

/** The folder's current state, written out when the log is compacted. */
export interface IndexSnapshot {
  uidValidity: number;
  highestModseq: number;
  firstRecent: number | undefined;
  expungeLog: readonly ExpungeEntry[];
  /** Live messages in UID order. */
  records: Iterable<MessageRecord>;
}

/** The lines of the log. */
export const indexLine = {
  highestModseq: (modseq: number) => `h ${modseq}`,
  firstRecent: (uid: number) => `r ${uid}`,
  modseq: (uid: number, modseq: number) => `m ${uid} ${modseq}`,
  expunge: (uid: number, modseq: number) => `x ${uid} ${modseq}`,
  sizes: (uid: number, size: number, vsize: number, date: number) => `s ${uid} ${size} ${vsize} ${Math.round(date)}`,
};

export class IndexFile {
  readonly file: string;
  readonly #snapshot: () => IndexSnapshot;
  /** How many facts the current state has (the log is compacted past several times that). */
  readonly #liveEntries: () => number;
  #lines = 0;
  /** The file ends in a cut line (a crash mid-write): the next append starts a new line. */
  #tornTail = false;

  constructor(dir: string, state: { snapshot: () => IndexSnapshot; liveEntries: () => number }) {
    this.file = path.join(dir, INDEX_FILE);
    this.#snapshot = state.snapshot;
    this.#liveEntries = state.liveEntries;
  }

  /**
   * Reads the log of the folder with this UIDVALIDITY. No index, or one that belongs to an older
   * incarnation of the folder, starts fresh: the first MODSEQ then comes from the clock, above
   * any a client may know for this UIDVALIDITY (Dovecot's, or ours before the index was lost), so
   * a CONDSTORE/QRESYNC client asking for changes since what it knew gets every message's flags
   * again instead of missing changes.
   */
  async load(uidValidity: number): Promise<LoadedIndex> {
    let text = '';
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const lines = text.split('\n');
    const header = /^i (\d+)$/.exec(lines[0] ?? '');
    const loaded: LoadedIndex = { highestModseq: 1, firstRecent: undefined, expungeLog: [], messages: new Map() };
    if (!header || Number(header[1]) !== uidValidity || uidValidity === 0) {
      this.#lines = 0;
      return { ...loaded, highestModseq: Date.now() * 1000 };
    }
    // Only whole lines count: a write cut by a crash leaves an unterminated tail, which is
    // ignored (and the next append starts on a fresh line). Lines that do not parse are skipped.
    const complete = lines.length - 1; // the last element: '' or the torn tail
    this.#tornTail = text.length > 0 && !text.endsWith('\n');
    const { messages } = loaded;
    for (let i = 1; i < complete; i++) {
      const m = INDEX_LINE.exec(lines[i]!);
      if (!m) continue;
      const [, kind, a, b, c, d] = m;
      const uid = Number(a);
      if (kind === 'h') loaded.highestModseq = Math.max(loaded.highestModseq, uid);
      else if (kind === 'r' && b === undefined) loaded.firstRecent = Math.max(loaded.firstRecent ?? 0, uid);
      else if (kind === 'm' && b !== undefined && c === undefined) {
        const e = messages.get(uid) ?? { modseq: 0 };
        e.modseq = Number(b);
        messages.set(uid, e);
        loaded.highestModseq = Math.max(loaded.highestModseq, e.modseq);
      } else if (kind === 'x' && b !== undefined && c === undefined) {
        messages.delete(uid);
        loaded.expungeLog.push({ uid, modseq: Number(b) });
        loaded.highestModseq = Math.max(loaded.highestModseq, Number(b));
      } else if (kind === 's' && d !== undefined) {
        const e = messages.get(uid) ?? { modseq: 0 };
        e.size = Number(b);
        e.vsize = Number(c);
        e.date = Number(d);
        messages.set(uid, e);
      }
    }
    if (loaded.expungeLog.length > MAX_EXPUNGE_LOG) loaded.expungeLog = loaded.expungeLog.slice(-MAX_EXPUNGE_LOG);
    this.#lines = lines.length;
    return loaded;
  }

  /** Appends lines in one write; the first write after a fresh start writes the whole state. */
  async append(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    if (this.#lines === 0) {
      await this.rewrite();
      return;
    }
    // One write with O_APPEND, so other processes' lines never interleave inside ours.
    await fs.appendFile(this.file, `${this.#tornTail ? '\n' : ''}${lines.join('\n')}\n`);
    this.#tornTail = false;
    this.#lines += lines.length;
    if (this.#lines > 4 * this.#liveEntries() + 1000) await this.rewrite();
  }

  /** Compaction: the current state in one file, replacing the log (temp + rename). */
  async rewrite(): Promise<void> {
    const state = this.#snapshot();
    const out = [`i ${state.uidValidity}`, indexLine.highestModseq(state.highestModseq)];
    if (state.firstRecent !== undefined) out.push(indexLine.firstRecent(state.firstRecent));
    for (const e of state.expungeLog) out.push(indexLine.expunge(e.uid, e.modseq));
    for (const r of state.records) {
      out.push(indexLine.modseq(r.uid, r.modseq));
      if (r.vsize >= 0 && r.internalDate >= 0) out.push(indexLine.sizes(r.uid, r.size, r.vsize, r.internalDate));
    }
    // Under a dot-lock against another process compacting at once; written to a temp file,
    // fsynced and renamed over the log, so a crash leaves the old log or the new one.
    const lock = await acquireDotlock(this.file, { timeoutMs: 5000, staleMs: 30_000 });
    try {
      await replaceFile(this.file, `${out.join('\n')}\n`, `${this.file}.${process.pid}.tmp`, { fsync: true });
    } finally {
      await lock.release();
    }
    this.#tornTail = false;
    this.#lines = out.length;
  }
}
