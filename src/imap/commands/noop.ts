import { ANY, type ImapCommand } from '../command.js';

/** NOOP (RFC 3501 section 6.1.2): pending mailbox updates are sent before the tagged OK. */
export const noop: ImapCommand = {
  name: 'NOOP',
  states: ANY,
  async run() {},
};
