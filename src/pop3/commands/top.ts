import { TRANSACTION, parseNumber, splitArgs, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';
import { okLine } from '../writer.js';

/**
 * TOP msg n (RFC 1939 section 7): the header, the blank line after it, and the first n lines of
 * the body (the whole message when it has fewer). Does not set \Seen.
 */
export const top: Pop3Command = {
  name: 'TOP',
  states: TRANSACTION,
  async run(session, args) {
    const drop = session.maildrop!;
    const parts = splitArgs(args);
    if (parts.length !== 2) throw new Pop3Error('TOP needs a message number and a line count.');
    const m = drop.message(parseNumber(parts[0], 'message number'));
    const lines = parseNumber(parts[1], 'line count');
    const before = session.writer.bytesOut;
    await drop.retrieve(m, session.writer, () => okLine(), lines);
    session.stats.top++;
    session.stats.topBytes += session.writer.bytesOut - before;
  },
};
