/**
 * Maildir++ quota: the `maildirsize` file in the Maildir's root, as Courier defined it and
 * Dovecot's maildir quota backend keeps it. Line 1 is the limit ("<bytes>S"); every other line is
 * a "<bytes> <messages>" delta, appended on each change. The file is rebuilt from the message
 * file names when it is missing, when the limit changed, or when it has grown past 5120 bytes.
 *
 * MaildirQuota is the one place that checks and records quota: delivery (delivery.ts) and the
 * mailbox operations (Mailbox.append, expunge, transfer) go through it; protocols never do.
 */
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError, storageError } from '../errors.js';
import type { Logger } from '../log.js';
import { replaceDurably } from './fsio.js';
import { sizeFromName } from './maildir.js';

const RECALC_SIZE = 5120;

export interface QuotaUsage {
  bytes: number;
  messages: number;
}

function definition(limitBytes: number): string {
  return `${limitBytes}S`;
}

/** Current usage of a Maildir, rebuilding maildirsize when needed. */
export async function readUsage(maildir: string, limitBytes: number): Promise<QuotaUsage> {
  const file = path.join(maildir, 'maildirsize');
  let text: string | undefined;
  try {
    text = await fs.readFile(file, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined && text.length < RECALC_SIZE) {
    const lines = text.split('\n');
    if (lines[0]?.trim() === definition(limitBytes)) {
      let bytes = 0;
      let messages = 0;
      for (let i = 1; i < lines.length; i++) {
        const m = /^\s*(-?\d+)\s+(-?\d+)\s*$/.exec(lines[i]!);
        if (m) {
          bytes += Number(m[1]);
          messages += Number(m[2]);
        }
      }
      return { bytes: Math.max(0, bytes), messages: Math.max(0, messages) };
    }
  }
  return recalculate(maildir, limitBytes);
}

/** Records a change (delivery +, expunge -) by appending a line, as Maildir++ clients do. */
async function addUsage(maildir: string, limitBytes: number, bytes: number, messages: number): Promise<void> {
  const file = path.join(maildir, 'maildirsize');
  try {
    // O_APPEND makes a short line atomic against other writers. Without O_CREAT: a missing file
    // is rebuilt from the names below (a bare delta line would lack the limit line).
    await fs.appendFile(file, `${bytes} ${messages}\n`, { flag: fsConstants.O_WRONLY | fsConstants.O_APPEND });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await recalculate(maildir, limitBytes);
  }
}

/** Rebuilds maildirsize from new/ and cur/ of the Maildir and its Maildir++ folders (.Sent, .Work.Projects, ...). */
async function recalculate(maildir: string, limitBytes: number): Promise<QuotaUsage> {
  const usage: QuotaUsage = { bytes: 0, messages: 0 };
  const folders = [maildir];
  try {
    for (const entry of await fs.readdir(maildir, { withFileTypes: true })) {
      if (entry.isDirectory() && entry.name.startsWith('.') && entry.name !== '.' && entry.name !== '..') {
        folders.push(path.join(maildir, entry.name));
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return usage;
    throw err;
  }
  for (const folder of folders) {
    for (const sub of ['new', 'cur']) {
      const dir = path.join(folder, sub);
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (name.startsWith('.')) continue;
        let size = sizeFromName(name);
        if (size === undefined) {
          try {
            size = (await fs.stat(path.join(dir, name))).size;
          } catch {
            continue; // expunged meanwhile
          }
        }
        usage.bytes += size;
        usage.messages++;
      }
    }
  }
  const file = path.join(maildir, 'maildirsize');
  // Written in tmp/ and renamed, as Maildir++ does, so readers never see half a file. A Maildir
  // that exists without tmp/ yet (a script uploaded over ManageSieve before the first delivery)
  // gets it now, as the first delivery would.
  await fs.mkdir(path.join(maildir, 'tmp'), { recursive: true, mode: 0o700 });
  const tmp = path.join(maildir, 'tmp', `maildirsize.${process.pid}.${Date.now()}`);
  await replaceDurably(file, `${definition(limitBytes)}\n${usage.bytes} ${usage.messages}\n`, { tmp, fsync: false });
  return usage;
}

/**
 * The quota of one Maildir: its root (where maildirsize lives), the limit from the directory
 * (0: unlimited, and then maildirsize is neither read nor written) and whose it is, for messages.
 * Failures reading or writing maildirsize are STORAGE_ERROR; refusals QUOTA_FULL and QUOTA_EXCEEDED.
 */
export class MaildirQuota {
  readonly maildir: string;
  readonly limitBytes: number;
  readonly owner: string;

  constructor(maildir: string, limitBytes: number, owner: string) {
    this.maildir = maildir;
    this.limitBytes = limitBytes;
    this.owner = owner;
  }

  get limited(): boolean {
    return this.limitBytes > 0;
  }

  /** Current usage (nothing is read for an unlimited Maildir: it reports 0). */
  async usage(): Promise<QuotaUsage> {
    if (!this.limited) return { bytes: 0, messages: 0 };
    try {
      return await readUsage(this.maildir, this.limitBytes);
    } catch (err) {
      throw storageError(err, `reading the quota of ${this.owner}`);
    }
  }

  /** Refuses a write of `bytes` that would take the Maildir over its limit (QUOTA_EXCEEDED). */
  async check(bytes: number): Promise<void> {
    if (!this.limited) return;
    const used = (await this.usage()).bytes;
    if (used + bytes > this.limitBytes) throw this.#exceeded(bytes, used);
  }

  /**
   * For RCPT time: refuses a Maildir that is already full (QUOTA_FULL) or, when the client
   * declared the message size, one this message would overfill (QUOTA_EXCEEDED).
   */
  async checkRoom(declaredSize = 0): Promise<void> {
    if (!this.limited) return;
    const used = (await this.usage()).bytes;
    if (used >= this.limitBytes) throw new MailError('QUOTA_FULL', `${this.owner} is at ${used} of ${this.limitBytes} bytes`);
    if (declaredSize && used + declaredSize > this.limitBytes) throw this.#exceeded(declaredSize, used);
  }

  /** Records a change of usage (delivery and append +, expunge -) in maildirsize. */
  async record(bytes: number, messages: number): Promise<void> {
    if (!this.limited || (bytes === 0 && messages === 0)) return;
    try {
      await addUsage(this.maildir, this.limitBytes, bytes, messages);
    } catch (err) {
      throw storageError(err, `updating maildirsize of ${this.owner}`);
    }
  }

  /**
   * Records a change that is already on disk. The change stands whatever happens here, so a
   * failure is logged, not thrown: failing the command would make the client retry a write that
   * succeeded. Dovecot does the same (quota-storage.c ignores quota_transaction_commit's result).
   */
  async recordDone(bytes: number, messages: number, logger: Logger): Promise<void> {
    try {
      await this.record(bytes, messages);
    } catch (err) {
      logger.warn({ maildir: this.maildir, err: (err as Error).message }, 'could not update maildirsize');
    }
  }

  #exceeded(bytes: number, used: number): MailError {
    return new MailError('QUOTA_EXCEEDED', `${this.owner}: ${bytes} bytes would exceed ${this.limitBytes} (used ${used})`);
  }
}
