/**
 * The IMAP listener: plain TCP (STARTTLS offered or not) or implicit TLS (port 993, RFC 8314).
 * Each connection gets an ImapSession; per-address and total connection limits apply before
 * the greeting.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../log.js';
import { ConnectionCounter, normalizeIp } from '../net.js';
import type { ImapContext } from './session.js';
import { ImapSession } from './session.js';

export interface ImapListenerSpec {
  name: string;
  tls: 'none' | 'starttls' | 'implicit';
  credentials: { key: string | Buffer; cert: string | Buffer };
  maxConnections: () => number;
  maxPerIp: () => number;
}

export class ImapListener {
  readonly spec: ImapListenerSpec;
  readonly #ctx: ImapContext;
  readonly #server: net.Server;
  readonly #counter = new ConnectionCounter();
  readonly #log: Logger;
  #open = 0;

  constructor(spec: ImapListenerSpec, ctx: ImapContext) {
    this.spec = spec;
    this.#ctx = ctx;
    this.#log = ctx.logger.child({ listener: spec.name });
    const onSocket = (socket: net.Socket | tls.TLSSocket) => this.#accept(socket);
    this.#server =
      spec.tls === 'implicit'
        ? tls.createServer({ key: spec.credentials.key, cert: spec.credentials.cert, handshakeTimeout: 30_000 }, onSocket)
        : net.createServer(onSocket);
    this.#server.on('tlsClientError', (err: Error) => this.#log.debug({ err: err.message }, 'TLS handshake failed'));
    this.#server.on('error', (err) => this.#log.error({ err }, 'listener error'));
  }

  #accept(socket: net.Socket | tls.TLSSocket): void {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const ip = normalizeIp(socket.remoteAddress);
    if (this.#open >= this.spec.maxConnections() || !this.#counter.acquire(ip, this.spec.maxPerIp())) {
      // RFC 3501 section 7.1.5: BYE as the greeting refuses the connection.
      socket.end('* BYE Too many connections, try again later\r\n');
      this.#log.warn({ ip }, 'imap connection refused: too many connections');
      return;
    }
    this.#open++;
    socket.once('close', () => {
      this.#open--;
      this.#counter.release(ip);
    });
    new ImapSession(socket, this.#ctx, { tlsMode: this.spec.tls, listener: this.spec.name }).start();
  }

  listen(port: number, address: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, address, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  address(): { port: number; address: string } | null {
    const a = this.#server.address();
    return a && typeof a === 'object' ? { port: a.port, address: a.address } : null;
  }

  updateCredentials(credentials: { key: string | Buffer; cert: string | Buffer }): void {
    if (this.#server instanceof tls.Server) this.#server.setSecureContext({ key: credentials.key, cert: credentials.cert });
  }

  /** Stops accepting; sessions are told BYE by the caller (they are shared across listeners). */
  close(): Promise<void> {
    return new Promise((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
  }
}
