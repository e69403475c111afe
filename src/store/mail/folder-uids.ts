/**
 * The UIDs of one folder's messages, kept in dovecot-uidlist (shared with Dovecot, under its
 * dotlock): UIDVALIDITY, the next UID, the mailbox GUID and the base name of every message with
 * its UID. New files get UIDs in the order Dovecot gives them (message-files.ts sortBases).
 */
import type { Logger } from '../../log.js';
import type { UidlistStamp } from '../dovecot/index.js';
import {
  appendUids,
  appendUidsAt,
  generateMailboxGuid,
  loadUidlist,
  newUidValidity,
  rewriteUidlist,
  stampOfUidlist,
  withUidlistLock,
} from './formats.js';
import { sortBases } from './message-files.js';

export class FolderUids {
  uidValidity = 0;
  uidNext = 1;
  readonly #dir: string;
  readonly #opts: { root: string; logger: Logger };
  #guid = '';
  readonly #byBase = new Map<string, number>();
  /** The uidlist needs rewriting (Dovecot would renumber a corrupt one; we repair it). */
  #corrupt = false;
  /** Bases expunged since the uidlist was last rewritten. */
  readonly #goneBases = new Set<string>();
  /** The version of the file this process read or wrote last, when records can go at its end. */
  #file: (UidlistStamp & { version: 1 | 3 }) | undefined;

  /** `root` is the user's Maildir root, where Dovecot's UIDVALIDITY counter lives. */
  constructor(dir: string, opts: { root: string; logger: Logger }) {
    this.#dir = dir;
    this.#opts = opts;
  }

  /** Reads dovecot-uidlist at open (a folder without one gets it at the first sync). */
  async load(): Promise<void> {
    const uidlist = await loadUidlist(this.#dir);
    if (!uidlist) return;
    this.uidValidity = uidlist.uidValidity;
    this.uidNext = uidlist.nextUid;
    this.#guid = uidlist.guid ?? '';
    this.#corrupt = uidlist.corrupt;
    for (const e of uidlist.records) this.#byBase.set(e.base, e.uid);
  }

  uidOf(base: string): number | undefined {
    return this.#byBase.get(base);
  }

  /** The uidlist must be written even without new files (none yet, or a corrupt one). */
  get needsWrite(): boolean {
    return this.#corrupt || !this.uidValidity;
  }

  /**
   * Takes the uidlist dotlock, re-reads the uidlist (another process may have added UIDs) and
   * gives UIDs to the bases that still have none, appending them as Dovecot does. A uidlist
   * Dovecot would consider corrupt is rewritten from what is known instead of renumbered.
   */
  async assign(bases: string[]): Promise<void> {
    await withUidlistLock(this.#dir, async () => {
      // The file as this process left it (same inode and size) is not read again.
      const known = this.#file;
      this.#file = undefined; // unknown until this write is done
      const stamp = known ? await stampOfUidlist(this.#dir) : undefined;
      const unchanged = known && stamp && stamp.ino === known.ino && stamp.size === known.size ? known : undefined;
      const current = unchanged ? undefined : await loadUidlist(this.#dir);
      if (current) {
        if (this.uidValidity && current.uidValidity !== this.uidValidity) {
          this.#opts.logger.warn({ mailbox: this.#dir }, 'UIDVALIDITY changed on disk');
        }
        this.uidValidity = current.uidValidity;
        this.#guid = current.guid ?? this.#guid;
        for (const e of current.records) this.#byBase.set(e.base, e.uid);
        this.uidNext = Math.max(this.uidNext, current.nextUid);
      }
      // Delivery order: base names start with the delivery time.
      const missing = sortBases(bases.filter((b) => !this.#byBase.has(b)));
      const records = missing.map((base) => ({ uid: this.uidNext++, base }));
      for (const r of records) this.#byBase.set(r.base, r.uid);
      if (!unchanged && (!current || current.corrupt)) {
        if (!this.uidValidity) this.uidValidity = await newUidValidity(this.#opts.root);
        this.#guid ||= generateMailboxGuid();
        await rewriteUidlist(this.#dir, {
          uidValidity: this.uidValidity,
          nextUid: this.uidNext,
          guid: this.#guid,
          records: this.#knownRecords(),
        });
        this.#corrupt = false;
        return;
      }
      const at = unchanged ?? (current?.stamp && { ...current.stamp, version: current.version });
      if (at) this.#file = records.length ? { ...(await appendUidsAt(this.#dir, records, at)), version: at.version } : at;
      else if (records.length) await appendUids(this.#dir, records);
    });
  }

  /** An expunged message's base: dropped here, and from the file at the next compact(). */
  forget(base: string): void {
    this.#byBase.delete(base);
    this.#goneBases.add(base);
  }

  /**
   * Rewrites dovecot-uidlist without the entries of messages known to be gone (Dovecot appends
   * and compacts the same way). Entries another process added meanwhile are kept.
   */
  async compact(): Promise<void> {
    if (this.#goneBases.size === 0 || !this.uidValidity) return;
    await withUidlistLock(this.#dir, async () => {
      const current = await loadUidlist(this.#dir);
      if (!current) return;
      const records = current.records.filter((r) => !this.#goneBases.has(r.base));
      await rewriteUidlist(this.#dir, {
        uidValidity: current.uidValidity,
        nextUid: Math.max(current.nextUid, this.uidNext),
        guid: current.guid,
        records,
      });
      this.#goneBases.clear();
    });
  }

  /** Every base with a UID this process knows of, ascending. */
  #knownRecords(): Array<{ uid: number; base: string }> {
    return [...this.#byBase].map(([base, uid]) => ({ uid, base })).sort((a, b) => a.uid - b.uid);
  }
}
