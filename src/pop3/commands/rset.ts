import { TRANSACTION, noArgs, type Pop3Command } from '../command.js';

/** RSET (RFC 1939 section 5): every message marked with DELE is unmarked. */
export const rset: Pop3Command = {
  name: 'RSET',
  states: TRANSACTION,
  async run(session, args) {
    noArgs('RSET', args);
    const drop = session.maildrop!;
    drop.reset();
    const { count, size } = drop.totals();
    session.writer.ok(`maildrop has ${count} messages (${size} octets)`);
  },
};
