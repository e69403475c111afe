import { decodeBase64, decodeSaslPlain, logLoginRefused } from '../../auth/login.js';
import { NOT_AUTHENTICATED, type ImapCommand } from '../command.js';
import { ParseError, atom } from '../parser.js';
import type { ImapSession } from '../session.js';
import { completeLogin } from './login-common.js';

/** Reads one client response of the exchange; '*' cancels (RFC 3501 section 6.2.2). */
async function challenge(session: ImapSession, text: string): Promise<Buffer | 'cancel' | 'invalid'> {
  session.writer.continuation(text);
  const line = await session.readLine();
  if (line === null) return 'cancel';
  const s = line.toString('latin1');
  if (s === '*') return 'cancel';
  return decodeBase64(s) ?? 'invalid';
}

/** AUTHENTICATE PLAIN and LOGIN, with an initial response (SASL-IR, RFC 4959). */
export const authenticate: ImapCommand = {
  name: 'AUTHENTICATE',
  states: NOT_AUTHENTICATED,
  async run(session, command) {
    const mechanism = atom(command.args[0], 'mechanism').toUpperCase();
    if (command.args.length > 2) throw new ParseError('too many arguments');
    if (mechanism !== 'PLAIN' && mechanism !== 'LOGIN')
      return { status: 'NO', text: `Unsupported authentication mechanism ${mechanism.slice(0, 20)}` };
    if (!session.cleartextAllowed) {
      logLoginRefused(session.log, 'imap', '', 'cleartext');
      return { status: 'NO', code: 'PRIVACYREQUIRED', text: 'Use STARTTLS (or port 993) before logging in' };
    }
    const irToken = command.args[1];
    let initial: Buffer | undefined;
    if (irToken) {
      const decoded = decodeBase64(atom(irToken, 'initial response'));
      if (!decoded) return { status: 'BAD', text: 'Invalid base64 in the initial response' };
      initial = decoded;
    }
    if (mechanism === 'PLAIN') {
      const data = initial ?? (await challenge(session, ''));
      if (data === 'cancel') return { status: 'BAD', text: 'Authentication cancelled' };
      if (data === 'invalid') return { status: 'BAD', text: 'Invalid base64' };
      const plain = decodeSaslPlain(data);
      if (!plain) return { status: 'NO', code: 'AUTHENTICATIONFAILED', text: 'Authentication failed.' };
      return completeLogin(session, plain.username, plain.password, 'PLAIN', plain.authzid);
    }
    const user = initial ?? (await challenge(session, Buffer.from('Username:').toString('base64')));
    if (user === 'cancel') return { status: 'BAD', text: 'Authentication cancelled' };
    if (user === 'invalid') return { status: 'BAD', text: 'Invalid base64' };
    const pass = await challenge(session, Buffer.from('Password:').toString('base64'));
    if (pass === 'cancel') return { status: 'BAD', text: 'Authentication cancelled' };
    if (pass === 'invalid') return { status: 'BAD', text: 'Invalid base64' };
    return completeLogin(session, user.toString('utf8'), pass.toString('utf8'), 'LOGIN');
  },
};
