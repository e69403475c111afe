/**
 * A protocol-neutral status: what the directory, store and queue report about an address or a
 * message, as an RFC 5321 reply code, an RFC 3463 enhanced status code and a text for people.
 * Each protocol renders it once (smtp/replies.ts for SMTP and LMTP replies); the queue keeps its
 * fields for delivery status notifications (RFC 3464 Status and Diagnostic-Code).
 */
import { isMailError, type ErrorCode } from './errors.js';

export interface Status {
  /** RFC 5321 section 4.2 reply code: 2xx done, 4xx try again later, 5xx refused for good. */
  readonly code: number;
  /** RFC 3463 enhanced status code, e.g. "5.1.1"; its class is the first digit of `code`. */
  readonly enhanced: string;
  /** The text after the codes; fixed per status, never a detail of the failure (that is logged). */
  readonly text: string;
}

/**
 * The status as one line, "550 5.1.1 Recipient address rejected: user unknown": the form of an
 * RFC 5321 reply line, of an RFC 3464 "smtp" Diagnostic-Code and of the reply in log lines.
 */
export function statusLine(status: Status): string {
  return `${status.code} ${status.enhanced} ${status.text}`;
}

/** An error that is not a MailError: something unexpected went wrong here, so a client retries. */
export const LOCAL_ERROR: Status = { code: 451, enhanced: '4.3.0', text: 'Local error in processing, try again later' };

/**
 * The one mapping of MailError codes to statuses. The texts are worded as Postfix words its
 * replies, which is what clients and the tests see on the wire and in DSNs.
 */
const BY_ERROR: Readonly<Record<ErrorCode, Status>> = {
  TEMP_FAIL: { code: 451, enhanced: '4.3.0', text: 'Temporary lookup failure, try again later' },
  RECIPIENT_NOT_FOUND: { code: 550, enhanced: '5.1.1', text: 'Recipient address rejected: user unknown' },
  MAILBOX_DISABLED: { code: 550, enhanced: '5.2.1', text: 'Recipient address rejected: mailbox disabled' },
  ALIAS_LOOP: { code: 550, enhanced: '5.4.6', text: 'Recipient address rejected: mail forwarding loop' },
  BAD_ADDRESS: { code: 553, enhanced: '5.1.3', text: 'Recipient address rejected: bad address syntax' },
  QUOTA_FULL: { code: 452, enhanced: '4.2.2', text: 'Mailbox full, try again later' },
  QUOTA_EXCEEDED: { code: 552, enhanced: '5.2.2', text: 'Message exceeds the mailbox quota' },
  MESSAGE_TOO_BIG: { code: 552, enhanced: '5.3.4', text: 'Message size exceeds fixed limit' },
  STORAGE_ERROR: { code: 452, enhanced: '4.3.1', text: 'Insufficient system storage, try again later' },
  RELAY_UNAVAILABLE: {
    code: 451,
    enhanced: '4.3.2',
    text: 'Forwarding to remote destinations is not available, try again later',
  },
  CONFIG_INVALID: { code: 451, enhanced: '4.3.5', text: 'Server configuration error, try again later' },
  NOT_FOUND: { code: 550, enhanced: '5.1.1', text: 'Recipient address rejected: user unknown' },
  ALREADY_EXISTS: { code: 451, enhanced: '4.3.0', text: 'Local error in processing' },
  UNSUPPORTED: { code: 451, enhanced: '4.3.0', text: 'Local error in processing' },
  // Mailbox-side errors; delivery does not raise them, but the table covers every code.
  MAILBOX_NOT_FOUND: { code: 550, enhanced: '5.1.1', text: 'Recipient address rejected: user unknown' },
  BAD_MAILBOX_NAME: { code: 451, enhanced: '4.3.0', text: 'Local error in processing' },
  NOT_PERMITTED: { code: 451, enhanced: '4.3.0', text: 'Local error in processing' },
  EXPUNGED: { code: 451, enhanced: '4.3.0', text: 'Local error in processing' },
  LIMIT: { code: 452, enhanced: '4.5.3', text: 'Too many recipients' },
  IN_USE: { code: 451, enhanced: '4.2.0', text: 'Mailbox busy, try again later' },
  // Raised by the socket front before any session exists (the connection is closed instead).
  PROXY_HEADER: { code: 421, enhanced: '4.7.0', text: 'Connection refused' },
  REJECTED: { code: 550, enhanced: '5.7.1', text: 'Message rejected' },
};

/** The status for an error of the directory, store or queue; anything unexpected is LOCAL_ERROR. */
export function statusFor(err: unknown): Status {
  return isMailError(err) ? (err.reply ?? BY_ERROR[err.code]) : LOCAL_ERROR;
}
