/**
 * The in-memory table of one folder: the live messages by UID (and their UIDs in ascending
 * order), the records of messages expunged lately, and the expunge history QRESYNC asks for.
 */
import { MAX_EXPUNGE_LOG, type ExpungeEntry } from './index-file.js';
import type { MessageRecord } from './types.js';
import { FLAG_SEEN } from './types.js';

/** Records of expunged messages kept for sessions that still show them (RFC 2180 section 4.1). */
const MAX_EXPUNGED_RECORDS = 10_000;

export class MessageTable {
  readonly #records = new Map<number, MessageRecord>();
  #uids: number[] = [];
  /** Expunged records, oldest first: sessions that still show them answer FETCH from these. */
  readonly #expunged = new Map<number, MessageRecord>();
  #expungeLog: ExpungeEntry[] = [];

  /** UIDs in ascending order (the caller must not modify the array). */
  get uids(): readonly number[] {
    return this.#uids;
  }

  get size(): number {
    return this.#records.size;
  }

  get expungeLog(): readonly ExpungeEntry[] {
    return this.#expungeLog;
  }

  /** The history read back from maild-index at open. */
  restoreExpungeLog(log: ExpungeEntry[]): void {
    this.#expungeLog = log;
  }

  get(uid: number): MessageRecord | undefined {
    return this.#records.get(uid);
  }

  has(uid: number): boolean {
    return this.#records.has(uid);
  }

  /** A live record, or the last record of a message expunged lately. */
  liveOrExpunged(uid: number): MessageRecord | undefined {
    return this.#records.get(uid) ?? this.#expunged.get(uid);
  }

  /** The last record of a message expunged lately; undefined for a live or long-gone one. */
  expungedRecord(uid: number): MessageRecord | undefined {
    return this.#records.has(uid) ? undefined : this.#expunged.get(uid);
  }

  /** Live records in UID order. */
  records(): MessageRecord[] {
    return this.#uids.map((uid) => this.#records.get(uid)!);
  }

  /** Adds records (UIDs not in the table). */
  add(records: MessageRecord[]): void {
    if (records.length === 0) return;
    for (const rec of records) this.#records.set(rec.uid, rec);
    this.#uids = [...this.#records.keys()].sort((a, b) => a - b);
  }

  /**
   * Takes an expunged message out of the table and into the expunge history. Returns its record
   * and, when the history of expunged records overflowed, the record dropped from it (whose
   * cached metadata can go: until then FETCH still serves it).
   */
  remove(uid: number, modseq: number): { removed: MessageRecord; dropped?: MessageRecord } | undefined {
    const removed = this.#records.get(uid);
    if (!removed) return undefined;
    this.#records.delete(uid);
    this.#expungeLog.push({ uid, modseq });
    if (this.#expungeLog.length > MAX_EXPUNGE_LOG) this.#expungeLog.shift();
    this.#expunged.set(uid, removed);
    let dropped: MessageRecord | undefined;
    if (this.#expunged.size > MAX_EXPUNGED_RECORDS) {
      const [oldUid, old] = this.#expunged.entries().next().value as [number, MessageRecord];
      this.#expunged.delete(oldUid);
      dropped = old;
    }
    const i = binarySearch(this.#uids, uid);
    if (i >= 0) this.#uids.splice(i, 1);
    return { removed, dropped };
  }

  /** Expunges after `modseq` (QRESYNC): UIDs, ascending; undefined when the history is too short. */
  expungedSince(modseq: number): number[] | undefined {
    const first = this.#expungeLog[0];
    if (first && first.modseq > modseq + 1 && this.#expungeLog.length >= MAX_EXPUNGE_LOG) return undefined;
    return this.#expungeLog
      .filter((e) => e.modseq > modseq)
      .map((e) => e.uid)
      .sort((a, b) => a - b);
  }

  /** Live messages with a UID of at least `from`. */
  countFrom(from: number): number {
    let lo = 0;
    let hi = this.#uids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#uids[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    return this.#uids.length - lo;
  }

  /** Message and unseen counts. */
  totals(): { messages: number; unseen: number } {
    let unseen = 0;
    for (const uid of this.#uids) if (!(this.#records.get(uid)!.flags & FLAG_SEEN)) unseen++;
    return { messages: this.#uids.length, unseen };
  }
}

function binarySearch(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid]!;
    if (v === value) return mid;
    if (v < value) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
