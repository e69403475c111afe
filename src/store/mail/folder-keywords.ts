/**
 * The keywords of one folder: dovecot-keywords maps the letters a..z of Maildir file names to
 * keyword names (at most 26 per folder). New keywords are added under the uidlist lock, as
 * Dovecot requires.
 */
import { MailError } from '../../errors.js';
import type { KeywordTable } from '../dovecot/index.js';
import { loadKeywords, saveKeywords, withUidlistLock } from './formats.js';

const MAX_KEYWORDS = 26;

export class FolderKeywords {
  readonly #dir: string;
  #table: KeywordTable = [];
  #mtimeSeconds = 0;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Reads dovecot-keywords again (another process may have added keywords). */
  async reload(): Promise<void> {
    const k = await loadKeywords(this.#dir);
    this.#table = k.table;
    this.#mtimeSeconds = k.mtimeSeconds;
  }

  /** The keyword names, in letter order. */
  names(): string[] {
    return this.#table.filter((k): k is string => Boolean(k));
  }

  /** Whether every letter index has a name (else the file was written by a newer table). */
  knows(indexes: number[]): boolean {
    return indexes.every((k) => Boolean(this.#table[k]));
  }

  /** The names of letter indexes from a file name (unknown letters are left out). */
  namesOf(indexes: number[]): string[] {
    const out: string[] = [];
    for (const i of indexes) {
      const name = this.#table[i];
      if (name) out.push(name);
    }
    return out;
  }

  /**
   * The letter indexes of keyword names, adding new ones (under the uidlist lock) up to the 26 a
   * Maildir file name can carry; LIMIT beyond that.
   */
  async indexesOf(keywords: string[]): Promise<number[]> {
    const find = (k: string) => this.#table.findIndex((n) => n !== undefined && n.toLowerCase() === k.toLowerCase());
    if (keywords.some((k) => find(k) === -1)) {
      await withUidlistLock(this.#dir, async () => {
        await this.reload();
        const missing = keywords.filter((k) => find(k) === -1);
        if (missing.length === 0) return;
        for (const k of missing) {
          let slot = this.#table.findIndex((n) => !n);
          if (slot === -1) slot = this.#table.length;
          if (slot >= MAX_KEYWORDS) throw new MailError('LIMIT', 'too many keywords in this mailbox (Maildir allows 26)');
          this.#table[slot] = k;
        }
        await saveKeywords(this.#dir, this.#table, this.#mtimeSeconds);
        await this.reload();
      });
    }
    return keywords.map(find).filter((i) => i >= 0);
  }
}
