/**
 * One POP3 session per mailbox (RFC 1939 section 8: the server locks the maildrop for the
 * session; RFC 2449 section 8.1.1: a second session is refused with [IN-USE]).
 *
 * Two layers:
 * - In this process, a set of locked Maildirs: a second session is refused at once, without
 *   touching the disk.
 * - Across processes (a second maild on the same mail root, or Dovecot with
 *   `pop3_lock_session = yes`), the lock file Dovecot itself uses for that setting:
 *   `dovecot-pop3-session.lock` in the Maildir root, a dot-lock holding "<pid>:<host>",
 *   taken with O_EXCL (dotlock.ts, which implements Dovecot's file-dotlock.c rules). Dovecot's
 *   values are kept: a lock is stale after 5 minutes without a touch (or at once when its PID on
 *   this host is gone), and a holder touches it while the session lasts (Dovecot every 5 minutes;
 *   here every minute, so that a busy event loop cannot let it go stale). Dovecot waits up to 10 s
 *   for the lock; here a short wait lets a session of another process that is just finishing
 *   its UPDATE go, and a live lock answers [IN-USE] after it.
 * The lock file costs one create and one unlink per login, which is cheap next to the password
 * check; it keeps two processes (or maild and Dovecot) from deleting from under each other.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError, isMailError } from '../../errors.js';
import { acquireDotlock, DotlockTimeoutError, type Dotlock } from '../dovecot/dotlock.js';

export const POP3_LOCK_NAME = 'dovecot-pop3-session.lock';
/** POP3_SESSION_DOTLOCK_STALE_TIMEOUT_SECS in Dovecot's pop3-client.c. */
const STALE_MS = 5 * 60_000;
const TOUCH_MS = 60_000;
/** How long a login waits for another process's session lock before [IN-USE]. */
const DEFAULT_WAIT_MS = 1500;

/** Maildirs with a POP3 session in this process. */
const lockedHere = new Set<string>();

export interface Pop3LockOptions {
  /** Wait this long for a lock another process holds (ms). */
  waitMs?: number;
  /** Called when the lock file was taken away (overridden as stale, deleted): the session should end. */
  onLost?: () => void;
}

export interface Pop3SessionLock {
  readonly maildir: string;
  release(): Promise<void>;
}

/**
 * Locks a user's Maildir for a POP3 session. Throws MailError IN_USE when another session
 * (here or in another process) has it, STORAGE_ERROR when the lock cannot be made at all.
 */
export async function lockPop3Session(maildir: string, opts: Pop3LockOptions = {}): Promise<Pop3SessionLock> {
  const key = path.resolve(maildir);
  if (lockedHere.has(key)) throw new MailError('IN_USE', `${maildir}: a POP3 session of this process has the mailbox`);
  lockedHere.add(key);
  let dotlock: Dotlock;
  try {
    dotlock = await takeFileLock(key, opts.waitMs ?? DEFAULT_WAIT_MS);
  } catch (err) {
    lockedHere.delete(key);
    throw err;
  }
  let released = false;
  const timer = setInterval(() => {
    dotlock.touch().catch(() => {
      if (released) return;
      clearInterval(timer);
      opts.onLost?.();
    });
  }, TOUCH_MS);
  timer.unref();
  return {
    maildir: key,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      try {
        await dotlock.release();
      } finally {
        lockedHere.delete(key);
      }
    },
  };
}

async function takeFileLock(maildir: string, waitMs: number): Promise<Dotlock> {
  const file = path.join(maildir, POP3_LOCK_NAME);
  for (let attempt = 0; ; attempt++) {
    try {
      // The lock is its own "protected file" (Dovecot's lock_suffix = "").
      return await acquireDotlock(file, { suffix: '', staleMs: STALE_MS, timeoutMs: waitMs });
    } catch (err) {
      if (err instanceof DotlockTimeoutError) throw new MailError('IN_USE', `${maildir}: ${err.message}`, { cause: err });
      if (isMailError(err)) throw err;
      // A user who never received mail has no Maildir yet: make its root, as INBOX would be.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && attempt === 0) {
        await fs.mkdir(maildir, { recursive: true, mode: 0o700 }).catch(() => undefined);
        continue;
      }
      throw new MailError('STORAGE_ERROR', `POP3 session lock in ${maildir}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
        cause: err,
      });
    }
  }
}

/** Whether this process has a POP3 session on the Maildir (tests, diagnostics). */
export function isPop3Locked(maildir: string): boolean {
  return lockedHere.has(path.resolve(maildir));
}
