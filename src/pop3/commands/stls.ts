import { AUTHORIZATION, noArgs, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';

/**
 * STLS (RFC 2595 section 4), in the AUTHORIZATION state only: the +OK goes out in cleartext,
 * then the TLS handshake; whatever the client pipelined after the command is discarded.
 */
export const stls: Pop3Command = {
  name: 'STLS',
  states: AUTHORIZATION,
  async run(session, args) {
    noArgs('STLS', args);
    if (session.secure) throw new Pop3Error('TLS is already active.');
    if (session.tlsMode !== 'starttls') throw new Pop3Error('STLS is not offered on this port.');
    session.writer.ok('Begin TLS negotiation now.');
    await session.startTls().catch(() => undefined);
  },
};
