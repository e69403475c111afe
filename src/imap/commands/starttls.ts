import { NOT_AUTHENTICATED, type ImapCommand } from '../command.js';

/**
 * STARTTLS (RFC 3501 section 6.2.1, RFC 2595): the tagged OK goes out in cleartext, then the
 * handshake; whatever the client pipelined after the command in cleartext is discarded.
 */
export const starttls: ImapCommand = {
  name: 'STARTTLS',
  states: NOT_AUTHENTICATED,
  async run(session, command) {
    if (command.args.length) return { status: 'BAD', text: 'STARTTLS takes no arguments' };
    if (session.secure) return { status: 'BAD', text: 'TLS is already active' };
    if (session.tlsMode !== 'starttls') return { status: 'NO', text: 'STARTTLS is not offered on this port' };
    session.writer.tagged(command.tag, 'OK', 'Begin TLS negotiation now');
    await session.startTls().catch(() => undefined);
    return { answered: true };
  },
};
