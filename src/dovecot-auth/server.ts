/**
 * The dovecot-auth listener: a unix socket (Postfix's smtpd_sasl_path = private/auth) or TCP
 * (smtpd_sasl_path = inet:127.0.0.1:PORT). The protocol trusts its client with the `secured`
 * flag and the `rip` address, so over TCP only loopback and trusted_networks may connect, and
 * a unix socket is guarded by its mode, owner and group. Connections are counted per listener.
 */
import net from 'node:net';
import type { Logger } from '../log.js';
import { normalizeIp, type NetworkList } from '../net.js';
import { openUnixSocket, type SocketAccess } from '../unix-socket.js';
import { DovecotAuthSession, type DovecotAuthContext } from './session.js';

export interface DovecotAuthListenerSpec {
  name: string;
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
  readonly #server: net.Server;
  readonly #log: Logger;
  readonly #sessions = new Set<DovecotAuthSession>();
  #unix = false;

  constructor(spec: DovecotAuthListenerSpec, ctx: DovecotAuthContext) {
    this.spec = spec;
    this.#ctx = ctx;
    this.#log = ctx.logger.child({ listener: spec.name });
    this.#server = net.createServer((socket) => this.#accept(socket));
    this.#server.on('error', (err) => this.#log.error({ err }, 'listener error'));
  }

  #accept(socket: net.Socket): void {
    socket.on('error', () => undefined);
    const settings = this.#ctx.settings();
    if (!this.#unix) {
      const ip = normalizeIp(socket.remoteAddress);
      if (!mayConnect(ip, settings.trusted)) {
        this.#log.warn({ ip }, 'dovecot-auth connection refused: not from loopback or trusted_networks');
        socket.destroy();
        return;
      }
    }
    if (this.#sessions.size >= settings.limits.connections) {
      // The protocol has no refusal line: the client sees the connection close.
      this.#log.warn({ limit: settings.limits.connections }, 'dovecot-auth connection refused: too many connections');
      socket.destroy();
      return;
    }
    const session = new DovecotAuthSession(socket, this.#ctx, this.spec.name);
    this.#sessions.add(session);
    void session.finished.then(() => this.#sessions.delete(session));
    session.start();
  }

  listenTcp(port: number, address: string): Promise<void> {
    return this.#bind({ port, host: address });
  }

  async listenUnix(path: string, access: SocketAccess): Promise<void> {
    this.#unix = true;
    await openUnixSocket(path, access, () => this.#bind({ path }));
  }

  #bind(options: net.ListenOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(options, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  address(): { port: number; address: string } | string | null {
    const a = this.#server.address();
    return a && typeof a === 'object' ? { port: a.port, address: a.address } : a;
  }

  /**
   * Stops accepting; sessions close at once, or after the password checks in progress have
   * answered, and are dropped after `graceMs`.
   */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
    const all = [...this.#sessions];
    for (const s of all) s.shutdown();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(all.map((s) => s.finished)), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const s of all) if (!s.closed) s.destroy();
    await closed;
  }
}
