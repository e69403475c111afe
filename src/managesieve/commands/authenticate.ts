import { decodeBase64, decodeSaslPlain, logLoginRefused, passwordLogin } from '../../auth/login.js';
import { UNAUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { AUTH_FAILED, ManageSieveError, TRYLATER_TEXT } from '../errors.js';
import { ParseError, stringArg, textArg, type Token } from '../parser.js';
import type { ManageSieveSession } from '../session.js';
import { sieveString } from '../writer.js';

const MECHANISMS = ['PLAIN', 'LOGIN'];

/** The base64 of a client response; "*" cancels (RFC 5804 section 2.1). */
function decodeResponse(data: Buffer, what: string): Buffer {
  const text = data.toString('latin1');
  if (text === '*') throw new ManageSieveError('Authentication cancelled.');
  const decoded = decodeBase64(text);
  if (!decoded) throw new ManageSieveError(`Invalid base64 data in the ${what}.`, { bad: true });
  return decoded;
}

/** One challenge and the client's response (a string, RFC 5804 section 2.1). */
async function challenge(session: ManageSieveSession, prompt: string): Promise<Buffer> {
  session.writer.line(sieveString(Buffer.from(prompt).toString('base64')));
  const tokens = await session.readResponse();
  if (tokens === null) throw new ManageSieveError('Connection closed.');
  const first = tokens[0];
  if (tokens.length !== 1 || !first) throw new ManageSieveError('Expected one string as the response.', { bad: true });
  return decodeResponse(first.kind === 'string' ? first.data : Buffer.from(first.text, 'latin1'), 'response');
}

async function login(session: ManageSieveSession, username: string, password: string, mechanism: string, authzid = ''): Promise<void> {
  if (authzid && authzid.toLowerCase() !== username.toLowerCase()) {
    logLoginRefused(session.log, 'managesieve', username, 'authzid');
    throw new ManageSieveError(AUTH_FAILED);
  }
  const outcome = await passwordLogin(
    { directory: session.ctx.directory, limiter: session.ctx.limiter, log: session.log },
    session.ip,
    username,
    password,
    'managesieve',
  );
  if (!outcome.ok) throw outcome.temporary ? new ManageSieveError(TRYLATER_TEXT, { code: 'TRYLATER' }) : new ManageSieveError(AUTH_FAILED);
  if (session.closed) return;
  session.loggedIn(outcome.user, mechanism);
  session.writer.ok('Logged in.');
}

/**
 * AUTHENTICATE (RFC 5804 section 2.1) with SASL PLAIN (RFC 4616) and LOGIN, with or without an
 * initial response; passwords only over TLS unless auth.cleartext allows them here, as IMAP.
 */
export const authenticate: ManageSieveCommand = {
  name: 'AUTHENTICATE',
  states: UNAUTHENTICATED,
  async run(session, args: Token[]) {
    const mechanism = textArg(args, 0, 'mechanism').toUpperCase();
    if (args.length > 2) throw new ParseError('Too many arguments');
    if (!MECHANISMS.includes(mechanism)) throw new ManageSieveError('Unsupported authentication mechanism.');
    if (!session.cleartextAllowed) {
      logLoginRefused(session.log, 'managesieve', '', 'cleartext');
      throw new ManageSieveError('Plaintext authentication disallowed on non-secure connections.', { code: 'ENCRYPT-NEEDED' });
    }
    const initial = args.length === 2 ? decodeResponse(stringArg(args, 1, 'initial response'), 'initial response') : undefined;
    if (mechanism === 'PLAIN') {
      const plain = decodeSaslPlain(initial ?? (await challenge(session, '')));
      if (!plain) throw new ManageSieveError(AUTH_FAILED);
      return login(session, plain.username, plain.password, 'PLAIN', plain.authzid);
    }
    const username = initial ?? (await challenge(session, 'Username:'));
    const password = await challenge(session, 'Password:');
    return login(session, username.toString('utf8'), password.toString('utf8'), 'LOGIN');
  },
};
