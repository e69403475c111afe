import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount, textArg } from '../parser.js';
import { checkScript, scriptName, store } from './script-common.js';

/**
 * SETACTIVE (RFC 5804 section 2.8): the named script becomes the active one (it is checked
 * again, as Pigeonhole does, since it may have been placed by hand); "" deactivates.
 */
export const setactive: ManageSieveCommand = {
  name: 'SETACTIVE',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 1);
    const scripts = store(session);
    if (textArg(args, 0, 'script name') === '') {
      await scripts.setActive('');
      session.log.info('managesieve scripts deactivated');
      return session.writer.ok('Script deactivated.');
    }
    const name = scriptName(args, 0);
    const warnings = await checkScript(session, await scripts.get(name));
    await scripts.setActive(name);
    session.log.info({ script: name }, 'managesieve script activated');
    if (warnings) session.writer.ok(warnings, 'WARNINGS');
    else session.writer.ok('Script activated.');
  },
};
