import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount, numberArg } from '../parser.js';
import { scriptName, store } from './script-common.js';

/** HAVESPACE (RFC 5804 section 2.5): OK, or NO (QUOTA/MAXSCRIPTS | QUOTA/MAXSIZE | QUOTA/MAXSTORAGE). */
export const havespace: ManageSieveCommand = {
  name: 'HAVESPACE',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 2);
    const name = scriptName(args, 0);
    const size = numberArg(args, 1, 'script size');
    await store(session).haveSpace(name, size);
    session.writer.ok('Putscript would succeed.');
  },
};
