/**
 * Listing a folder's message files, skipped when cur/ and new/ provably did not change since the
 * last listing (two stats instead of two readdirs).
 *
 * A directory's mtime proves no change only up to its granularity: a change in the same tick as
 * the one recorded keeps the mtime. As Dovecot's maildir sync does (DIR_DELAYED_REFRESH), a
 * listing made while the mtime was that recent is trusted for now and checked by one more
 * listing once the slack has passed, instead of listing again on every command. Changes this
 * process makes itself (a flag rename, an expunge, an append) are recorded by the mailbox as it
 * makes them, so their new mtimes are adopted without a listing (`own`), under the same delayed
 * check; a change by another process is found by the next command, or, when it fell in the same
 * tick as one of ours or as a listing, within the slack.
 */
import { statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError } from '../../errors.js';
import { baseOf, type FileLocation } from './message-files.js';

/** Longer than any mtime granularity of a local filesystem (ext3 1 s, FAT 2 s; ext4 a tick). */
export const MTIME_SLACK_MS = 2000;

type Sub = 'cur' | 'new';

export class FolderScanner {
  readonly #dir: string;
  readonly #name: string;
  readonly #slackMs: number;
  /** The mtimes the table is known to match (from a listing, or adopted by `own`). */
  #mtime: Record<Sub, number> = { cur: -1, new: -1 };
  /** When set: a listing is due from then on, even with unchanged mtimes (see the top). */
  #verifyAt: number | undefined;
  #dirty = true;
  /** Listings done (tests prove what a command did not list). */
  listings = 0;

  readonly #blockingStats: boolean;

  constructor(dir: string, name: string, opts: { slackMs?: number; blockingStats?: boolean } = {}) {
    this.#dir = dir;
    this.#name = name;
    this.#slackMs = opts.slackMs ?? MTIME_SLACK_MS;
    this.#blockingStats = opts.blockingStats ?? false;
  }

  /** Something this process knows about changed the folder (a delivery): list it next time. */
  markDirty(): void {
    this.#dirty = true;
  }

  async #stat(sub: Sub): Promise<number> {
    const dir = path.join(this.#dir, sub);
    try {
      // A directory just listed is in the inode cache: a blocking stat costs less than a round trip.
      return (this.#blockingStats ? statSync(dir) : await fs.stat(dir)).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MailError('MAILBOX_NOT_FOUND', `mailbox ${this.#name} was removed`);
      throw err;
    }
  }

  #delayCheck(now: number): void {
    this.#verifyAt ??= now + this.#slackMs;
  }

  /**
   * Runs `change`, which alters `subs` by operations of this process that the caller records
   * in its table as it goes; the mtimes they leave are adopted unless another process changed
   * the directories since they were last known (then the next scan lists them). The caller
   * holds the folder's lock, as scan() runs under it.
   */
  async own<T>(subs: readonly Sub[], change: () => Promise<T>): Promise<T> {
    let known = !this.#dirty;
    if (known) {
      const before = await Promise.all(subs.map((sub) => this.#stat(sub)));
      known = subs.every((sub, i) => before[i] === this.#mtime[sub]);
    }
    let result: T;
    try {
      result = await change();
    } catch (err) {
      this.#dirty = true;
      throw err;
    }
    if (!known) {
      this.#dirty = true;
      return result;
    }
    const after = await Promise.all(subs.map((sub) => this.#stat(sub).catch(() => -1)));
    subs.forEach((sub, i) => (this.#mtime[sub] = after[i]!));
    // Another process's change in the same tick as ours would hide behind the new mtime.
    this.#delayCheck(Date.now());
    return result;
  }

  /**
   * The message files by base (a file in cur/ wins over one with the same base in new/), or null
   * when nothing can have changed and `force` is off. MAILBOX_NOT_FOUND when the folder is gone.
   */
  async scan(force: boolean): Promise<Map<string, FileLocation> | null> {
    const [newMtime, curMtime] = await Promise.all([this.#stat('new'), this.#stat('cur')]);
    const now = Date.now();
    const unchanged = newMtime === this.#mtime.new && curMtime === this.#mtime.cur;
    const due = this.#verifyAt !== undefined && now >= this.#verifyAt;
    if (!force && !this.#dirty && unchanged && !due) return null;
    this.#dirty = false;
    this.#mtime = { new: newMtime, cur: curMtime };
    // Listed while the mtime is recent: a change in its tick after this listing would not show.
    this.#verifyAt = now - Math.max(newMtime, curMtime) <= this.#slackMs ? now + this.#slackMs : undefined;
    this.listings++;

    const [newNames, curNames] = await Promise.all([fs.readdir(path.join(this.#dir, 'new')), fs.readdir(path.join(this.#dir, 'cur'))]);
    const onDisk = new Map<string, FileLocation>();
    for (const name of curNames) if (name[0] !== '.') onDisk.set(baseOf(name), { name, inNew: false });
    for (const name of newNames) {
      if (name[0] === '.') continue;
      const base = baseOf(name);
      if (!onDisk.has(base)) onDisk.set(base, { name, inNew: true });
    }
    return onDisk;
  }
}
