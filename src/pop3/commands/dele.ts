import { TRANSACTION, parseNumber, splitArgs, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';

/**
 * DELE msg (RFC 1939 section 5): marks the message; it is removed only in the UPDATE state after
 * QUIT. A marked message cannot be marked again or retrieved, and is left out of STAT and LIST.
 */
export const dele: Pop3Command = {
  name: 'DELE',
  states: TRANSACTION,
  async run(session, args) {
    const parts = splitArgs(args);
    if (parts.length !== 1) throw new Pop3Error(parts.length ? 'DELE takes one argument.' : 'Missing message number.');
    const m = session.maildrop!.message(parseNumber(parts[0], 'message number'));
    m.deleted = true;
    session.writer.ok('Marked to be deleted.');
  },
};
