/**
 * The message files of one Maildir folder: where a record's file is, finding it again after
 * another process renamed it (a flag change) and moving, linking or copying it. A file's name is
 * <base>[:2,<flags>] in cur/ or new/ (filename.ts has the format).
 */
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { syncFile } from '../fsio.js';
import type { MessageRecord } from './types.js';

export type FileLocation = Pick<MessageRecord, 'name' | 'inNew'>;

/** The path of a message file in the folder `dir`. */
export function messagePath(dir: string, file: FileLocation): string {
  return path.join(dir, file.inNew ? 'new' : 'cur', file.name);
}

/** The base of a Maildir file name (before the last ':'), as parseName(name).base. */
export function baseOf(name: string): string {
  const at = name.lastIndexOf(':');
  return at < 0 ? name : name.slice(0, at);
}

/**
 * New files in the order Dovecot gives them UIDs (maildir_filename_sort_cmp): by the seconds,
 * then the microseconds of M<usec>, numerically, then by name. Keys are computed once per name.
 */
export function sortBases(bases: string[]): string[] {
  const keyed = bases.map((base) => {
    const dot = base.indexOf('.');
    const secs = Number(dot < 0 ? base : base.slice(0, dot));
    const usecs = dot >= 0 && base[dot + 1] === 'M' ? parseInt(base.slice(dot + 2), 10) : NaN;
    return { base, secs, usecs };
  });
  keyed.sort((x, y) => {
    if (Number.isFinite(x.secs) && Number.isFinite(y.secs) && x.secs !== y.secs) return x.secs - y.secs;
    if (Number.isFinite(x.usecs) && Number.isFinite(y.usecs) && x.usecs !== y.usecs) return x.usecs - y.usecs;
    return x.base < y.base ? -1 : x.base > y.base ? 1 : 0;
  });
  return keyed.map((k) => k.base);
}

/** The current name of the file with this base, in cur/ or new/. */
async function findByBase(dir: string, base: string): Promise<FileLocation | undefined> {
  for (const [sub, inNew] of [
    ['cur', false],
    ['new', true],
  ] as const) {
    for (const name of await fs.readdir(path.join(dir, sub)).catch(() => [] as string[])) {
      if (name === base || name.startsWith(`${base}:`)) return { name, inNew };
    }
  }
  return undefined;
}

/** new/ -> cur/, keeping the name (with its flags, if another program set some). */
export async function moveToCur(dir: string, rec: MessageRecord): Promise<void> {
  const name = rec.name.includes(':') ? rec.name : `${rec.name}:2,`;
  try {
    await fs.rename(path.join(dir, 'new', rec.name), path.join(dir, 'cur', name));
    rec.name = name;
    rec.inNew = false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Renames a message file to its new flags; false when it vanished (expunged elsewhere). */
export async function renameMessage(dir: string, rec: MessageRecord, name: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fs.rename(messagePath(dir, rec), path.join(dir, 'cur', name));
      rec.name = name;
      rec.inNew = false;
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Another process renamed it: find its current name.
      const found = await findByBase(dir, rec.base);
      if (!found) return false;
      rec.name = found.name;
      rec.inNew = found.inNew;
    }
  }
  return false;
}

/** Removes a message file, wherever another process moved it meanwhile. */
export async function removeMessage(dir: string, rec: MessageRecord): Promise<void> {
  await fs.unlink(messagePath(dir, rec)).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
    const found = await findByBase(dir, rec.base);
    if (found) await fs.unlink(messagePath(dir, found)).catch(() => undefined);
  });
}

/**
 * Puts a message file at `to` (another folder's cur/): renamed for a move; for a copy a hard link,
 * as Dovecot makes on one filesystem, else a byte copy with the message's date, fsynced.
 */
export async function placeMessage(dir: string, rec: MessageRecord, to: string, move: boolean): Promise<void> {
  const from = messagePath(dir, rec);
  if (move) {
    await fs.rename(from, to);
    return;
  }
  try {
    await fs.link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
    await fs.copyFile(from, to, fsConstants.COPYFILE_EXCL);
    await fs.utimes(to, new Date(rec.internalDate), new Date(rec.internalDate));
    await syncFile(to);
  }
}
