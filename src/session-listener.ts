/**
 * The protocol side of a listener for the protocols whose sessions are ours (IMAP, POP3): takes
 * the connections of a bound listener (src/listen), cleartext (STARTTLS/STLS offered or not) or
 * implicit TLS (RFC 8314), and checks the total and per-address connection limits before the
 * greeting. The client address is the peer's (the PROXY header's when the listener has one).
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from './log.js';
import type { ClientPeer } from './listen/peer.js';
import { implicitTls } from './listen/tls.js';
import { ConnectionCounter } from './net.js';

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
  start(socket: net.Socket | tls.TLSSocket, peer: ClientPeer): void;
}

export class SessionListener {
  readonly spec: SessionListenerSpec;
  readonly #protocol: SessionProtocol;
  readonly #counter = new ConnectionCounter();
  readonly #log: Logger;
  #secureContext: tls.SecureContext | undefined;
  /** Those still in the implicit TLS handshake. */
  readonly #handshaking = new Set<tls.TLSSocket>();
  #open = 0;
  #closing = false;

  constructor(spec: SessionListenerSpec, protocol: SessionProtocol) {
    this.spec = spec;
    this.#protocol = protocol;
    this.#log = protocol.logger.child({ listener: spec.name });
    if (spec.tls === 'implicit') this.#secureContext = tls.createSecureContext(spec.credentials);
  }

  /** Takes a connection from the socket front. */
  accept(socket: net.Socket, peer: ClientPeer): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined);
    if (!this.#secureContext) return this.#admit(socket, peer);
    const wrapped = implicitTls(socket, this.#secureContext);
    this.#handshaking.add(wrapped.socket);
    wrapped.secured.then(
      () => {
        this.#handshaking.delete(wrapped.socket);
        this.#admit(wrapped.socket, peer);
      },
      (err: Error) => {
        this.#handshaking.delete(wrapped.socket);
        this.#log.debug({ ip: peer.address, err: err.message }, 'TLS handshake failed');
      },
    );
  }

  #admit(socket: net.Socket | tls.TLSSocket, peer: ClientPeer): void {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const ip = peer.address;
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
    this.#protocol.start(socket, peer);
  }

  updateCredentials(credentials: { key: string | Buffer; cert: string | Buffer }): void {
    if (this.#secureContext) this.#secureContext = tls.createSecureContext({ key: credentials.key, cert: credentials.cert });
  }

  /**
   * Takes no more connections and abandons the TLS handshakes in progress. The sessions (shared
   * across listeners) are ended by the caller; the bound listener's close() tells when every
   * connection is gone.
   */
  close(): void {
    this.#closing = true;
    for (const socket of this.#handshaking) socket.destroy();
  }
}

/** What shutdown needs of a session that runs one command at a time (POP3, ManageSieve). */
export interface ShutdownableSession {
  /** Says goodbye and closes once the running command is done. */
  shutdown(): void;
  readonly finished: Promise<void>;
  readonly closed: boolean;
  destroy(): void;
}

/**
 * Ends sessions at server shutdown: each is told and closed once its running command is done;
 * those still open after `graceMs` are dropped, and what they held (a POP3 maildrop's lock) is
 * released before this resolves, within 2 seconds more.
 */
export async function shutdownSessions(sessions: Iterable<ShutdownableSession>, graceMs: number): Promise<void> {
  const all = [...sessions];
  for (const s of all) s.shutdown();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  await Promise.race([Promise.all(all.map((s) => s.finished)), timeout]);
  clearTimeout(timer);
  for (const s of all) if (!s.closed) s.destroy();
  await Promise.race([Promise.all(all.map((s) => s.finished)), new Promise((r) => setTimeout(r, 2000).unref())]);
}
