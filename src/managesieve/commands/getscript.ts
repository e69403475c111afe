import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';
import { scriptName, store } from './script-common.js';

/** GETSCRIPT (RFC 5804 section 2.9): the script as a literal, then OK. */
export const getscript: ManageSieveCommand = {
  name: 'GETSCRIPT',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 1);
    const data = await store(session).get(scriptName(args, 0));
    session.writer.write(`{${data.length}}\r\n`);
    session.writer.write(data);
    session.writer.write('\r\n');
    session.writer.ok('Getscript completed.');
  },
};
