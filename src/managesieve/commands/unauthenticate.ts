import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';

/** UNAUTHENTICATE (RFC 5804 section 2.14.1): back to the non-authenticated state, the connection kept. */
export const unauthenticate: ManageSieveCommand = {
  name: 'UNAUTHENTICATE',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 0);
    session.loggedOut();
    session.writer.ok('Unauthenticate completed.');
  },
};
