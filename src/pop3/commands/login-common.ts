import { logLoginRefused, passwordLogin } from '../../auth/login.js';
import { AUTH_FAILED, PLAINTEXT_DISALLOWED, Pop3Error } from '../errors.js';
import type { Pop3Session } from '../session.js';

/**
 * Refuses passwords on a connection without TLS where cleartext is not allowed (RFC 2595
 * section 2.1); `user` is the login when known yet, for the log.
 */
export function requirePrivacy(session: Pop3Session, user = ''): void {
  if (session.cleartextAllowed) return;
  logLoginRefused(session.log, 'pop3', user, 'cleartext');
  throw new Pop3Error(PLAINTEXT_DISALLOWED, { code: 'AUTH', bad: false });
}

/**
 * The shared end of PASS and AUTH: the password check (with the failed-login delay shared with
 * IMAP), then the maildrop. Wrong credentials are -ERR [AUTH] (RFC 3206 section 4), a directory
 * that cannot answer is -ERR [SYS/TEMP] (section 5), so a client asks for the password again
 * only when the password was wrong.
 */
export async function completeLogin(
  session: Pop3Session,
  username: string,
  password: string,
  mechanism: string,
  authzid = '',
): Promise<void> {
  requirePrivacy(session, username);
  if (authzid && authzid.toLowerCase() !== username.toLowerCase()) {
    logLoginRefused(session.log, 'pop3', username, 'authzid');
    throw new Pop3Error(AUTH_FAILED, { code: 'AUTH', bad: false });
  }
  const outcome = await passwordLogin(
    { directory: session.ctx.directory, limiter: session.ctx.limiter, log: session.log },
    session.ip,
    username,
    password,
    'pop3',
  );
  if (!outcome.ok) {
    throw outcome.temporary
      ? new Pop3Error('Temporary authentication failure, try again later.', { code: 'SYS/TEMP', bad: false })
      : new Pop3Error(AUTH_FAILED, { code: 'AUTH', bad: false });
  }
  await session.loggedIn(outcome.user, mechanism);
  if (session.closed) return;
  session.writer.ok('Logged in.');
}
