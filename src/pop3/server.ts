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

/**
 * Ends the POP3 sessions at shutdown: each is told and closed once its running command is done;
 * those still open after `graceMs` are dropped. Nothing is deleted for a session without QUIT.
 */
export async function shutdownPop3Sessions(sessions: Set<Pop3Session>, graceMs: number): Promise<void> {
  const all = [...sessions];
  for (const s of all) s.shutdown();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  await Promise.race([Promise.all(all.map((s) => s.finished)), timeout]);
  clearTimeout(timer);
  for (const s of all) if (!s.closed) s.destroy();
  // The maildrops of dropped sessions are released (their locks removed) before the store closes.
  await Promise.race([Promise.all(all.map((s) => s.finished)), new Promise((r) => setTimeout(r, 2000).unref())]);
}
