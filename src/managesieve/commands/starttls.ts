import { UNAUTHENTICATED, type ManageSieveCommand } from '../command.js';
import { ManageSieveError } from '../errors.js';
import { argCount } from '../parser.js';

/**
 * STARTTLS (RFC 5804 section 2.2): OK in cleartext, the handshake, then the capabilities again
 * and OK; whatever the client pipelined after the command is discarded.
 */
export const starttls: ManageSieveCommand = {
  name: 'STARTTLS',
  states: UNAUTHENTICATED,
  async run(session, args) {
    argCount(args, 0);
    if (session.secure) throw new ManageSieveError('TLS is already active.', { bad: true });
    if (session.tlsMode !== 'starttls') throw new ManageSieveError('STARTTLS is not offered on this port.', { bad: true });
    session.writer.ok('Begin TLS negotiation now.');
    try {
      await session.startTls();
    } catch {
      return;
    }
    session.writeCapabilities();
    session.writer.ok('TLS negotiation successful.');
  },
};
