/**
 * One POP3 connection (RFC 1939): the AUTHORIZATION, TRANSACTION and UPDATE states, commands
 * read one line at a time (pipelined commands, RFC 2449 section 6.6, wait their turn in a
 * queue while the socket is paused), each checked against the state before its module runs,
 * errors turned into -ERR in one place (errors.ts), and the limits: line length, failed
 * commands in a row, inactivity, output the client does not read.
 */
import { drainOrClose } from '../flow-control.js';
import { logLoginRefused, passwordsAllowed } from '../auth/login.js';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { AuthLimiter } from '../auth/limiter.js';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import { isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import type { NetworkList } from '../net.js';
import type { ClientPeer } from '../listen/peer.js';
import type { MailService } from '../store/mail/service.js';
import type { Pop3Command, Pop3State } from './command.js';
import { BrokenResponseError, Pop3Error, replyForError } from './errors.js';
import type { LoginDelay } from './login-delay.js';
import { Maildrop } from './maildrop.js';
import { LineReader, type InputLine } from './reader.js';
import { Pop3Writer, StalledClientError } from './writer.js';

export interface Pop3Limits {
  /** Longest command line without CRLF (RFC 2449 section 4: 255 octets; a little more is allowed). */
  lineLength: number;
  /** Failed commands in a row before the connection closes. */
  badCommands: number;
  /** Inactivity autologout (RFC 1939 section 3: at least 10 minutes). */
  idleMs: number;
  /** Time from connecting to a successful login, 0 for no limit. */
  loginTimeoutMs: number;
  /** RFC 2449 LOGIN-DELAY, 0 for none. */
  loginDelayMs: number;
  outputHighWater: number;
  outputStallMs: number;
}

export interface Pop3Settings {
  hostname: string;
  trusted: NetworkList;
  /** 'trusted': USER/PASS and AUTH without TLS from trusted networks only; 'never': TLS first. */
  cleartextAuth: 'never' | 'trusted';
  /** One session per mailbox (pop3.lock_session): a second login gets [IN-USE]. */
  lockSession: boolean;
  limits: Pop3Limits;
}

export interface Pop3Context {
  settings(): Pop3Settings;
  directory: Directory;
  mail: MailService;
  limiter: AuthLimiter;
  loginDelay: LoginDelay;
  logger: Logger;
  commands: ReadonlyMap<string, Pop3Command>;
  /** The current certificate, for STLS. */
  secureContext(): tls.SecureContext;
  /** Sessions register so that shutdown can end them. */
  sessions: Set<Pop3Session>;
}

export interface Pop3SessionOptions {
  tlsMode: 'none' | 'starttls' | 'implicit';
  listener: string;
  /** The client (from the PROXY header when the listener takes one). */
  peer: ClientPeer;
}

/** Commands whose arguments are secret (never logged). */
const SECRET = new Set(['PASS', 'AUTH']);

let sessionCounter = 0;

export class Pop3Session {
  readonly ctx: Pop3Context;
  readonly id: string;
  readonly ip: string;
  readonly writer: Pop3Writer;
  log: Logger;
  state: Pop3State | 'update' = 'authorization';
  secure: boolean;
  /** The name from USER, waiting for PASS. */
  pendingUser: string | undefined;
  user: UserRecord | undefined;
  maildrop: Maildrop | undefined;
  /** Counters for the disconnect log line (Dovecot's pop3_logout_format). */
  readonly stats = { retr: 0, retrBytes: 0, top: 0, topBytes: 0, deleted: 0 };
  #socket: Socket | tls.TLSSocket;
  readonly #opts: Pop3SessionOptions;
  #reader: LineReader;
  readonly #queue: InputLine[] = [];
  #busy = false;
  #lineWaiter: ((line: InputLine | null) => void) | undefined;
  #closed = false;
  /** Takes this session's listeners off its current socket (STARTTLS replaces the socket). */
  #detach: () => void = () => undefined;
  #closeWhenIdle = false;
  #bad = 0;
  #commands = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  #loginTimer: NodeJS.Timeout | undefined;
  readonly #started = Date.now();
  #finish!: () => void;
  /** Resolves once the connection is closed and the maildrop (lock, mailbox) released. */
  readonly finished = new Promise<void>((resolve) => (this.#finish = resolve));

  constructor(socket: Socket | tls.TLSSocket, ctx: Pop3Context, opts: Pop3SessionOptions) {
    this.ctx = ctx;
    this.#opts = opts;
    this.#socket = socket;
    this.id = `${process.pid.toString(36)}p${(++sessionCounter).toString(36)}`;
    this.ip = opts.peer.address;
    this.secure = opts.tlsMode === 'implicit';
    this.log = ctx.logger.child({ session: this.id });
    const limits = ctx.settings().limits;
    this.writer = new Pop3Writer(socket, { highWaterMark: limits.outputHighWater, stallTimeoutMs: limits.outputStallMs });
    this.#reader = new LineReader(limits.lineLength);
    ctx.sessions.add(this);
  }

  get settings(): Pop3Settings {
    return this.ctx.settings();
  }

  get tlsMode(): Pop3SessionOptions['tlsMode'] {
    return this.#opts.tlsMode;
  }

  get trusted(): boolean {
    return this.settings.trusted.contains(this.ip);
  }

  /** May passwords be sent now (RFC 2595 section 2.1, RFC 8314): over TLS, or cleartext where allowed. */
  get cleartextAllowed(): boolean {
    return passwordsAllowed(this.secure, this.settings.cleartextAuth, this.trusted);
  }

  get closed(): boolean {
    return this.#closed;
  }

  start(): void {
    this.#attach(this.#socket);
    this.log.info({ ip: this.ip, listener: this.#opts.listener, tls: this.secure }, 'pop3 connect');
    // RFC 1939 section 4: the greeting. No APOP timestamp: APOP is not offered.
    this.writer.ok('maild POP3 ready.');
    this.#armIdleTimer();
    const loginMs = this.settings.limits.loginTimeoutMs;
    if (loginMs > 0) this.#loginTimer = setTimeout(() => this.#onLoginTimeout(), loginMs);
    this.#loginTimer?.unref();
  }

  /** The CAPA list for the current state (RFC 2449 section 5). */
  capabilities(): string[] {
    const caps = ['CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'PIPELINING', 'AUTH-RESP-CODE'];
    if (this.state === 'authorization') {
      if (!this.secure && this.#opts.tlsMode === 'starttls') caps.push('STLS');
      // Before TLS (unless cleartext is allowed here) neither USER nor SASL is announced, as
      // Dovecot does with disable_plaintext_auth (RFC 2595 section 2.1 lets a server refuse them).
      if (this.cleartextAllowed) caps.push('USER', 'SASL PLAIN LOGIN');
    }
    const delay = this.settings.limits.loginDelayMs;
    if (delay > 0) caps.push(`LOGIN-DELAY ${Math.ceil(delay / 1000)}`);
    caps.push('IMPLEMENTATION maild');
    return caps;
  }

  // ---- input ---------------------------------------------------------------------------------

  #attach(socket: Socket | tls.TLSSocket): void {
    const onData = (chunk: Buffer) => {
      this.#armIdleTimer();
      for (const input of this.#reader.push(chunk)) this.#queue.push(input);
      this.#pump();
    };
    const onError = (err: Error) => this.log.debug({ err: err.message }, 'pop3 socket error');
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

  /** Reads are paused while lines wait, so a client that pipelines a lot queues in TCP, not here. */
  #flowInput(): void {
    if (this.#closed) return;
    if (this.#queue.length > 0) this.#socket.pause();
    else this.#socket.resume();
  }

  #pump(): void {
    if (this.#closed) return;
    if (this.#lineWaiter) {
      const next = this.#queue.shift();
      if (next) {
        const waiter = this.#lineWaiter;
        this.#lineWaiter = undefined;
        waiter(next);
      }
      this.#flowInput();
      return;
    }
    if (this.#busy) {
      this.#flowInput();
      return;
    }
    const next = this.#queue.shift();
    this.#flowInput();
    if (!next) return;
    this.#busy = true;
    void this.#execute(next)
      .catch((err: unknown) => {
        this.log.error({ err }, 'pop3 command crashed');
        this.close();
      })
      .finally(() => {
        this.#busy = false;
        if (this.#closed) return;
        if (this.#closeWhenIdle) {
          this.#shutdownNow();
          return;
        }
        this.#armIdleTimer();
        this.#pump();
      });
  }

  /** The next line from the client (AUTH's continuation lines); null when the connection closes. */
  readLine(): Promise<InputLine | null> {
    return new Promise((resolve) => {
      if (this.#closed) return resolve(null);
      this.#lineWaiter = resolve;
      this.#armIdleTimer();
      this.#pump();
    });
  }

  async #execute(input: InputLine): Promise<void> {
    if ('tooLong' in input) {
      this.log.debug('pop3 line too long');
      this.#refuse({ text: 'Line too long.', bad: true, unexpected: false });
      return;
    }
    const text = input.line.toString('utf8');
    const space = text.indexOf(' ');
    const name = (space === -1 ? text : text.slice(0, space)).toUpperCase();
    const args = space === -1 ? '' : text.slice(space + 1);
    this.#commands++;
    this.log.debug({ command: name.slice(0, 20), args: SECRET.has(name) ? '<hidden>' : args.slice(0, 100) }, 'pop3 command');
    const command = this.ctx.commands.get(name);
    if (!command) {
      this.#refuse({ text: 'Unknown command.', bad: true, unexpected: false });
      return;
    }
    if (this.state === 'update' || !command.states.includes(this.state)) {
      this.#refuse({
        text: this.state === 'authorization' ? 'Log in first.' : `${name} is not valid in this state.`,
        bad: true,
        unexpected: false,
      });
      return;
    }
    try {
      await command.run(this, args);
      this.#bad = 0;
    } catch (err) {
      if (err instanceof StalledClientError) {
        this.log.info('client stopped reading output; closing');
        this.close();
        return;
      }
      if (err instanceof BrokenResponseError) {
        this.log.error({ err, command: name }, 'pop3 response broken off');
        this.close();
        return;
      }
      const reply = replyForError(err);
      if (reply.unexpected) this.log.error({ err, command: name }, 'pop3 command failed');
      else this.log.debug({ err: (err as Error).message, command: name }, 'pop3 command refused');
      if (this.#closed) return;
      this.#refuse(reply);
    }
    await drainOrClose(this);
  }

  #refuse(reply: { code?: string; text: string; bad: boolean; unexpected: boolean }): void {
    this.writer.err(reply.text, reply.code);
    if (!reply.bad) return;
    // Dovecot's rule: a client that fails this many commands in a row is broken or hostile.
    if (++this.#bad >= this.settings.limits.badCommands) {
      this.writer.err('Too many bad commands.');
      this.close();
    }
  }

  #armIdleTimer(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#closed) return;
    this.#idleTimer = setTimeout(() => this.#onIdle(), this.settings.limits.idleMs);
    this.#idleTimer.unref();
  }

  #onIdle(): void {
    if (this.#busy && !this.#lineWaiter) {
      // A command is running (RETR to a slow reader: the writer's stall timeout watches it).
      this.#armIdleTimer();
      return;
    }
    // RFC 1939 section 3: on autologout the server closes the connection without a response and
    // without entering UPDATE (nothing marked with DELE is deleted).
    this.log.info({ state: this.state }, 'pop3 autologout: idle for too long');
    this.close();
  }

  /** No login within pop3.login_timeout: the connection goes, whatever it was doing meanwhile. */
  #onLoginTimeout(): void {
    if (this.#closed || this.state !== 'authorization') return;
    if (this.#busy && !this.#lineWaiter) {
      // A password check is running: its outcome decides; look again shortly.
      this.#loginTimer = setTimeout(() => this.#onLoginTimeout(), 1000);
      this.#loginTimer.unref();
      return;
    }
    this.log.info({ ip: this.ip }, 'pop3 login timeout: no login in time');
    this.writer.err('Login timed out, closing connection.');
    this.close();
  }

  // ---- login, TLS, end -----------------------------------------------------------------------

  /**
   * After a successful password check: LOGIN-DELAY, then the maildrop (with pop3.lock_session
   * locked, [IN-USE] when another session has it), then the TRANSACTION state.
   */
  async loggedIn(user: UserRecord, mechanism: string): Promise<void> {
    const waitMs = this.ctx.loginDelay.remaining(user.email, this.settings.limits.loginDelayMs);
    if (waitMs > 0) {
      logLoginRefused(this.log, 'pop3', user.email, 'login-delay');
      throw new Pop3Error(`Logged in too recently, wait ${Math.ceil(waitMs / 1000)} seconds.`, { code: 'LOGIN-DELAY', bad: false });
    }
    const account = await this.ctx.mail.account(user);
    let maildrop: Maildrop;
    try {
      maildrop = await Maildrop.open(account, {
        lock: this.settings.lockSession,
        onLockLost: () => {
          this.log.warn('POP3 session lock lost; closing');
          this.writer.err("Couldn't update POP3 session lock.", 'SYS/TEMP');
          this.close();
        },
      });
    } catch (err) {
      if (isMailError(err) && err.code === 'IN_USE') logLoginRefused(this.log, 'pop3', user.email, 'in-use');
      throw err;
    }
    if (this.#closed) {
      // The client went away while the maildrop was being opened.
      await maildrop.close().catch(() => undefined);
      return;
    }
    clearTimeout(this.#loginTimer);
    this.maildrop = maildrop;
    this.user = user;
    this.pendingUser = undefined;
    this.state = 'transaction';
    this.ctx.loginDelay.record(user.email);
    this.log = this.log.child({ user: user.email });
    const totals = maildrop.totals();
    this.log.info({ mechanism, ip: this.ip, tls: this.secure, messages: totals.count, size: totals.size }, 'pop3 login');
  }

  /** STLS (RFC 2595 section 4): the +OK went out in cleartext; anything pipelined after it is dropped. */
  async startTls(): Promise<void> {
    const plain = this.#socket as Socket;
    this.#queue.length = 0;
    this.#reader.reset();
    this.#detach();
    plain.on('error', () => undefined);
    plain.resume();
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: this.ctx.secureContext() });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('TLS handshake timeout')), 30_000);
      secure.once('secure', () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    }).catch((err: unknown) => {
      this.log.info({ err: (err as Error).message }, 'STLS handshake failed');
      secure.destroy();
      this.#onClose();
      throw err;
    });
    this.#socket = secure;
    this.writer.setSocket(secure);
    this.secure = true;
    // Nothing learned before TLS is kept (RFC 2595 section 4: the client forgets the capabilities).
    this.pendingUser = undefined;
    this.#attach(secure);
  }

  /**
   * Server shutdown: a session waiting for a command is told and closed at once (nothing is
   * deleted: only QUIT enters UPDATE); a running command (a RETR, the UPDATE of a QUIT) ends first.
   */
  shutdown(): void {
    if (this.#closed) return;
    if (this.#busy && !this.#lineWaiter) {
      this.#closeWhenIdle = true;
      return;
    }
    this.#shutdownNow();
  }

  #shutdownNow(): void {
    this.writer.err('Server shutting down.', 'SYS/TEMP');
    this.close();
  }

  /** QUIT's end: its UPDATE is done and the maildrop released. */
  quitDone(): void {
    this.#finish();
  }

  /** Closes the connection. Without a QUIT before, the maildrop is released without UPDATE. */
  close(): void {
    if (this.#closed) return;
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 2000).unref();
    this.#onClose();
  }

  /** Drops the connection at once (shutdown timeout). */
  destroy(): void {
    this.#socket.destroy();
    this.#onClose();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    clearTimeout(this.#loginTimer);
    this.#queue.length = 0;
    const waiter = this.#lineWaiter;
    this.#lineWaiter = undefined;
    waiter?.(null);
    const maildrop = this.maildrop;
    // A QUIT in progress releases the maildrop itself, after its UPDATE.
    if (maildrop && this.state !== 'update') {
      this.maildrop = undefined;
      maildrop
        .close()
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'releasing the maildrop failed'))
        .finally(() => this.#finish());
    } else if (this.state !== 'update') {
      this.#finish();
    }
    this.ctx.sessions.delete(this);
    this.log.info(
      {
        commands: this.#commands,
        bytesOut: this.writer.bytesOut,
        seconds: Math.round((Date.now() - this.#started) / 1000),
        retr: `${this.stats.retr}/${this.stats.retrBytes}`,
        top: `${this.stats.top}/${this.stats.topBytes}`,
        deleted: this.stats.deleted,
      },
      'pop3 disconnect',
    );
  }
}
