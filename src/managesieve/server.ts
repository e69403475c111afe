/**
 * The ManageSieve listener (RFC 5804): port 4190 with STARTTLS, or implicit TLS. Each
 * connection gets a ManageSieveSession; the total and per-address connection limits apply
 * before the greeting, as on the other listeners.
 */
import { SessionListener, type SessionListenerSpec } from '../session-listener.js';
import { ManageSieveSession, type ManageSieveContext } from './session.js';

export class ManageSieveListener extends SessionListener {
  constructor(spec: SessionListenerSpec, ctx: ManageSieveContext) {
    super(spec, {
      name: 'managesieve',
      logger: ctx.logger,
      // BYE instead of the greeting refuses the connection (RFC 5804 section 1.3: TRYLATER).
      refusal: 'BYE (TRYLATER) "Too many connections, try again later."\r\n',
      start: (socket, peer) => new ManageSieveSession(socket, ctx, { tlsMode: spec.tls, listener: spec.name, peer }).start(),
    });
  }
}
