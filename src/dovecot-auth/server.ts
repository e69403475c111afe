/**
 * The dovecot-auth listener: a unix socket (Postfix's smtpd_sasl_path = private/auth) or TCP
 * (smtpd_sasl_path = inet:127.0.0.1:PORT). The protocol trusts its client with the `secured`
 * flag and the `rip` address, so over TCP only loopback and trusted_networks may connect, and
 * a unix socket is guarded by its mode, owner and group. Connections are counted per listener.
 */
import type net from 'node:net';
import type { Logger } from '../log.js';
import type { ClientPeer } from '../listen/peer.js';
import type { NetworkList } from '../net.js';
import { DovecotAuthSession, type DovecotAuthContext } from './session.js';

export interface DovecotAuthListenerSpec {
  name: string;
  /** A unix socket listener: guarded by the socket's mode, owner and group, not by address. */
  unix: boolean;
}

/**
 * May this address connect to a TCP dovecot-auth listener? Loopback and trusted_networks only:
 * whoever connects is believed about `secured` and `rip`, and may try passwords at will.
 */
export function mayConnect(ip: string, trusted: NetworkList): boolean {
  return ip === '::1' || ip.startsWith('127.') || trusted.contains(ip);
}

export class DovecotAuthListener {
  readonly spec: DovecotAuthListenerSpec;
  readonly #ctx: DovecotAuthContext;
  readonly #log: Logger;
  readonly #sessions = new Set<DovecotAuthSession>();
  #closing = false;

  constructor(spec: DovecotAuthListenerSpec, ctx: DovecotAuthContext) {
    this.spec = spec;
    this.#ctx = ctx;
    this.#log = ctx.logger.child({ listener: spec.name });
  }

  /** Takes a connection from the socket front. */
  accept(socket: net.Socket, peer: ClientPeer): void {
    socket.on('error', () => undefined);
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const settings = this.#ctx.settings();
    if (!this.spec.unix && !mayConnect(peer.address, settings.trusted)) {
      this.#log.warn({ ip: peer.address }, 'dovecot-auth connection refused: not from loopback or trusted_networks');
      socket.destroy();
      return;
    }
    if (this.#sessions.size >= settings.limits.connections) {
      // The protocol has no refusal line: the client sees the connection close.
      this.#log.warn({ limit: settings.limits.connections }, 'dovecot-auth connection refused: too many connections');
      socket.destroy();
      return;
    }
    const session = new DovecotAuthSession(socket, this.#ctx, this.spec.name, peer);
    this.#sessions.add(session);
    void session.finished.then(() => this.#sessions.delete(session));
    session.start();
  }

  /**
   * Takes no more connections; sessions close at once, or after the password checks in
   * progress have answered, and are dropped after `graceMs`.
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    const all = [...this.#sessions];
    for (const s of all) s.shutdown();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(all.map((s) => s.finished)), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const s of all) if (!s.closed) s.destroy();
  }
}
