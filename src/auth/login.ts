/**
 * Password login for every protocol (IMAP, POP3, submission): waits out the failed-login delay
 * of the client's address, asks the directory, counts failures. The protocol maps the outcome
 * to its own replies.
 */
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import { isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AuthLimiter } from './limiter.js';

export type LoginOutcome = { ok: true; user: UserRecord } | { ok: false; temporary: boolean };

export async function passwordLogin(
  deps: { directory: Directory; limiter: AuthLimiter; log: Logger; maxDelayMs?: number },
  ip: string,
  username: string,
  password: string,
  protocol: string,
): Promise<LoginOutcome> {
  await deps.limiter.wait(ip, deps.maxDelayMs);
  let result;
  try {
    result = await deps.directory.authenticate(username, password);
  } catch (err) {
    if (isMailError(err) && err.temporary) {
      deps.log.warn({ user: username, err: err.message }, 'login: directory unavailable');
      return { ok: false, temporary: true };
    }
    throw err;
  }
  if (!result.ok) {
    deps.limiter.recordFailure(ip);
    // The reason is for the log only: clients learn nothing about which part was wrong.
    deps.log.info(
      { user: username.slice(0, 256), ip, protocol, reason: result.reason, failures: deps.limiter.failures(ip) },
      'login failed',
    );
    return { ok: false, temporary: false };
  }
  deps.limiter.recordSuccess(ip);
  return { ok: true, user: result.user };
}

/**
 * Why a login was refused other than for its credentials (those are logged by passwordLogin as
 * "login failed"): 'cleartext' (a password before TLS), 'authzid' (authorization as another
 * user), 'in-use' (POP3 session lock), 'login-delay' (RFC 2449 LOGIN-DELAY).
 */
export type LoginRefusal = 'cleartext' | 'authzid' | 'in-use' | 'login-delay';

/** The log line of a refused login: at info, with the user (when known yet) and the reason. */
export function logLoginRefused(log: Logger, protocol: string, user: string, reason: LoginRefusal): void {
  log.info({ user: user.slice(0, 256), protocol, reason }, 'login refused');
}

/**
 * May a password cross this connection (RFC 8314, RFC 3501 section 6.2.3, RFC 2595 section 2.1,
 * RFC 4954 section 4)? Over TLS always; in cleartext only where auth.cleartext allows it for
 * trusted networks and the client is in one. The one rule for IMAP, POP3 and submission.
 */
export function passwordsAllowed(secure: boolean, cleartextAuth: 'never' | 'trusted', trusted: boolean): boolean {
  return secure || (cleartextAuth === 'trusted' && trusted);
}

/** Decodes SASL PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. */
export function decodeSaslPlain(data: Buffer): { authzid: string; username: string; password: string } | undefined {
  const parts = data.toString('utf8').split('\u0000');
  if (parts.length !== 3) return undefined;
  const [authzid, username, password] = parts as [string, string, string];
  if (!username || !password) return undefined;
  return { authzid, username, password };
}

/** Strict base64 (RFC 4648), as SASL requires; undefined when invalid. */
export function decodeBase64(text: string): Buffer | undefined {
  const t = text.trim();
  if (t === '=') return Buffer.alloc(0);
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(t)) return undefined;
  return Buffer.from(t, 'base64');
}
