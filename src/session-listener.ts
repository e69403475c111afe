/**
 * A TCP listener for the protocols whose sessions are ours (IMAP, POP3): plain TCP (STARTTLS/STLS
 * offered or not) or implicit TLS (RFC 8314), with the total and per-address connection limits
 * checked before the greeting.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from './log.js';
import { ConnectionCounter, normalizeIp } from './net.js';

export interface SessionListenerSpec {
  name: string;
  tls: 'none' | 'starttls' | 'implicit';
  credentials: { key: string | Buffer; cert: string | Buffer };
  maxConnections: () => number;
  maxPerIp: () => number;
}

export interface SessionProtocol {
  /** For log lines: "imap", "pop3". */
  name: string;
  logger: Logger;
  /** The line that refuses a connection over the limits, in place of the greeting. */
  refusal: string;
  /** Starts a session on an accepted connection. */
  start(socket: net.Socket | tls.TLSSocket): void;
}

export class SessionListener {
  readonly spec: SessionListenerSpec;
  readonly #protocol: SessionProtocol;
  readonly #server: net.Server;
  readonly #counter = new ConnectionCounter();
  readonly #log: Logger;
  #open = 0;

  constructor(spec: SessionListenerSpec, protocol: SessionProtocol) {
    this.spec = spec;
    this.#protocol = protocol;
    this.#log = protocol.logger.child({ listener: spec.name });
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
      socket.end(this.#protocol.refusal);
      this.#log.warn({ ip }, `${this.#protocol.name} connection refused: too many connections`);
      return;
    }
    this.#open++;
    socket.once('close', () => {
      this.#open--;
      this.#counter.release(ip);
    });
    this.#protocol.start(socket);
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

  /** Stops accepting; the sessions (shared across listeners) are ended by the caller. */
  close(): Promise<void> {
    return new Promise((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
  }
}
