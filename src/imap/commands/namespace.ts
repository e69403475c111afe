import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';

/** NAMESPACE (RFC 2342): one personal namespace, with the configured hierarchy separator. */
export const namespace: ImapCommand<LoggedIn> = {
  name: 'NAMESPACE',
  states: AUTHENTICATED,
  async run(session, _command, { account }) {
    session.writer.untagged(`NAMESPACE (("" "${account.separator}")) NIL NIL`);
  },
};
