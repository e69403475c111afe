import { TRANSACTION, parseNumber, splitArgs, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';
import { okLine } from '../writer.js';

/**
 * RETR msg (RFC 1939 section 5): "+OK <size> octets", the message with CRLF line ends and
 * dot-stuffed lines, then ".". Streamed from the message file at the client's pace.
 */
export const retr: Pop3Command = {
  name: 'RETR',
  states: TRANSACTION,
  async run(session, args) {
    const drop = session.maildrop!;
    const parts = splitArgs(args);
    if (parts.length !== 1) throw new Pop3Error(parts.length ? 'RETR takes one argument.' : 'Missing message number.');
    const m = drop.message(parseNumber(parts[0], 'message number'));
    const before = session.writer.bytesOut;
    await drop.retrieve(m, session.writer, () => okLine(`${m.size} octets`));
    session.stats.retr++;
    session.stats.retrBytes += session.writer.bytesOut - before;
  },
};
