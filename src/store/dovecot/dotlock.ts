/**
 * Dot-locks compatible with Dovecot's src/lib/file-dotlock.c, the lock Dovecot takes on
 * dovecot-uidlist ("dovecot-uidlist.lock"), dovecot-keywords and subscriptions.
 *
 * What Dovecot 2.3 does, and so this module:
 * - The lock of FILE is FILE.lock, created with O_CREAT|O_EXCL (dotlock_use_excl = yes, the 2.3
 *   default), or for NFS as a temp file ".temp.<host>.<pid>.<random>" link()ed to FILE.lock.
 * - It contains "<pid>:<hostname>" (no newline); a lock used as the new content of FILE
 *   (file_dotlock_open, for subscriptions and dovecot-keywords) is created empty instead.
 * - A waiter overrides (unlinks) a lock when
 *   a) it is older than 2 s (STALE_PID_CHECK_SECS), names this host, and its PID is gone
 *      (kill(pid, 0) fails with ESRCH), or names our own PID (a leftover of an earlier process);
 *   b) or neither the lock nor the protected FILE changed (ino, size, ctime, mtime) for
 *      stale_timeout: 120 s for dovecot-uidlist and dovecot-keywords, 30 s for subscriptions.
 *   The first observed change time of a lock is its ctime (its mtime if later), so touching a
 *   lock (file_dotlock_touch) keeps it fresh. 1.x's immediate_stale_timeout no longer exists.
 * - Waiting: 0.1-0.2 s between checks, growing by half each second the lock stays unchanged,
 *   up to 3 s (here 1 s), giving up after `timeout`: stale_timeout + 2 s for dovecot-uidlist
 *   (maildir-uidlist.c; mail_max_lock_timeout can lower it), 120 s for subscriptions.
 * - Release (file_dotlock_delete) unlinks the lock only if it is still the same inode.
 *
 * Several async users in one Node process share a PID, which Dovecot's rule a) would take for a
 * stale lock: locks held by this process are therefore registered in memory and waited for.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MailError } from '../../errors.js';
import { isErrno, permissionsFor, bumpMtime, matchOwner } from './fsutil.js';
import { fsyncDir } from '../fsio.js';

export interface DotlockOptions {
  /** Give up after this many ms (0: one attempt). Default 122 000, as for dovecot-uidlist. */
  timeoutMs?: number;
  /** Override a lock when it and the protected file are unchanged this long (ms); 0: never by age. */
  staleMs?: number;
  /** Lock file suffix. Default ".lock". */
  suffix?: string;
  /** O_EXCL creation (default, Dovecot's dotlock_use_excl = yes) or temp file + link() (NFS). */
  useExcl?: boolean;
  /** Prefix of the link() temp file, relative to the lock's folder unless absolute. */
  tempPrefix?: string;
  /** Write "<pid>:<host>" into the lock (default). False for a lock that becomes the new file. */
  writePid?: boolean;
  signal?: AbortSignal;
}

/**
 * Dovecot's values (maildir-uidlist.h, subscription-file.c). dovecot-keywords.lock has none: it
 * is only taken under the uidlist lock, so a leftover one is stale by construction (keywords.ts).
 */
export const UIDLIST_LOCK: Readonly<DotlockOptions> = { staleMs: 120_000, timeoutMs: 122_000 };
export const SUBSCRIPTIONS_LOCK: Readonly<DotlockOptions> = { staleMs: 30_000, timeoutMs: 120_000 };

const STALE_PID_CHECK_MS = 2000;
const MAX_WAIT_MS = 1000;

export class DotlockTimeoutError extends MailError {
  readonly lockPath: string;
  constructor(lockPath: string, waitedMs: number, holder: string | undefined) {
    super(
      'TEMP_FAIL',
      `timed out after ${(waitedMs / 1000).toFixed(1)} s waiting for lock ${lockPath}` + (holder ? ` (held by ${holder})` : ''),
    );
    this.name = 'DotlockTimeoutError';
    this.lockPath = lockPath;
  }
}

export interface Dotlock {
  /** The protected file. */
  readonly path: string;
  readonly lockPath: string;
  /** Updates the lock's mtime so that waiters do not take it for stale (long operations). */
  touch(): Promise<void>;
  /** True while the lock file is still ours (not overridden or deleted by someone else). */
  isLocked(): Promise<boolean>;
  /** Deletes the lock. Resolves false when it had been overridden or deleted meanwhile. */
  release(): Promise<boolean>;
  /**
   * Writes `data` into the lock file and renames it over the protected file, releasing the lock
   * (file_dotlock_replace). Throws when the lock was overridden meanwhile.
   */
  replace(data: string | Buffer, opts?: { fsync?: boolean; mtimeAfter?: number }): Promise<void>;
}

interface ChangeInfo {
  ino: number;
  dev: number;
  size: number;
  ctimeMs: number;
  mtimeMs: number;
}

interface Held {
  ino: number;
  dev: number;
}

/** Locks this process holds, by absolute lock path. */
const held = new Map<string, Held>();
/** In-process waiters to wake when a lock of this process is released. */
const wakers = new Map<string, Set<() => void>>();

function wake(lockPath: string): void {
  const set = wakers.get(lockPath);
  if (!set) return;
  wakers.delete(lockPath);
  for (const f of set) f();
}

function randomWaitMs(): number {
  return 100 + Math.floor(Math.random() * 100);
}

function sleep(ms: number, lockPath: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let set = wakers.get(lockPath);
    if (!set) wakers.set(lockPath, (set = new Set()));
    const done = () => {
      clearTimeout(timer);
      set!.delete(done);
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      done();
      reject(signal!.reason);
    };
    const timer = setTimeout(done, Math.max(0, ms));
    set.add(done);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function hostname(): string {
  return os.hostname();
}

/** The content Dovecot writes into a lock: "<pid>:<host>". */
export function dotlockContent(pid = process.pid, host = hostname()): string {
  return `${pid}:${host}`;
}

/** The PID of a lock written on this host, else null (file-dotlock.c read_local_pid). */
async function readLocalPid(lockPath: string): Promise<number | null> {
  let text: string;
  try {
    const h = await fs.open(lockPath, 'r');
    try {
      const buf = Buffer.alloc(511);
      const { bytesRead } = await h.read(buf, 0, 511, 0);
      text = buf.subarray(0, bytesRead).toString('latin1');
    } finally {
      await h.close();
    }
  } catch {
    return null;
  }
  if (text.endsWith('\n')) text = text.slice(0, -1);
  const colon = text.indexOf(':');
  if (colon < 0 || text.slice(colon + 1) !== hostname()) return null;
  const digits = text.slice(0, colon);
  if (!/^\d{1,10}$/.test(digits)) return null;
  const pid = Number(digits);
  return pid > 0 ? pid : null;
}

async function describeHolder(lockPath: string): Promise<string | undefined> {
  try {
    const text = (await fs.readFile(lockPath, 'latin1')).slice(0, 200).trim();
    const colon = text.indexOf(':');
    return colon > 0 ? `pid ${text.slice(0, colon)} on ${text.slice(colon + 1)}` : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return !isErrno(err, 'ESRCH'); // EPERM: exists, owned by someone else
  }
}

interface CheckState {
  lock?: ChangeInfo;
  file?: ChangeInfo;
  lastChange: number;
  pidRead: boolean;
  havePid: boolean;
}

/** Records a changed stat; true when it differs from the last one seen (file-dotlock.c update_change_info). */
function noteChange(state: CheckState, which: 'lock' | 'file', st: ChangeInfo, now: number): boolean {
  const prev = state[which];
  if (
    prev &&
    prev.ino === st.ino &&
    prev.dev === st.dev &&
    prev.size === st.size &&
    prev.ctimeMs === st.ctimeMs &&
    prev.mtimeMs === st.mtimeMs
  ) {
    return false;
  }
  // First look: the object's own change time; later changes: now.
  const changeTime = prev ? now : st.mtimeMs <= now && st.mtimeMs > st.ctimeMs ? st.mtimeMs : st.ctimeMs;
  if (state.lastChange < changeTime) state.lastChange = changeTime;
  state[which] = { ino: st.ino, dev: st.dev, size: st.size, ctimeMs: st.ctimeMs, mtimeMs: st.mtimeMs };
  return true;
}

async function lstatOrNull(p: string): Promise<ChangeInfo | null> {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
}

async function override(lockPath: string): Promise<void> {
  try {
    await fs.unlink(lockPath);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  // Let a concurrent overrider finish before we create ours, or it could unlink it (file-dotlock.c).
  await new Promise((r) => setTimeout(r, randomWaitMs()));
}

/** 1: no lock, try to create; 0: a live lock, wait (file-dotlock.c check_lock). */
async function checkLock(file: string, lockPath: string, staleMs: number, state: CheckState): Promise<0 | 1> {
  const now = Date.now();
  const st = await lstatOrNull(lockPath);
  if (!st) return 1;
  const changed = noteChange(state, 'lock', st, now);
  let pid: number | null = null;
  if (changed || !state.pidRead) {
    if (st.mtimeMs >= now - STALE_PID_CHECK_MS) state.pidRead = false;
    else {
      pid = await readLocalPid(lockPath);
      state.pidRead = true;
    }
    state.havePid = pid !== null;
  } else if (state.havePid) {
    pid = await readLocalPid(lockPath);
    state.havePid = pid !== null;
  }
  if (state.havePid && pid !== null) {
    if (pid === process.pid) {
      const mine = held.get(lockPath);
      if (mine && mine.ino === st.ino && mine.dev === st.dev) return 0; // another user in this process
    } else if (processAlive(pid)) {
      return 0;
    }
    // The owner is gone: override unless the lock was just replaced.
    const again = await lstatOrNull(lockPath);
    if (!again) return 1;
    if (!noteChange(state, 'lock', again, Date.now())) {
      await override(lockPath);
      return 0;
    }
    return 1;
  }
  if (staleMs <= 0) return 0;
  if (now > state.lastChange + staleMs) {
    // Possibly stale: a lock holder that is busy changes the file it protects.
    try {
      noteChange(state, 'file', await fs.stat(file), now);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
  if (now > state.lastChange + staleMs) {
    await override(lockPath);
  }
  return 0;
}

async function tryCreateExcl(lockPath: string, content: string | null): Promise<boolean> {
  let h: fs.FileHandle;
  try {
    h = await fs.open(lockPath, 'wx', 0o666);
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  }
  try {
    if (content !== null) {
      try {
        await h.writeFile(content);
      } catch {
        await h.truncate(0); // as Dovecot: an empty lock rather than a partial one
      }
    }
  } finally {
    await h.close();
  }
  return true;
}

async function tryCreateLink(lockPath: string, content: string | null, tempPrefix: string | undefined): Promise<boolean> {
  const dir = path.dirname(lockPath);
  const prefix = tempPrefix ?? `.temp.${hostname()}.${process.pid}.`;
  const tmp = (path.isAbsolute(prefix) ? prefix : path.join(dir, prefix)) + randomBytes(4).toString('hex');
  await fs.writeFile(tmp, content ?? '', { flag: 'wx', mode: 0o666 });
  try {
    try {
      await fs.link(tmp, lockPath);
      return true;
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return false;
      // NFS: link() can fail after having worked; the link count tells (nfs-workarounds.c).
      const st = await fs.stat(tmp).catch(() => null);
      if (st && st.nlink === 2) return true;
      throw err;
    }
  } finally {
    await fs.unlink(tmp).catch(() => {});
  }
}

/**
 * Takes the dot-lock of `file`, waiting for another holder as Dovecot does. Rejects with a
 * DotlockTimeoutError (code TEMP_FAIL) after `timeoutMs`, or with the errno error when the
 * lock cannot be created at all (e.g. ENOENT: the folder does not exist, EACCES).
 */
export async function acquireDotlock(file: string, opts: DotlockOptions = {}): Promise<Dotlock> {
  const timeoutMs = opts.timeoutMs ?? UIDLIST_LOCK.timeoutMs!;
  const staleMs = opts.staleMs ?? UIDLIST_LOCK.staleMs!;
  const absFile = path.resolve(file);
  const lockPath = absFile + (opts.suffix ?? '.lock');
  const content = opts.writePid === false ? null : dotlockContent();
  const start = Date.now();
  const deadline = start + timeoutMs;
  const state: CheckState = { lastChange: 0, pidRead: false, havePid: false };
  let waitMs = randomWaitMs();
  let prevLastChange = 0;
  let prevWaitUpdate = 0;
  for (let first = true; ; first = false) {
    opts.signal?.throwIfAborted();
    if (!first) {
      const nowSec = Math.floor(Date.now() / 1000);
      if (prevLastChange !== state.lastChange) {
        waitMs = randomWaitMs();
        prevLastChange = state.lastChange;
        prevWaitUpdate = nowSec;
      } else if (prevWaitUpdate !== nowSec && waitMs < MAX_WAIT_MS) {
        prevWaitUpdate = nowSec;
        waitMs = Math.min(MAX_WAIT_MS, waitMs + waitMs / 2);
      }
      await sleep(Math.min(waitMs, deadline - Date.now()), lockPath, opts.signal);
    }
    if ((await checkLock(absFile, lockPath, staleMs, state)) === 1) {
      const created =
        opts.useExcl === false ? await tryCreateLink(lockPath, content, opts.tempPrefix) : await tryCreateExcl(lockPath, content);
      if (created) {
        const st = await fs.lstat(lockPath);
        const mine: Held = { ino: st.ino, dev: st.dev };
        held.set(lockPath, mine);
        return makeHandle(absFile, lockPath, mine);
      }
    }
    if (Date.now() >= deadline) {
      throw new DotlockTimeoutError(lockPath, Date.now() - start, await describeHolder(lockPath));
    }
  }
}

function makeHandle(file: string, lockPath: string, mine: Held): Dotlock {
  let done = false;
  const finish = () => {
    done = true;
    if (held.get(lockPath) === mine) held.delete(lockPath);
    wake(lockPath);
  };
  const stillOurs = async (): Promise<boolean> => {
    if (done) return false;
    const st = await lstatOrNull(lockPath);
    return st !== null && st.ino === mine.ino && st.dev === mine.dev;
  };
  return {
    path: file,
    lockPath,
    async touch() {
      if (!(await stillOurs())) throw new MailError('STORAGE_ERROR', `lock ${lockPath} is no longer ours`);
      const now = new Date();
      await fs.utimes(lockPath, now, now);
    },
    isLocked: stillOurs,
    async release() {
      if (done) return false;
      try {
        if (!(await stillOurs())) return false;
        await fs.unlink(lockPath);
        return true;
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return false;
        throw err;
      } finally {
        finish();
      }
    },
    async replace(data, ropts = {}) {
      let ours = false;
      try {
        ours = await stillOurs();
        if (!ours) throw new MailError('STORAGE_ERROR', `lock ${lockPath} was overridden; ${file} not replaced`);
        const perm = await permissionsFor(file);
        const h = await fs.open(lockPath, 'r+');
        try {
          await h.chmod(perm.mode);
          await matchOwner(h, perm);
          await h.truncate(0);
          await h.write(typeof data === 'string' ? Buffer.from(data) : data, 0, undefined, 0);
          if (ropts.mtimeAfter !== undefined) await bumpMtime(h, ropts.mtimeAfter);
          if (ropts.fsync !== false) await h.sync();
        } finally {
          await h.close();
        }
        await fs.rename(lockPath, file);
        ours = false; // the lock file is now the file itself
        if (ropts.fsync !== false) await fsyncDir(path.dirname(file));
      } catch (err) {
        if (ours) await fs.unlink(lockPath).catch(() => {});
        throw err;
      } finally {
        finish();
      }
    },
  };
}
