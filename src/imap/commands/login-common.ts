import { logLoginRefused, passwordLogin } from '../../auth/login.js';
import type { CommandResult } from '../command.js';
import type { ImapSession } from '../session.js';

/** The shared end of LOGIN and AUTHENTICATE: checks, logs in, answers with the new capabilities. */
export async function completeLogin(
  session: ImapSession,
  username: string,
  password: string,
  mechanism: string,
  authzid = '',
): Promise<CommandResult> {
  if (!session.cleartextAllowed) {
    logLoginRefused(session.log, 'imap', username, 'cleartext');
    return { status: 'NO', code: 'PRIVACYREQUIRED', text: 'Use STARTTLS (or port 993) before logging in' };
  }
  if (authzid && authzid.toLowerCase() !== username.toLowerCase()) {
    logLoginRefused(session.log, 'imap', username, 'authzid');
    return { status: 'NO', code: 'AUTHORIZATIONFAILED', text: 'Authorization as another user is not allowed' };
  }
  const outcome = await passwordLogin(
    { directory: session.ctx.directory, limiter: session.ctx.limiter, log: session.log },
    session.ip,
    username,
    password,
    'imap',
  );
  if (!outcome.ok) {
    return outcome.temporary
      ? { status: 'NO', code: 'UNAVAILABLE', text: 'Temporary authentication failure, try again later' }
      : { status: 'NO', code: 'AUTHENTICATIONFAILED', text: 'Authentication failed.' };
  }
  const refusal = await session.login(outcome.user, mechanism);
  if (refusal) return { status: 'NO', code: refusal.code, text: refusal.text };
  return { status: 'OK', code: `CAPABILITY ${session.capabilities().join(' ')}`, text: 'Logged in' };
}
