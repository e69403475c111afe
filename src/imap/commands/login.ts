import { NOT_AUTHENTICATED, type ImapCommand } from '../command.js';
import { ParseError, astring } from '../parser.js';
import { completeLogin } from './login-common.js';

/** LOGIN (RFC 3501 section 6.2.3); refused with PRIVACYREQUIRED before TLS (LOGINDISABLED). */
export const login: ImapCommand = {
  name: 'LOGIN',
  states: NOT_AUTHENTICATED,
  async run(session, command) {
    if (command.args.length !== 2) throw new ParseError('LOGIN needs a user name and a password');
    const username = astring(command.args[0], 'user name');
    const password = astring(command.args[1], 'password');
    return completeLogin(session, username, password, 'LOGIN');
  },
};
