import { AUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { argCount, stringArg } from '../parser.js';
import { checkScript, scriptName, store } from './script-common.js';

/**
 * PUTSCRIPT (RFC 5804 section 2.6): the script is checked (NO "line N: ..." when it does not
 * compile), then stored durably under its name, replacing one of the same name (the active
 * one stays active). Warnings come back as OK (WARNINGS).
 */
export const putscript: ManageSieveCommand = {
  name: 'PUTSCRIPT',
  states: AUTHENTICATED,
  async run(session, args) {
    argCount(args, 2);
    const name = scriptName(args, 0);
    const data = stringArg(args, 1, 'script');
    const scripts = store(session);
    await scripts.haveSpace(name, data.length);
    const warnings = await checkScript(session, data);
    await scripts.put(name, data);
    session.log.info({ script: name, size: data.length }, 'managesieve script stored');
    if (warnings) session.writer.ok(warnings, 'WARNINGS');
    else session.writer.ok('PUTSCRIPT completed.');
  },
};
