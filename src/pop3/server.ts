/**
 * The POP3 listener: plain TCP with STLS offered (port 110) or implicit TLS (port 995, RFC 8314).
 * Each connection gets a Pop3Session; the total and per-address connection limits apply before
 * the greeting, as on the other listeners.
 */
import { SessionListener, type SessionListenerSpec } from '../session-listener.js';
import { Pop3Session, type Pop3Context } from './session.js';

export type Pop3ListenerSpec = SessionListenerSpec;

export class Pop3Listener extends SessionListener {
  constructor(spec: Pop3ListenerSpec, ctx: Pop3Context) {
    super(spec, {
      name: 'pop3',
      logger: ctx.logger,
      // -ERR as the greeting refuses the connection; [SYS/TEMP] says to try again later.
      refusal: '-ERR [SYS/TEMP] Too many connections, try again later.\r\n',
      start: (socket, peer) => new Pop3Session(socket, ctx, { tlsMode: spec.tls, listener: spec.name, peer }).start(),
    });
  }
}
