import { ANY, noArgs, type Pop3Command } from '../command.js';

/** CAPA (RFC 2449 section 5): the capabilities of the current state, one per line. */
export const capa: Pop3Command = {
  name: 'CAPA',
  states: ANY,
  async run(session, args) {
    noArgs('CAPA', args);
    session.writer.ok('Capability list follows');
    await session.writer.lines(session.capabilities());
  },
};
