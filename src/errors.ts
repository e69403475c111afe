/**
 * Typed errors with stable codes. Lower layers (directory, store, queue) throw these; each
 * protocol maps them to replies in exactly one place: SMTP, LMTP and the queue's delivery
 * reports through the statuses of status.ts (rendered by smtp/replies.ts), IMAP and POP3 in
 * their errors.ts. The message is for logs; what a client sees comes from the mapping.
 */
export type ErrorCode =
  /** A dependency (MySQL, the directory file) is unavailable: retry later. */
  | 'TEMP_FAIL'
  /** The address does not exist in a hosted domain. */
  | 'RECIPIENT_NOT_FOUND'
  /** The mailbox exists but is disabled (enable = 0). */
  | 'MAILBOX_DISABLED'
  /** Alias expansion looped or went deeper/wider than the limits. */
  | 'ALIAS_LOOP'
  /** The address is syntactically unusable or could escape the mail root. */
  | 'BAD_ADDRESS'
  /** The mailbox is already at or over its quota. */
  | 'QUOTA_FULL'
  /** This message would take the mailbox over its quota. */
  | 'QUOTA_EXCEEDED'
  /** The message is larger than the configured limit. */
  | 'MESSAGE_TOO_BIG'
  /** Writing to the mail store failed (disk full, I/O error). */
  | 'STORAGE_ERROR'
  /** Remote delivery is not available in this build or configuration. */
  | 'RELAY_UNAVAILABLE'
  /** A configuration or directory file is invalid. */
  | 'CONFIG_INVALID'
  /** An administrative object (domain, user, alias) does not exist. */
  | 'NOT_FOUND'
  /** An administrative object already exists. */
  | 'ALREADY_EXISTS'
  /** An operation is not supported by this backend. */
  | 'UNSUPPORTED'
  /** The mailbox (folder) does not exist. */
  | 'MAILBOX_NOT_FOUND'
  /** A mailbox name that is invalid or could escape the user's Maildir. */
  | 'BAD_MAILBOX_NAME'
  /** The operation is not allowed on this object (deleting INBOX, writing a read-only mailbox). */
  | 'NOT_PERMITTED'
  /** The messages asked for were expunged meanwhile. */
  | 'EXPUNGED'
  /** A per-user or per-session limit was reached. */
  | 'LIMIT'
  /** Another session holds the mailbox exclusively (POP3). */
  | 'IN_USE'
  /** A PROXY protocol header is missing, malformed, too long, too slow or from an address not allowed to send one. */
  | 'PROXY_HEADER'
  /** The recipient's filter refused the message (Sieve reject, RFC 5429). */
  | 'REJECTED';

const TEMPORARY: ReadonlySet<ErrorCode> = new Set(['TEMP_FAIL', 'QUOTA_FULL', 'STORAGE_ERROR', 'RELAY_UNAVAILABLE']);

export class MailError extends Error {
  readonly code: ErrorCode;
  /** A reply of its own instead of the code's (a Sieve reject's reason). */
  readonly reply?: { code: number; enhanced: string; text: string };
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; reply?: { code: number; enhanced: string; text: string } }) {
    super(message, options);
    this.name = 'MailError';
    this.code = code;
    if (options?.reply) this.reply = options.reply;
  }
  /** True when the condition may clear by itself, so a client should retry (4xx, NO [UNAVAILABLE]). */
  get temporary(): boolean {
    return TEMPORARY.has(this.code);
  }
}

export function isMailError(err: unknown, code?: ErrorCode): err is MailError {
  return err instanceof MailError && (code === undefined || err.code === code);
}

export const tempFail = (message: string, cause?: unknown) => new MailError('TEMP_FAIL', message, { cause });

/** A file system error as STORAGE_ERROR naming what failed and the errno code; a MailError passes as it is. */
export function storageError(err: unknown, what: string): MailError {
  if (isMailError(err)) return err;
  const code = (err as NodeJS.ErrnoException)?.code ?? String(err);
  return new MailError('STORAGE_ERROR', `${what}: ${code}`, { cause: err });
}
