import { ANY, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';

/** LOGOUT (RFC 5804 section 2.3): OK, then the server closes the connection. */
export const logout: ManageSieveCommand = {
  name: 'LOGOUT',
  states: ANY,
  async run(session, args) {
    argCount(args, 0);
    session.writer.ok('Logout completed.');
    session.close();
  },
};
