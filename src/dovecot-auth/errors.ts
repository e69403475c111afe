/**
 * Every way a dovecot-auth request or connection ends badly, mapped to its reply in this one
 * place. A failed request gets `FAIL <id>` with a reason; a client that breaks the protocol
 * itself (bad handshake, duplicate id, overlong line) is disconnected, as Dovecot does with its
 * "BUG: Authentication client ..." errors.
 *
 * A temporary failure (the directory is down, too many requests) also ends the connection
 * instead of answering `FAIL <id> temp`: Postfix's client (xsasl_dovecot_server.c) ignores
 * `temp` and answers every FAIL with 535 5.7.8, which tells the user the password was wrong; it
 * answers 454 4.7.0 (RFC 4954 section 6, try again later) only when it loses the connection to
 * the auth server. It reconnects for its next AUTH.
 */
import { isMailError } from '../errors.js';
import { line, tabEscape } from './wire.js';

export type FailCode =
  /** Wrong user name or password, or a disabled user (the client learns nothing more). */
  | 'AUTH_FAILED'
  /** The directory cannot answer now (MySQL down). */
  | 'TEMP_FAIL'
  /** A password over a connection the client says is not secured (Dovecot's disable_plaintext_auth). */
  | 'PLAINTEXT_DISABLED'
  | 'UNSUPPORTED_MECHANISM'
  | 'MISSING_SERVICE'
  | 'INVALID_BASE64'
  /** Decodable, but not what the mechanism expects (PLAIN without its NUL separators). */
  | 'MALFORMED_RESPONSE'
  /** PLAIN's authorization identity names another user. */
  | 'AUTHZ_REFUSED'
  /** CONT for an id that is not (or no longer) pending. */
  | 'UNKNOWN_REQUEST'
  | 'TOO_MANY_REQUESTS';

const FAILS: Record<FailCode, { reason: string; temp: boolean }> = {
  AUTH_FAILED: { reason: 'Authentication failed.', temp: false },
  TEMP_FAIL: { reason: 'Temporary authentication failure, try again later.', temp: true },
  PLAINTEXT_DISABLED: { reason: 'Plaintext authentication disallowed on non-secure (SSL/TLS) connections.', temp: false },
  UNSUPPORTED_MECHANISM: { reason: 'Unsupported authentication mechanism.', temp: false },
  MISSING_SERVICE: { reason: 'Missing service parameter.', temp: false },
  INVALID_BASE64: { reason: 'Invalid base64 data in the response.', temp: false },
  MALFORMED_RESPONSE: { reason: 'Invalid authentication response.', temp: false },
  AUTHZ_REFUSED: { reason: 'Authentication failed.', temp: false },
  // Dovecot's words for the same case ("timeouted"), in plainer English.
  UNKNOWN_REQUEST: { reason: 'Authentication request timed out.', temp: false },
  TOO_MANY_REQUESTS: { reason: 'Too many authentication requests in progress, try again later.', temp: true },
};

/** A request that ends with FAIL. */
export class RequestFailed extends Error {
  readonly code: FailCode;
  readonly user: string | undefined;
  constructor(code: FailCode, user?: string) {
    super(code);
    this.name = 'RequestFailed';
    this.code = code;
    this.user = user;
  }
}

/** The client broke the protocol: the connection is closed. The message is for the log. */
export class ProtocolViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

/**
 * What a request that ended with `err` gets: its FAIL line, or (temporary failures, anything
 * unexpected) the end of the connection, with the reason for the log.
 */
export function replyForError(id: string, err: unknown): { line: string } | { disconnect: string } {
  const code: FailCode = err instanceof RequestFailed ? err.code : isMailError(err) && !err.temporary ? 'AUTH_FAILED' : 'TEMP_FAIL';
  const { reason, temp } = FAILS[code];
  if (temp) return { disconnect: reason };
  const fields = ['FAIL', id];
  const user = err instanceof RequestFailed ? err.user : undefined;
  if (user) fields.push(`user=${tabEscape(user.slice(0, 256))}`);
  fields.push(`reason=${reason}`);
  return { line: line(...fields) };
}

/** Whether `err` is one of ours (expected) rather than a bug to log with its stack. */
export function isExpected(err: unknown): boolean {
  return err instanceof RequestFailed || (isMailError(err) && err.temporary);
}
