/**
 * The one place where errors become POP3 replies. Every failure is "-ERR" (RFC 1939 section 3);
 * the extended response codes go in brackets right after it (RFC 2449 section 8):
 * - [IN-USE]: another session has the maildrop (section 8.1.1);
 * - [LOGIN-DELAY]: logging in too often (section 8.1.2);
 * - [AUTH]: the credentials were wrong, or may not be used here (RFC 3206 section 4);
 * - [SYS/TEMP]: a temporary system problem, such as the directory or the store being down
 *   (RFC 3206 section 5); [SYS/PERM]: a problem that will not go away by itself.
 * What the client reads is fixed text; the detail goes to the log.
 */
import { isMailError, type ErrorCode } from '../errors.js';

/** A refusal the session sends as it is. `bad` counts towards the bad-command limit. */
export class Pop3Error extends Error {
  readonly code: string | undefined;
  readonly bad: boolean;
  constructor(text: string, opts: { code?: string; bad?: boolean } = {}) {
    super(text);
    this.name = 'Pop3Error';
    this.code = opts.code;
    this.bad = opts.bad ?? true;
  }
}

/**
 * A failure after a multi-line response had begun (a message file that could not be read to
 * its end): no -ERR can follow a partial response, so the session closes the connection.
 */
export class BrokenResponseError extends Error {
  constructor(what: string, cause: unknown) {
    super(`${what}: ${(cause as Error)?.message ?? cause}`, { cause });
    this.name = 'BrokenResponseError';
  }
}

/** Dovecot's wording, which clients and their users have seen for years. */
export const PLAINTEXT_DISALLOWED = 'Plaintext authentication disallowed on non-secure (SSL/TLS) connections.';
export const AUTH_FAILED = 'Authentication failed.';

export interface Pop3Reply {
  code?: string;
  text: string;
  /** Counts towards the bad-command limit. */
  bad: boolean;
  /** Not a refusal but a bug or an unknown failure: logged as an error. */
  unexpected: boolean;
}

const BY_ERROR: Partial<Record<ErrorCode, { code?: string; text: string }>> = {
  TEMP_FAIL: { code: 'SYS/TEMP', text: 'Temporary failure, try again later.' },
  STORAGE_ERROR: { code: 'SYS/TEMP', text: 'Mail store unavailable, try again later.' },
  QUOTA_FULL: { code: 'SYS/TEMP', text: 'Mail store unavailable, try again later.' },
  IN_USE: { code: 'IN-USE', text: 'Mailbox is locked by another POP3 session.' },
  MAILBOX_NOT_FOUND: { code: 'SYS/PERM', text: 'Mailbox is not available.' },
  // Expunged over IMAP during this session: the number stays in the listing, the message is gone.
  EXPUNGED: { text: 'Message was removed by another session.' },
  CONFIG_INVALID: { code: 'SYS/PERM', text: 'Server configuration error.' },
};

/** Maps a thrown error to the -ERR reply. */
export function replyForError(err: unknown): Pop3Reply {
  if (err instanceof Pop3Error) return { ...(err.code ? { code: err.code } : {}), text: err.message, bad: err.bad, unexpected: false };
  if (isMailError(err)) {
    const mapped = BY_ERROR[err.code];
    if (mapped) return { ...mapped, bad: false, unexpected: false };
  }
  // An I/O error of the store that is not a MailError (EACCES, EIO, ...) is temporary for the
  // client: a retry after the administrator fixed it succeeds.
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall) {
    return { code: 'SYS/TEMP', text: 'Mail store unavailable, try again later.', bad: false, unexpected: true };
  }
  return { code: 'SYS/PERM', text: 'Internal error occurred. Refer to server log for more information.', bad: false, unexpected: true };
}
