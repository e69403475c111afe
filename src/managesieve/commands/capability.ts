import { ANY, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';

/** CAPABILITY (RFC 5804 section 2.4): the capability list of the current state, then OK. */
export const capability: ManageSieveCommand = {
  name: 'CAPABILITY',
  states: ANY,
  async run(session, args) {
    argCount(args, 0);
    session.writeCapabilities();
    session.writer.ok('Capability completed.');
  },
};
