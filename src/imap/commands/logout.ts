import { ANY, type ImapCommand } from '../command.js';

/** LOGOUT (RFC 3501 section 6.1.3): BYE, then the tagged OK, then the connection closes. */
export const logout: ImapCommand = {
  name: 'LOGOUT',
  states: ANY,
  async run(session, command) {
    session.logout(command.tag);
    return { answered: true };
  },
};
