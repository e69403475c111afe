/**
 * The IMAP listener: plain TCP (STARTTLS offered or not) or implicit TLS (port 993, RFC 8314).
 * Each connection gets an ImapSession; per-address and total connection limits apply before
 * the greeting.
 */
import { SessionListener, type SessionListenerSpec } from '../session-listener.js';
import { ImapSession, type ImapContext } from './session.js';

export type ImapListenerSpec = SessionListenerSpec;

export class ImapListener extends SessionListener {
  constructor(spec: ImapListenerSpec, ctx: ImapContext) {
    super(spec, {
      name: 'imap',
      logger: ctx.logger,
      // RFC 3501 section 7.1.5: BYE as the greeting refuses the connection.
      refusal: '* BYE Too many connections, try again later\r\n',
      start: (socket, peer) => new ImapSession(socket, ctx, { tlsMode: spec.tls, listener: spec.name, peer }).start(),
    });
  }
}
