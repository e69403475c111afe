import { decodeBase64, decodeSaslPlain } from '../../auth/login.js';
import { AUTHORIZATION, splitArgs, type Pop3Command } from '../command.js';
import { AUTH_FAILED, Pop3Error } from '../errors.js';
import type { Pop3Session } from '../session.js';
import { completeLogin, requirePrivacy } from './login-common.js';

const MECHANISMS = ['PLAIN', 'LOGIN'];

/** One client response of the exchange (RFC 5034 section 4); a line of "*" cancels. */
async function challenge(session: Pop3Session, base64: string): Promise<Buffer> {
  session.writer.continuation(base64);
  const input = await session.readLine();
  if (input === null) throw new Pop3Error('Connection closed.', { bad: false });
  if ('tooLong' in input) throw new Pop3Error('Line too long.');
  const text = input.line.toString('latin1');
  if (text.trim() === '*') throw new Pop3Error('Authentication cancelled.', { bad: false });
  const decoded = decodeBase64(text);
  if (!decoded) throw new Pop3Error('Invalid base64 data in the response.');
  return decoded;
}

/**
 * AUTH (RFC 5034): SASL PLAIN and LOGIN, with an initial response ("=" for an empty one).
 * Without an argument it lists the mechanisms, one per line, as Dovecot does for the clients
 * (Outlook) that discover them that way; before TLS that list is empty, as CAPA's SASL is absent.
 */
export const auth: Pop3Command = {
  name: 'AUTH',
  states: AUTHORIZATION,
  async run(session, args) {
    const parts = splitArgs(args);
    if (parts.length === 0) {
      session.writer.ok();
      await session.writer.lines(session.cleartextAllowed ? MECHANISMS : []);
      return;
    }
    if (parts.length > 2) throw new Pop3Error('Too many arguments.');
    const mechanism = parts[0]!.toUpperCase();
    if (!MECHANISMS.includes(mechanism)) throw new Pop3Error('Unsupported authentication mechanism.');
    requirePrivacy(session);
    session.pendingUser = undefined;
    let initial: Buffer | undefined;
    if (parts[1] !== undefined) {
      initial = decodeBase64(parts[1]);
      if (!initial) throw new Pop3Error('Invalid base64 data in the initial response.');
    }
    if (mechanism === 'PLAIN') {
      const data = initial ?? (await challenge(session, ''));
      const plain = decodeSaslPlain(data);
      if (!plain) throw new Pop3Error(AUTH_FAILED, { code: 'AUTH', bad: false });
      await completeLogin(session, plain.username, plain.password, 'PLAIN', plain.authzid);
      return;
    }
    const username = initial ?? (await challenge(session, Buffer.from('Username:').toString('base64')));
    const password = await challenge(session, Buffer.from('Password:').toString('base64'));
    await completeLogin(session, username.toString('utf8'), password.toString('utf8'), 'LOGIN');
  },
};
