import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError } from '../parser.js';
import { mailboxArg } from '../args.js';

/** RENAME (RFC 3501 section 6.3.5). */
export const rename: ImapCommand<LoggedIn> = {
  name: 'RENAME',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 2) throw new ParseError('RENAME needs two mailbox names');
    await account.rename(mailboxArg(session, command.args[0]), mailboxArg(session, command.args[1]));
  },
};
