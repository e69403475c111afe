import { AUTHENTICATED, type ImapCommand } from '../command.js';

/** NAMESPACE (RFC 2342): one personal namespace, with the configured hierarchy separator. */
export const namespace: ImapCommand = {
  name: 'NAMESPACE',
  states: AUTHENTICATED,
  async run(session) {
    session.writer.untagged(`NAMESPACE (("" "${session.account!.separator}")) NIL NIL`);
  },
};
