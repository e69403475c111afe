import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError } from '../parser.js';
import { mailboxArg } from '../args.js';

/** DELETE (RFC 3501 section 6.3.4). */
export const deleteMailbox: ImapCommand<LoggedIn> = {
  name: 'DELETE',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 1) throw new ParseError('DELETE needs a mailbox name');
    const name = mailboxArg(session, command.args[0]);
    if (session.selected?.name === name) {
      // Deleting the selected mailbox deselects it (Dovecot does the same).
      session.deselect();
    }
    await account.delete(name);
  },
};
