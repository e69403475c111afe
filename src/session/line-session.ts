/**
 * What every line-protocol session shares (IMAP, POP3, Dovecot's auth protocol, and the next
 * ones): the socket and this session's listeners on it, the idle and login timers, the TLS
 * upgrade of STARTTLS/STLS with its pipelining guard, closing, and the connect and disconnect log
 * lines. A protocol's session extends it with its reader, writer, state and commands.
 */
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { passwordsAllowed } from '../auth/login.js';
import type { ClientPeer } from '../listen/peer.js';
import type { Logger } from '../log.js';
import type { NetworkList } from '../net.js';
import { CommandQueue } from './command-queue.js';
import { StalledClientError } from './output.js';

/**
 * Longest wait for the client's side of a STARTTLS/STLS handshake. The client owes us its
 * ClientHello: that wait is the client's silence, so the idle timeout in force bounds it too
 * (the idle timer itself rests while the command runs).
 */
const TLS_HANDSHAKE_MAX_MS = 30_000;

/** How long a closed connection may take to flush its last output before it is destroyed. */
const CLOSE_GRACE_MS = 2000;

export type TlsMode = 'none' | 'starttls' | 'implicit';

/** The settings every line protocol has (re-read on each use: a reload changes them). */
export interface LineSessionSettings {
  trusted: NetworkList;
  /** 'trusted': passwords without TLS from trusted networks only; 'never': TLS first. */
  cleartextAuth: 'never' | 'trusted';
}

export interface SessionOptions {
  tlsMode: TlsMode;
  listener: string;
  /** The client (from the PROXY header when the listener takes one). */
  peer: ClientPeer;
}

export interface LineSessionSpec {
  /** For log lines: "imap", "pop3", "dovecot-auth". */
  protocol: string;
  log: Logger;
  /** Level of the connect and disconnect lines (a long-lived local client's are debug). */
  logLevel?: 'info' | 'debug';
  /**
   * close() shuts both directions once the output is flushed, instead of waiting for the
   * client's FIN: a client that writes to the closed socket gets an error at once.
   */
  closeBothWays?: boolean;
  /** The current certificate, for STARTTLS/STLS (absent: the protocol has no TLS upgrade). */
  secureContext?: () => tls.SecureContext;
}

export abstract class LineSession<S extends LineSessionSettings> {
  /** The client's address ('' over a unix socket). */
  readonly ip: string;
  log: Logger;
  secure: boolean;
  /** Resolves once the connection is closed and what the session held is released. */
  readonly finished: Promise<void>;
  readonly #spec: LineSessionSpec;
  readonly #opts: SessionOptions;
  #socket: Socket | tls.TLSSocket;
  #closed = false;
  /** Takes this session's listeners off its current socket (STARTTLS replaces the socket). */
  #detach: () => void = () => undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #loginTimer: NodeJS.Timeout | undefined;
  #commands = 0;
  readonly #started = Date.now();
  #finish!: () => void;

  constructor(socket: Socket | tls.TLSSocket, opts: SessionOptions, spec: LineSessionSpec) {
    this.#socket = socket;
    this.#opts = opts;
    this.#spec = spec;
    this.ip = opts.peer.address;
    this.log = spec.log;
    this.secure = opts.tlsMode === 'implicit';
    this.finished = new Promise<void>((resolve) => (this.#finish = resolve));
  }

  abstract get settings(): S;

  /** Bytes the client sent (the session's reader takes them). */
  protected abstract onData(chunk: Buffer): void;

  /** The idle timeout in force now, in milliseconds. */
  protected abstract idleTimeoutMs(): number;

  /** The client was silent for idleTimeoutMs(). */
  protected abstract onIdle(): void;

  /** The login timeout ran out: 'busy' looks again shortly (a password check decides first). */
  protected onLoginTimeout(): 'busy' | void {}

  /** The connection closed: the protocol's own release (a maildrop, pending reads). */
  protected onClosed(): Promise<void> | void {}

  /** Hands output the protocol's writer still holds to the socket, before close() ends it. */
  protected flushOutput(): void {}

  /** Fields of the protocol for the disconnect log line. */
  protected disconnectFields(): Record<string, unknown> {
    return {};
  }

  get tlsMode(): TlsMode {
    return this.#opts.tlsMode;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The socket in use: the TLS one after STARTTLS. */
  protected get socket(): Socket | tls.TLSSocket {
    return this.#socket;
  }

  get trusted(): boolean {
    return this.settings.trusted.contains(this.ip);
  }

  /** May passwords be sent now (RFC 8314, RFC 3501 section 6.2.3, RFC 2595 section 2.1)? */
  get cleartextAllowed(): boolean {
    return passwordsAllowed(this.secure, this.settings.cleartextAuth, this.trusted);
  }

  /** Listens on the socket, logs the connection and starts the idle timer; the greeting is the protocol's. */
  protected beginSession(fields: Record<string, unknown> = {}): void {
    this.#attach(this.#socket);
    this.#logLine({ ip: this.ip || 'unix', listener: this.#opts.listener, tls: this.secure, ...fields }, 'connect');
    this.armIdleTimer();
  }

  /** One more command for the disconnect line. */
  protected countCommand(): void {
    this.#commands++;
  }

  #logLine(fields: Record<string, unknown>, event: string): void {
    const message = `${this.#spec.protocol} ${event}`;
    if (this.#spec.logLevel === 'debug') this.log.debug(fields, message);
    else this.log.info(fields, message);
  }

  #attach(socket: Socket | tls.TLSSocket): void {
    const onData = (chunk: Buffer) => this.onData(chunk);
    const onError = (err: Error) => this.log.debug({ err: err.message }, `${this.#spec.protocol} socket error`);
    const onClose = () => this.#onClose();
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    // STARTTLS takes these off the cleartext socket; listeners of others (the listener's
    // connection count) stay.
    this.#detach = () => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
  }

  // ---- timers --------------------------------------------------------------------------------

  /** (Re)starts the idle timeout. */
  protected armIdleTimer(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#closed) return;
    this.#idleTimer = setTimeout(() => this.onIdle(), this.idleTimeoutMs());
    this.#idleTimer.unref();
  }

  protected disarmIdleTimer(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** Time from connecting to a successful login, 0 for no limit (Dovecot's login timeout). */
  protected startLoginTimer(ms: number): void {
    if (ms <= 0) return;
    this.#loginTimer = setTimeout(() => this.#loginTimedOut(), ms);
    this.#loginTimer.unref();
  }

  protected stopLoginTimer(): void {
    clearTimeout(this.#loginTimer);
    this.#loginTimer = undefined;
  }

  #loginTimedOut(): void {
    if (this.#closed) return;
    if (this.onLoginTimeout() === 'busy') {
      this.#loginTimer = setTimeout(() => this.#loginTimedOut(), 1000);
      this.#loginTimer.unref();
    }
  }

  // ---- TLS -----------------------------------------------------------------------------------

  /** Drops what the client sent after STARTTLS/STLS: it must not be taken as sent under TLS. */
  protected dropInputBeforeTls(): void {}

  /** Moves the writer (and a reader) to the TLS socket, before it is listened to. */
  protected adoptTlsSocket(_secure: tls.TLSSocket): void {}

  /**
   * The TLS upgrade of STARTTLS (RFC 3501 section 6.2.1) and STLS (RFC 2595 section 4), after
   * the command's positive answer went out in cleartext; the client's pipelined input after the
   * command is dropped. A failed or stalled handshake closes the session and rejects.
   */
  async startTls(): Promise<void> {
    if (!this.#spec.secureContext) throw new Error(`${this.#spec.protocol} has no TLS upgrade`);
    const plain = this.#socket as Socket;
    this.dropInputBeforeTls();
    this.#detach();
    plain.on('error', () => undefined);
    // A socket paused for backpressure must read on, or the ClientHello never arrives.
    plain.resume();
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: this.#spec.secureContext() });
    const timeoutMs = Math.min(TLS_HANDSHAKE_MAX_MS, this.idleTimeoutMs());
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('TLS handshake timeout')), timeoutMs);
      secure.once('secure', () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    }).catch((err: unknown) => {
      this.log.info({ err: (err as Error).message }, `${this.#spec.protocol} TLS handshake failed`);
      secure.destroy();
      this.#onClose();
      throw err;
    });
    this.#socket = secure;
    this.secure = true;
    this.adoptTlsSocket(secure);
    this.#attach(secure);
  }

  // ---- input --------------------------------------------------------------------------------

  /** The queue of a protocol that runs one command at a time (POP3, ManageSieve). */
  protected commandQueue<T>(execute: (item: T) => Promise<void>, shutdownNow: () => void): CommandQueue<T> {
    const session = this;
    return new CommandQueue<T>({
      get closed() {
        return session.closed;
      },
      socket: () => this.#socket,
      execute,
      crashed: (err) => {
        this.log.error({ err }, `${this.#spec.protocol} command crashed`);
        this.close();
      },
      armIdleTimer: () => this.armIdleTimer(),
      shutdownNow,
    });
  }

  // ---- output --------------------------------------------------------------------------------

  /**
   * After a command: waits until the client has taken the answer (`flowControl` is the writer's
   * wait); a client that stopped reading is logged and closed, its output never buffered without end.
   */
  protected async drainOrClose(flowControl: () => Promise<void>): Promise<void> {
    try {
      await flowControl();
    } catch (err) {
      if (!(err instanceof StalledClientError)) throw err;
      this.log.info('client stopped reading output; closing');
      this.close();
    }
  }

  /** For replies that are short lines: writes, and drops a client that leaves more than `limit` bytes unread. */
  protected writeBounded(text: string, limit: number): void {
    if (this.#closed) return;
    this.#socket.write(text);
    if (this.#socket.writableLength > limit) {
      this.log.info(`${this.#spec.protocol} client stopped reading output; disconnecting`);
      this.destroy();
    }
  }

  // ---- end -----------------------------------------------------------------------------------

  /** Closes the connection once the output is flushed (what the client sends meanwhile is dropped). */
  close(): void {
    if (this.#closed) return;
    this.flushOutput();
    const socket = this.#socket;
    if (this.#spec.closeBothWays) socket.end(() => socket.destroy());
    else socket.end();
    // A socket paused for backpressure must read on, or the client's FIN is never seen and the
    // connection never closes.
    socket.resume();
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    this.#onClose();
  }

  /** Drops the connection at once (shutdown timeout, a client that reads nothing). */
  destroy(): void {
    this.#socket.destroy();
    this.#onClose();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.disarmIdleTimer();
    this.stopLoginTimer();
    // The protocol's release runs now (synchronously where it can); `finished` waits for it.
    let released: Promise<void> | void = undefined;
    try {
      released = this.onClosed();
    } catch (err) {
      released = Promise.reject(err);
    }
    void Promise.resolve(released)
      .catch((err: unknown) => this.log.error({ err }, `${this.#spec.protocol} release failed`))
      .finally(() => this.#finish());
    this.#logLine(
      { commands: this.#commands, seconds: Math.round((Date.now() - this.#started) / 1000), ...this.disconnectFields() },
      'disconnect',
    );
  }
}
