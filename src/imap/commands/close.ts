import { FLAG_DELETED } from '../../store/mail/types.js';
import { SELECTED, type ImapCommand, type Selected } from '../command.js';
import { ParseError } from '../parser.js';

/** CLOSE (RFC 3501 section 6.4.2): expunges \Deleted silently (no EXPUNGE responses), deselects. */
export const close: ImapCommand<Selected> = {
  name: 'CLOSE',
  states: SELECTED,
  async run(session, command, { mailbox: selected, account }) {
    if (command.args.length) throw new ParseError('CLOSE takes no arguments');
    session.deselect({ leaveViewOpen: true });
    if (selected.readOnly) {
      selected.close();
      return;
    }
    // Hold the mailbox while the view lets go of it, so the expunge works on the same instance;
    // the view no longer listens, so nothing is announced.
    await account.with(selected.name, async (mailbox) => {
      selected.close();
      const doomed = mailbox.uids.filter((uid) => (mailbox.record(uid)?.flags ?? 0) & FLAG_DELETED);
      if (doomed.length) await mailbox.expunge(doomed);
    });
  },
};

/** UNSELECT (RFC 3691): deselects without expunging. */
export const unselect: ImapCommand = {
  name: 'UNSELECT',
  states: SELECTED,
  async run(session, command) {
    if (command.args.length) throw new ParseError('UNSELECT takes no arguments');
    session.deselect();
  },
};

/** CHECK (RFC 3501 section 6.4.1): a checkpoint; our writes are already durable, so a NOOP. */
export const check: ImapCommand = {
  name: 'CHECK',
  states: SELECTED,
  async run() {},
};
