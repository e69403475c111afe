/**
 * The one place where errors become ManageSieve responses (RFC 5804 section 1.3): NO or BYE,
 * with a response code in parentheses where one applies:
 * - (NONEXISTENT), (ALREADYEXISTS), (ACTIVE): the script store's refusals (sections 1.3, 2.9-2.11);
 * - (QUOTA/MAXSCRIPTS), (QUOTA/MAXSIZE) (section 1.3), (QUOTA/MAXSTORAGE): the quotas, the
 *   last one Pigeonhole's code below RFC 5804's QUOTA (clients match the QUOTA prefix);
 * - (TRYLATER): the directory or the storage cannot answer now;
 * - (ENCRYPT-NEEDED): a password before TLS; (AUTH-TOO-WEAK) is not used.
 * What the client reads is fixed text; the detail goes to the log.
 */
import { isMailError } from '../errors.js';
import { SieveStoreError } from '../store/sieve-scripts.js';
import { ParseError } from './parser.js';

/** A refusal the session sends as it is. `bad` counts towards the bad-command limit. */
export class ManageSieveError extends Error {
  readonly code: string | undefined;
  readonly bad: boolean;
  constructor(text: string, opts: { code?: string; bad?: boolean } = {}) {
    super(text);
    this.name = 'ManageSieveError';
    this.code = opts.code;
    this.bad = opts.bad ?? false;
  }
}

export interface ManageSieveReply {
  code?: string;
  text: string;
  /** Counts towards the bad-command limit. */
  bad: boolean;
  /** Not a refusal but a bug or an unknown failure: logged as an error. */
  unexpected: boolean;
}

export const AUTH_FAILED = 'Authentication failed.';
export const TRYLATER_TEXT = 'Temporary failure, try again later.';

export function replyForError(err: unknown): ManageSieveReply {
  if (err instanceof ManageSieveError)
    return { ...(err.code ? { code: err.code } : {}), text: err.message, bad: err.bad, unexpected: false };
  if (err instanceof ParseError) return { text: err.message, bad: true, unexpected: false };
  if (err instanceof SieveStoreError) {
    return { ...(err.code === 'BADNAME' ? {} : { code: err.code }), text: err.message, bad: false, unexpected: false };
  }
  if (isMailError(err) && err.temporary) return { code: 'TRYLATER', text: TRYLATER_TEXT, bad: false, unexpected: false };
  // An I/O error of the storage (EACCES, EIO, ENOSPC, ...): a retry after the administrator fixed it succeeds.
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall) {
    return { code: 'TRYLATER', text: 'Script storage unavailable, try again later.', bad: false, unexpected: true };
  }
  return { text: 'Internal error occurred. Refer to server log for more information.', bad: false, unexpected: true };
}
