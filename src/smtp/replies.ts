/**
 * The one place where errors become SMTP/LMTP replies. Texts are fixed: what went wrong in
 * detail goes to the log, never to the client (smtp-server sends an error's message verbatim).
 * Each text starts with its RFC 3463 enhanced status code (see connection-patch.ts).
 */
import { headerSafe } from '../directory/address.js';
import { isMailError, type ErrorCode } from '../errors.js';

export interface SmtpReply {
  code: number;
  text: string;
}

const BY_ERROR: Record<ErrorCode, SmtpReply> = {
  TEMP_FAIL: { code: 451, text: '4.3.0 Temporary lookup failure, try again later' },
  RECIPIENT_NOT_FOUND: { code: 550, text: '5.1.1 Recipient address rejected: user unknown' },
  MAILBOX_DISABLED: { code: 550, text: '5.2.1 Recipient address rejected: mailbox disabled' },
  ALIAS_LOOP: { code: 550, text: '5.4.6 Recipient address rejected: mail forwarding loop' },
  BAD_ADDRESS: { code: 553, text: '5.1.3 Recipient address rejected: bad address syntax' },
  QUOTA_FULL: { code: 452, text: '4.2.2 Mailbox full, try again later' },
  QUOTA_EXCEEDED: { code: 552, text: '5.2.2 Message exceeds the mailbox quota' },
  MESSAGE_TOO_BIG: { code: 552, text: '5.3.4 Message size exceeds fixed limit' },
  STORAGE_ERROR: { code: 452, text: '4.3.1 Insufficient system storage, try again later' },
  RELAY_UNAVAILABLE: { code: 451, text: '4.3.2 Forwarding to remote destinations is not available, try again later' },
  CONFIG_INVALID: { code: 451, text: '4.3.5 Server configuration error, try again later' },
  NOT_FOUND: { code: 550, text: '5.1.1 Recipient address rejected: user unknown' },
  ALREADY_EXISTS: { code: 451, text: '4.3.0 Local error in processing' },
  UNSUPPORTED: { code: 451, text: '4.3.0 Local error in processing' },
  // Mailbox-side errors; SMTP delivery does not raise them, but the table covers every code.
  MAILBOX_NOT_FOUND: { code: 550, text: '5.1.1 Recipient address rejected: user unknown' },
  BAD_MAILBOX_NAME: { code: 451, text: '4.3.0 Local error in processing' },
  NOT_PERMITTED: { code: 451, text: '4.3.0 Local error in processing' },
  EXPUNGED: { code: 451, text: '4.3.0 Local error in processing' },
  LIMIT: { code: 452, text: '4.5.3 Too many recipients' },
  IN_USE: { code: 451, text: '4.2.0 Mailbox busy, try again later' },
  // Raised by the socket front before any session exists (the connection is closed instead).
  PROXY_HEADER: { code: 421, text: '4.7.0 Connection refused' },
};

export const RELAY_DENIED: SmtpReply = { code: 554, text: '5.7.1 Relay access denied' };
export const TOO_MANY_CONNECTIONS: SmtpReply = { code: 421, text: '4.7.0 Too many connections from your address, try again later' };
// Deadlines (connection-patch.ts); RFC 3463 section 3.5: X.4.2 is a timeout.
export const DATA_TIMEOUT: SmtpReply = { code: 421, text: '4.4.2 Timeout: message data too slow, closing connection' };
export const SESSION_TIMEOUT: SmtpReply = { code: 421, text: '4.4.2 Timeout: session too long, closing connection' };
export const LOCAL_ERROR: SmtpReply = { code: 451, text: '4.3.0 Local error in processing, try again later' };

// Submission (RFC 6409) and AUTH (RFC 4954 section 6) replies, worded as Postfix words them.
export const STARTTLS_FIRST: SmtpReply = { code: 530, text: '5.7.0 Must issue a STARTTLS command first' };
export const AUTH_REQUIRED: SmtpReply = { code: 530, text: '5.7.0 Authentication required' };
export const AUTH_INVALID: SmtpReply = { code: 535, text: '5.7.8 Authentication credentials invalid' };
export const AUTH_TEMPORARY: SmtpReply = { code: 454, text: '4.7.0 Temporary authentication failure' };
export const RATE_LIMITED: SmtpReply = { code: 450, text: '4.7.1 Recipient rate limit exceeded, try again later' };

/**
 * An envelope sender or From: address the authenticated user may not use (Postfix's
 * reject_sender_login_mismatch). Thrown by submission's sender checks, also from the queue's
 * beforeCommit hook, and answered with 553 5.7.1.
 */
export class SenderNotOwnedError extends Error {
  readonly login: string;
  readonly address: string;
  constructor(login: string, address: string, where: 'envelope' | 'From:') {
    super(`${where} address <${address}> not owned by user ${login}`);
    this.name = 'SenderNotOwnedError';
    this.login = login;
    this.address = address;
  }
}

export function senderNotOwned(login: string): SmtpReply {
  return { code: 553, text: `5.7.1 Sender address rejected: not owned by user ${headerSafe(login).slice(0, 256)}` };
}

/** The reply for an error thrown below the protocol; anything unexpected is a temporary local error. */
export function replyFor(err: unknown): SmtpReply {
  if (err instanceof SenderNotOwnedError) return senderNotOwned(err.login);
  return isMailError(err) ? BY_ERROR[err.code] : LOCAL_ERROR;
}

/** An Error that smtp-server turns into exactly this reply. */
export function replyError(reply: SmtpReply): Error & { responseCode: number } {
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}
