/**
 * Maildir++ quota: the `maildirsize` file in the Maildir's root, as Courier defined it and
 * Dovecot's maildir quota backend keeps it. Line 1 is the limit ("<bytes>S"); every other line is
 * a "<bytes> <messages>" delta, appended on each change. The file is rebuilt from the message
 * file names when it is missing, when the limit changed, or when it has grown past 5120 bytes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
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
export async function addUsage(maildir: string, limitBytes: number, bytes: number, messages: number): Promise<void> {
  const file = path.join(maildir, 'maildirsize');
  try {
    // O_APPEND makes a short line atomic against other writers.
    await fs.appendFile(file, `${bytes} ${messages}\n`, { flag: 'a' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await recalculate(maildir, limitBytes);
  }
}

/** Rebuilds maildirsize from new/ and cur/ of the Maildir and its Maildir++ folders (.Sent, .Work.Projects, ...). */
export async function recalculate(maildir: string, limitBytes: number): Promise<QuotaUsage> {
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
  // Written in tmp/ and renamed, as Maildir++ does, so readers never see half a file.
  const tmp = path.join(maildir, 'tmp', `maildirsize.${process.pid}.${Date.now()}`);
  await fs.writeFile(tmp, `${definition(limitBytes)}\n${usage.bytes} ${usage.messages}\n`);
  await fs.rename(tmp, file);
  return usage;
}
