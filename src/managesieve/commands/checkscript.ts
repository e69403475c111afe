import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount, stringArg } from '../parser.js';
import { checkScript } from './script-common.js';

/** CHECKSCRIPT (RFC 5804 section 2.12): PUTSCRIPT's check without storing anything. */
export const checkscript: ManageSieveCommand = {
  name: 'CHECKSCRIPT',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 1);
    const warnings = await checkScript(session, stringArg(args, 0, 'script'));
    if (warnings) session.writer.ok(warnings, 'WARNINGS');
    else session.writer.ok('Script is valid.');
  },
};
