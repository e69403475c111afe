import { AUTHORIZATION, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';
import { completeLogin, requirePrivacy } from './login-common.js';

/**
 * PASS string (RFC 1939 section 7): right after USER. The whole rest of the line is the
 * password: "since the PASS command has exactly one argument, a POP3 server may treat spaces in
 * the argument as part of the password". A failed PASS needs a new USER.
 */
export const pass: Pop3Command = {
  name: 'PASS',
  states: AUTHORIZATION,
  async run(session, args) {
    const username = session.pendingUser;
    requirePrivacy(session, username);
    if (username === undefined) throw new Pop3Error('No username given.');
    session.pendingUser = undefined;
    if (args === '') throw new Pop3Error('Missing password.');
    await completeLogin(session, username, args, 'USER');
  },
};
