import { ANY, type ImapCommand } from '../command.js';

/** CAPABILITY (RFC 3501 section 6.1.1). */
export const capability: ImapCommand = {
  name: 'CAPABILITY',
  states: ANY,
  async run(session) {
    session.writer.untagged(`CAPABILITY ${session.capabilities().join(' ')}`);
  },
};
