import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';
import { scriptName, store } from './script-common.js';

/** DELETESCRIPT (RFC 5804 section 2.10): never the active script (NO (ACTIVE)). */
export const deletescript: ManageSieveCommand = {
  name: 'DELETESCRIPT',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 1);
    const name = scriptName(args, 0);
    await store(session).delete(name);
    session.log.info({ script: name }, 'managesieve script deleted');
    session.writer.ok('Deletescript completed.');
  },
};
