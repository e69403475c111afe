/**
 * SMTP and LMTP replies: the statuses this listener answers with, and the one place where a
 * status (src/status.ts) becomes reply text. Texts are fixed: what went wrong in detail goes to
 * the log, never to the client (smtp-server sends an error's message verbatim). A rendered text
 * starts with its RFC 3463 enhanced status code (see connection-patch.ts).
 */
import { headerSafe } from '../directory/address.js';
import { statusFor, type Status } from '../status.js';

export const RELAY_DENIED: Status = { code: 554, enhanced: '5.7.1', text: 'Relay access denied' };
export const TOO_MANY_CONNECTIONS: Status = {
  code: 421,
  enhanced: '4.7.0',
  text: 'Too many connections from your address, try again later',
};
// Postfix's smtpd_hard_error_limit (connection-patch.ts).
export const TOO_MANY_ERRORS: Status = { code: 421, enhanced: '4.7.0', text: 'Too many errors, closing connection' };
// Deadlines (connection-patch.ts); RFC 3463 section 3.5: X.4.2 is a timeout.
export const DATA_TIMEOUT: Status = { code: 421, enhanced: '4.4.2', text: 'Timeout: message data too slow, closing connection' };
export const SESSION_TIMEOUT: Status = { code: 421, enhanced: '4.4.2', text: 'Timeout: session too long, closing connection' };

// Submission (RFC 6409) and AUTH (RFC 4954 section 6) replies, worded as Postfix words them.
export const STARTTLS_FIRST: Status = { code: 530, enhanced: '5.7.0', text: 'Must issue a STARTTLS command first' };
export const AUTH_REQUIRED: Status = { code: 530, enhanced: '5.7.0', text: 'Authentication required' };
export const AUTH_INVALID: Status = { code: 535, enhanced: '5.7.8', text: 'Authentication credentials invalid' };
export const AUTH_TEMPORARY: Status = { code: 454, enhanced: '4.7.0', text: 'Temporary authentication failure' };
/** The inbound checks refused the message without a text of their own, or could not run (Postfix: milter reject / tempfail). */
export const CHECKS_REJECTED: Status = { code: 550, enhanced: '5.7.1', text: 'Message content rejected' };
export const CHECKS_UNAVAILABLE: Status = { code: 451, enhanced: '4.7.1', text: 'Service unavailable - try again later' };
export const RATE_LIMITED: Status = { code: 450, enhanced: '4.7.1', text: 'Recipient rate limit exceeded, try again later' };

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

function senderNotOwned(login: string): Status {
  return { code: 553, enhanced: '5.7.1', text: `Sender address rejected: not owned by user ${headerSafe(login).slice(0, 256)}` };
}

/** The status for an error thrown below the protocol (src/status.ts), or by submission's checks. */
export function replyFor(err: unknown): Status {
  if (err instanceof SenderNotOwnedError) return senderNotOwned(err.login);
  return statusFor(err);
}

/** The reply text after the code, as smtp-server sends it: "5.1.1 Recipient address rejected: ...". */
export function replyText(status: Status): string {
  return `${status.enhanced} ${status.text}`;
}

/** An Error that smtp-server turns into exactly this reply. */
export function replyError(status: Status): Error & { responseCode: number } {
  return Object.assign(new Error(replyText(status)), { responseCode: status.code });
}
