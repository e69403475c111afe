import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount } from '../parser.js';
import { sieveString } from '../writer.js';
import { store } from './script-common.js';

/** LISTSCRIPTS (RFC 5804 section 2.7): one line per script, the active one marked ACTIVE. */
export const listscripts: ManageSieveCommand = {
  name: 'LISTSCRIPTS',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 0);
    for (const script of await store(session).list()) {
      session.writer.line(script.active ? `${sieveString(script.name)} ACTIVE` : sieveString(script.name));
    }
    session.writer.ok('Listscripts completed.');
  },
};
