import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';
import { scriptName, store } from './script-common.js';

/** RENAMESCRIPT (RFC 5804 section 2.11.1): (NONEXISTENT) or (ALREADYEXISTS); the active one stays active. */
export const renamescript: ManageSieveCommand = {
  name: 'RENAMESCRIPT',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 2);
    const from = scriptName(args, 0);
    const to = scriptName(args, 1);
    await store(session).rename(from, to);
    session.log.info({ script: from, to }, 'managesieve script renamed');
    session.writer.ok('Renamescript completed.');
  },
};
