/**
 * One POP3 connection (RFC 1939): the AUTHORIZATION, TRANSACTION and UPDATE states, commands
 * read one line at a time (pipelined commands, RFC 2449 section 6.6, wait their turn in a
 * queue while the socket is paused), each checked against the state before its module runs,
 * errors turned into -ERR in one place (errors.ts), and the limits: line length, failed
 * commands in a row, inactivity, output the client does not read.
 */
import { logLoginRefused } from '../auth/login.js';
import type { Socket } from 'node:net';
import type tls from 'node:tls';
import type { AuthLimiter } from '../auth/limiter.js';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import { isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import { LineSession, type LineSessionSettings, type SessionOptions } from '../session/line-session.js';
import type { CommandQueue } from '../session/command-queue.js';
import type { MailService } from '../store/mail/service.js';
import type { Pop3Command, Pop3State } from './command.js';
import { BrokenResponseError, Pop3Error, replyForError } from './errors.js';
import type { LoginDelay } from './login-delay.js';
import { Maildrop } from './maildrop.js';
import { LineReader, type InputLine } from '../session/line-reader.js';
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

export interface Pop3Settings extends LineSessionSettings {
  hostname: string;
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

/** Commands whose arguments are secret (never logged). */
const SECRET = new Set(['PASS', 'AUTH']);

let sessionCounter = 0;

export class Pop3Session extends LineSession<Pop3Settings> {
  readonly ctx: Pop3Context;
  readonly id: string;
  readonly writer: Pop3Writer;
  state: Pop3State | 'update' = 'authorization';
  /** The name from USER, waiting for PASS. */
  pendingUser: string | undefined;
  user: UserRecord | undefined;
  maildrop: Maildrop | undefined;
  /** Counters for the disconnect log line (Dovecot's pop3_logout_format). */
  readonly stats = { retr: 0, retrBytes: 0, top: 0, topBytes: 0, deleted: 0 };
  #reader: LineReader;
  readonly #commands: CommandQueue<InputLine>;
  #bad = 0;
  /** QUIT's UPDATE is done and the maildrop released (`finished` waits for it after a QUIT). */
  #quitDone!: () => void;
  readonly #updateDone = new Promise<void>((resolve) => (this.#quitDone = resolve));

  constructor(socket: Socket | tls.TLSSocket, ctx: Pop3Context, opts: SessionOptions) {
    const id = `${process.pid.toString(36)}p${(++sessionCounter).toString(36)}`;
    super(socket, opts, { protocol: 'pop3', log: ctx.logger.child({ session: id }), secureContext: () => ctx.secureContext() });
    this.ctx = ctx;
    this.id = id;
    const limits = ctx.settings().limits;
    this.writer = new Pop3Writer(socket, { highWaterMark: limits.outputHighWater, stallTimeoutMs: limits.outputStallMs });
    this.#reader = new LineReader(limits.lineLength);
    this.#commands = this.commandQueue<InputLine>(
      (line) => this.#execute(line),
      () => this.#shutdownNow(),
    );
    ctx.sessions.add(this);
  }

  get settings(): Pop3Settings {
    return this.ctx.settings();
  }

  start(): void {
    this.beginSession();
    // RFC 1939 section 4: the greeting. No APOP timestamp: APOP is not offered.
    this.writer.ok('maild POP3 ready.');
    this.startLoginTimer(this.settings.limits.loginTimeoutMs);
  }

  /** The CAPA list for the current state (RFC 2449 section 5). */
  capabilities(): string[] {
    const caps = ['CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'PIPELINING', 'AUTH-RESP-CODE'];
    if (this.state === 'authorization') {
      if (!this.secure && this.tlsMode === 'starttls') caps.push('STLS');
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

  protected onData(chunk: Buffer): void {
    if (this.closed) return;
    this.armIdleTimer();
    this.#commands.push(this.#reader.push(chunk));
  }

  /** The next line from the client (AUTH's continuation lines); null when the connection closes. */
  readLine(): Promise<InputLine | null> {
    return this.#commands.next();
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
    this.countCommand();
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
      if (this.closed) return;
      this.#refuse(reply);
    }
    await this.drainOrClose(() => this.writer.flowControl());
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

  protected idleTimeoutMs(): number {
    return this.settings.limits.idleMs;
  }

  protected onIdle(): void {
    if (this.#commands.running) {
      // A command is running (RETR to a slow reader: the writer's stall timeout watches it).
      this.armIdleTimer();
      return;
    }
    // RFC 1939 section 3: on autologout the server closes the connection without a response and
    // without entering UPDATE (nothing marked with DELE is deleted).
    this.log.info({ state: this.state }, 'pop3 autologout: idle for too long');
    this.close();
  }

  /** No login within pop3.login_timeout: the connection goes, whatever it was doing meanwhile. */
  protected override onLoginTimeout(): 'busy' | void {
    if (this.state !== 'authorization') return;
    // A password check is running: its outcome decides; look again shortly.
    if (this.#commands.running) return 'busy';
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
    if (this.closed) {
      // The client went away while the maildrop was being opened.
      await maildrop.close().catch(() => undefined);
      return;
    }
    this.stopLoginTimer();
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
  protected override dropInputBeforeTls(): void {
    this.#commands.clear();
    this.#reader.reset();
  }

  protected override adoptTlsSocket(secure: tls.TLSSocket): void {
    this.writer.setSocket(secure);
    // Nothing learned before TLS is kept (RFC 2595 section 4: the client forgets the capabilities).
    this.pendingUser = undefined;
  }

  /**
   * Server shutdown: a session waiting for a command is told and closed at once (nothing is
   * deleted: only QUIT enters UPDATE); a running command (a RETR, the UPDATE of a QUIT) ends first.
   */
  shutdown(): void {
    this.#commands.shutdown();
  }

  #shutdownNow(): void {
    this.writer.err('Server shutting down.', 'SYS/TEMP');
    this.close();
  }

  /** QUIT's end: its UPDATE is done and the maildrop released. */
  quitDone(): void {
    this.#quitDone();
  }

  /** Without a QUIT before, the maildrop is released without UPDATE. */
  protected override onClosed(): Promise<void> {
    this.#commands.closed();
    this.ctx.sessions.delete(this);
    // A QUIT in progress releases the maildrop itself, after its UPDATE.
    if (this.state === 'update') return this.#updateDone;
    const maildrop = this.maildrop;
    if (!maildrop) return Promise.resolve();
    this.maildrop = undefined;
    return maildrop.close().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'releasing the maildrop failed'));
  }

  protected override disconnectFields(): Record<string, unknown> {
    return {
      bytesOut: this.writer.bytesOut,
      retr: `${this.stats.retr}/${this.stats.retrBytes}`,
      top: `${this.stats.top}/${this.stats.topBytes}`,
      deleted: this.stats.deleted,
    };
  }
}
