import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError, atom, list } from '../parser.js';
import { mailboxArg } from '../args.js';

/** CREATE (RFC 3501 section 6.3.3), with CREATE-SPECIAL-USE: CREATE name (USE (\Sent)) (RFC 6154). */
export const create: ImapCommand<LoggedIn> = {
  name: 'CREATE',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    const name = mailboxArg(session, command.args[0]);
    let specialUse: string | undefined;
    if (command.args[1]) {
      const params = list(command.args[1], 'CREATE parameters');
      if (atom(params[0], 'parameter').toUpperCase() !== 'USE') throw new ParseError('unknown CREATE parameter');
      const uses = list(params[1], 'special-use list');
      if (uses.length > 1) return { status: 'NO', code: 'USEATTR', text: 'One special use per mailbox' };
      if (uses[0]) specialUse = atom(uses[0], 'special-use attribute');
    }
    if (command.args.length > 2) throw new ParseError('too many arguments');
    try {
      await account.create(name, specialUse);
    } catch (err) {
      if ((err as { code?: string }).code === 'BAD_MAILBOX_NAME' && specialUse)
        return { status: 'NO', code: 'USEATTR', text: 'Unsupported special use' };
      throw err;
    }
  },
};
