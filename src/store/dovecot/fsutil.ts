/**
 * Small file helpers shared by the Dovecot format modules: whole-file replacement that readers
 * never see half-written, with the permissions Dovecot would give the file.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { replaceDurably } from '../fsio.js';

export function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/** Reads a text file, or returns undefined when it does not exist. */
export async function readIfExists(file: string, encoding: BufferEncoding = 'utf8'): Promise<string | undefined> {
  try {
    return await fs.readFile(file, encoding);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/**
 * Mode and owner for a file written as `file`: those of the file it replaces, else the
 * directory's mode without execute bits and the directory's owner, as Dovecot derives file
 * permissions from the mailbox directory (mailbox-list.c mailbox_list_get_permissions).
 */
export async function permissionsFor(file: string): Promise<{ mode: number; uid: number; gid: number }> {
  try {
    const st = await fs.stat(file);
    return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  const dir = await fs.stat(path.dirname(file));
  return { mode: dir.mode & 0o666, uid: dir.uid, gid: dir.gid };
}

/** Gives a file we created the owner Dovecot expects; only root can, and only root needs to. */
export async function matchOwner(handle: fs.FileHandle, perm: { uid: number; gid: number }): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const st = await handle.stat();
  if (st.uid !== perm.uid || st.gid !== perm.gid) await handle.chown(perm.uid, perm.gid);
}

/**
 * Replaces `file` with `data` (fsio's replaceDurably) with the permissions and owner Dovecot would
 * give it, and an mtime above `mtimeAfter` when given. The caller holds whatever lock protects `tmp`.
 */
export async function replaceFile(
  file: string,
  data: string | Buffer,
  tmp: string,
  opts: { fsync?: boolean; mtimeAfter?: number } = {},
): Promise<void> {
  const perm = await permissionsFor(file);
  await replaceDurably(file, data, {
    tmp,
    mode: perm.mode,
    fsync: opts.fsync,
    before: async (h) => {
      await h.chmod(perm.mode);
      await matchOwner(h, perm);
    },
    after: opts.mtimeAfter === undefined ? undefined : (h) => bumpMtime(h, opts.mtimeAfter!),
  });
}

/**
 * Makes the file's mtime (in whole seconds) greater than `previousSeconds`, as Dovecot does for
 * files whose readers cache by mtime (maildir-keywords.c: "mtime must grow every time").
 */
export async function bumpMtime(h: fs.FileHandle, previousSeconds: number): Promise<void> {
  const st = await h.stat();
  if (Math.floor(st.mtimeMs / 1000) > previousSeconds) return;
  const now = Math.floor(Date.now() / 1000);
  const mtime = now > previousSeconds ? now : previousSeconds + 1;
  await h.utimes(now, mtime);
}
