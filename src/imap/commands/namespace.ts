import { AUTHENTICATED, type ImapCommand } from '../command.js';

/** NAMESPACE (RFC 2342): one personal namespace with '/' as the hierarchy separator. */
export const namespace: ImapCommand = {
  name: 'NAMESPACE',
  states: AUTHENTICATED,
  async run(session) {
    session.writer.untagged('NAMESPACE (("" "/")) NIL NIL');
  },
};
