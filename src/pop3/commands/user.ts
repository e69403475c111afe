import { AUTHORIZATION, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';
import { requirePrivacy } from './login-common.js';

/**
 * USER name (RFC 1939 section 7). The answer does not tell whether the mailbox exists; PASS
 * decides. Before TLS it is refused as Dovecot refuses it, with [AUTH].
 */
export const user: Pop3Command = {
  name: 'USER',
  states: AUTHORIZATION,
  async run(session, args) {
    const name = args.trim();
    requirePrivacy(session, name);
    if (!name || /\s/.test(name)) throw new Pop3Error(name ? 'USER takes one argument.' : 'Missing user name.');
    session.pendingUser = name;
    session.writer.ok();
  },
};
