import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError } from '../parser.js';
import { mailboxArg } from '../args.js';

/** SUBSCRIBE (RFC 3501 section 6.3.6): any valid name, existing or not. */
export const subscribe: ImapCommand<LoggedIn> = {
  name: 'SUBSCRIBE',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 1) throw new ParseError('SUBSCRIBE needs a mailbox name');
    await account.subscribe(mailboxArg(session, command.args[0]), true);
  },
};

/** UNSUBSCRIBE (RFC 3501 section 6.3.7). */
export const unsubscribe: ImapCommand<LoggedIn> = {
  name: 'UNSUBSCRIBE',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 1) throw new ParseError('UNSUBSCRIBE needs a mailbox name');
    await account.subscribe(mailboxArg(session, command.args[0]), false);
  },
};
