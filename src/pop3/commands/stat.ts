import { TRANSACTION, noArgs, type Pop3Command } from '../command.js';

/** STAT (RFC 1939 section 5): messages and octets, without those marked deleted. */
export const stat: Pop3Command = {
  name: 'STAT',
  states: TRANSACTION,
  async run(session, args) {
    noArgs('STAT', args);
    const { count, size } = session.maildrop!.totals();
    session.writer.ok(`${count} ${size}`);
  },
};
