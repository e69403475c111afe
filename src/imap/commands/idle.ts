import { AUTHENTICATED, type ImapCommand } from '../command.js';
import { ParseError } from '../parser.js';

/** How often an idle session looks at the disk for changes other processes made. */
const IDLE_POLL_MS = 5000;

/**
 * IDLE (RFC 2177): changes are pushed as they happen, deliveries of this process at once
 * (the store's event), other processes' within the poll interval, until the client sends DONE.
 */
export const idle: ImapCommand = {
  name: 'IDLE',
  states: AUTHENTICATED,
  async run(session, command) {
    if (command.args.length) throw new ParseError('IDLE takes no arguments');
    session.writer.continuation('idling');
    const selected = session.selected;
    let pushing = Promise.resolve();
    const push = () => {
      pushing = pushing.then(() => (session.selected && !session.closed ? session.selected.flush(session, true) : undefined)).catch(() => undefined);
    };
    let timer: NodeJS.Timeout | undefined;
    if (selected) {
      selected.onChange = push;
      timer = setInterval(() => {
        void selected.mailbox.sync().catch(() => undefined);
      }, IDLE_POLL_MS);
      timer.unref();
      push(); // whatever is pending already
    }
    const line = await session.readLine();
    if (timer) clearInterval(timer);
    if (selected) selected.onChange = undefined;
    await pushing;
    if (line === null) return { answered: true };
    if (line.toString('latin1').toUpperCase() !== 'DONE') return { status: 'BAD', text: 'Expected DONE' };
    return { text: 'IDLE terminated' };
  },
};
