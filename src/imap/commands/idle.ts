import { AUTHENTICATED, type ImapCommand } from '../command.js';
import { ParseError } from '../parser.js';

/**
 * IDLE (RFC 2177): changes are pushed as they happen, deliveries of this process at once
 * (the store's event), other processes' within the poll interval of the mail service (one
 * poll per mailbox, however many sessions idle on it), until the client sends DONE.
 */
export const idle: ImapCommand = {
  name: 'IDLE',
  states: AUTHENTICATED,
  async run(session, command) {
    if (command.args.length) throw new ParseError('IDLE takes no arguments');
    session.writer.continuation('idling');
    const selected = session.selected;
    let pushing = Promise.resolve();
    let queued = false;
    // A burst of changes is one push; a change during a push is another push after it.
    const push = (sync: boolean) => {
      if (queued) return;
      queued = true;
      pushing = pushing
        .then(() => {
          queued = false;
          return session.selected && !session.closed ? session.selected.flush(session, true, sync) : undefined;
        })
        .catch(() => undefined);
    };
    let unwatch: (() => void) | undefined;
    if (selected) {
      // The change event comes from a sync or an operation: the table is current already.
      selected.onChange = () => push(false);
      unwatch = session.ctx.mail.watch(selected.mailbox);
      push(true); // whatever is pending already, other processes' changes included
    }
    const line = await session.readLine();
    unwatch?.();
    if (selected) selected.onChange = undefined;
    await pushing;
    if (line === null) return { answered: true };
    if (line.toString('latin1').toUpperCase() !== 'DONE') return { status: 'BAD', text: 'Expected DONE' };
    return { text: 'IDLE terminated' };
  },
};
