import { TRANSACTION, noArgs, type Pop3Command } from '../command.js';

/** NOOP (RFC 1939 section 5). */
export const noop: Pop3Command = {
  name: 'NOOP',
  states: TRANSACTION,
  async run(session, args) {
    noArgs('NOOP', args);
    session.writer.ok();
  },
};
