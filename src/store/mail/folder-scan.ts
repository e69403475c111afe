/**
 * Listing a folder's message files, skipped when cur/ and new/ provably did not change since the
 * last listing (two stats instead of two readdirs).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError } from '../../errors.js';
import { baseOf, type FileLocation } from './message-files.js';

/** A directory changed this recently may change again within its mtime's granularity. */
const MTIME_SLACK_MS = 2000;

export class FolderScanner {
  readonly #dir: string;
  readonly #name: string;
  #newMtime = -1;
  #curMtime = -1;
  #lastScan = 0;
  #dirty = true;

  constructor(dir: string, name: string) {
    this.#dir = dir;
    this.#name = name;
  }

  /** Something this process knows about changed the folder (a delivery): list it next time. */
  markDirty(): void {
    this.#dirty = true;
  }

  /**
   * The message files by base (a file in cur/ wins over one with the same base in new/), or null
   * when nothing can have changed and `force` is off. MAILBOX_NOT_FOUND when the folder is gone.
   */
  async scan(force: boolean): Promise<Map<string, FileLocation> | null> {
    const newDir = path.join(this.#dir, 'new');
    const curDir = path.join(this.#dir, 'cur');
    let newSt, curSt;
    try {
      [newSt, curSt] = await Promise.all([fs.stat(newDir), fs.stat(curDir)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MailError('MAILBOX_NOT_FOUND', `mailbox ${this.#name} was removed`);
      throw err;
    }
    const now = Date.now();
    // Unchanged mtimes prove nothing changed only if the last scan came well after them (a change
    // within the mtime's granularity of an earlier one keeps the mtime); then any later change
    // shows as a newer mtime, however soon after that scan it comes.
    const unchanged = newSt.mtimeMs === this.#newMtime && curSt.mtimeMs === this.#curMtime;
    if (!force && !this.#dirty && unchanged && this.#lastScan - Math.max(newSt.mtimeMs, curSt.mtimeMs) > MTIME_SLACK_MS) return null;
    this.#dirty = false;
    this.#newMtime = newSt.mtimeMs;
    this.#curMtime = curSt.mtimeMs;
    this.#lastScan = now;

    const [newNames, curNames] = await Promise.all([fs.readdir(newDir), fs.readdir(curDir)]);
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
