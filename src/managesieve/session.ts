/**
 * One ManageSieve connection (RFC 5804): the capability greeting, the non-authenticated and
 * authenticated states, commands read whole with their literals (reader.ts) and run one at a
 * time (pipelined ones wait in a queue while the socket is paused), each checked against the
 * state before its module runs, errors turned into NO in one place (errors.ts), and the limits:
 * command length, literal size (the largest script), failed commands in a row, inactivity,
 * time to log in, output the client does not read.
 */
import type { Socket } from 'node:net';
import type tls from 'node:tls';
import type { AuthLimiter } from '../auth/limiter.js';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import type { Logger } from '../log.js';
import type { CommandQueue } from '../session/command-queue.js';
import { LineSession, type LineSessionSettings, type SessionOptions } from '../session/line-session.js';
import { StalledClientError } from '../session/output.js';
import type { SieveQuota, SieveScriptStore } from '../store/sieve-scripts.js';
import type { ManageSieveCommand, ManageSieveState } from './command.js';
import { replyForError } from './errors.js';
import { tokenize, type Token } from './parser.js';
import { CommandReader, type ReaderOutput } from './reader.js';
import type { ScriptValidator } from './validate.js';
import { ManageSieveWriter, sieveString } from './writer.js';

export interface ManageSieveLimits {
  /** Longest command without its literals. */
  lineLength: number;
  /** Failed commands in a row before the connection closes (Dovecot's 20). */
  badCommands: number;
  idleMs: number;
  /** Time from connecting to a successful login, 0 for no limit. */
  loginTimeoutMs: number;
  outputHighWater: number;
  outputStallMs: number;
}

export interface ManageSieveSettings extends LineSessionSettings {
  limits: ManageSieveLimits;
  quota: SieveQuota;
  /** RFC 5804 section 1.7 MAXREDIRECTS. */
  maxRedirects: number;
  /** The SIEVE capability: the extensions the interpreter supports. */
  sieveExtensions: readonly string[];
}

export interface ManageSieveContext {
  settings(): ManageSieveSettings;
  directory: Directory;
  limiter: AuthLimiter;
  logger: Logger;
  commands: ReadonlyMap<string, ManageSieveCommand>;
  /** The scripts of a user (src/store/sieve-scripts.ts). */
  scripts(user: UserRecord): SieveScriptStore;
  /** Checks a script before PUTSCRIPT stores it and for CHECKSCRIPT. */
  validate: ScriptValidator;
  /** The current certificate, for STARTTLS. */
  secureContext(): tls.SecureContext;
  /** Sessions register so that shutdown can end them. */
  sessions: Set<ManageSieveSession>;
}

/** Commands whose arguments are secret (never logged). */
const SECRET = new Set(['AUTHENTICATE']);

let sessionCounter = 0;

export class ManageSieveSession extends LineSession<ManageSieveSettings> {
  readonly ctx: ManageSieveContext;
  readonly id: string;
  readonly writer: ManageSieveWriter;
  state: ManageSieveState = 'unauthenticated';
  user: UserRecord | undefined;
  scripts: SieveScriptStore | undefined;
  readonly #reader: CommandReader;
  readonly #commands: CommandQueue<ReaderOutput>;
  #bad = 0;

  constructor(socket: Socket | tls.TLSSocket, ctx: ManageSieveContext, opts: SessionOptions) {
    const id = `${process.pid.toString(36)}s${(++sessionCounter).toString(36)}`;
    super(socket, opts, { protocol: 'managesieve', log: ctx.logger.child({ session: id }), secureContext: () => ctx.secureContext() });
    this.ctx = ctx;
    this.id = id;
    const settings = ctx.settings();
    this.writer = new ManageSieveWriter(socket, {
      highWaterMark: settings.limits.outputHighWater,
      stallTimeoutMs: settings.limits.outputStallMs,
    });
    this.#reader = new CommandReader(settings.limits.lineLength, settings.quota.maxScriptSize);
    this.#commands = this.commandQueue<ReaderOutput>(
      (input) => this.#execute(input),
      () => this.#shutdownNow(),
    );
    ctx.sessions.add(this);
  }

  get settings(): ManageSieveSettings {
    return this.ctx.settings();
  }

  start(): void {
    this.beginSession();
    // RFC 5804 section 1.7: the greeting is the capability list and OK.
    this.writeCapabilities();
    this.writer.ok('maild ManageSieve ready.');
    this.startLoginTimer(this.settings.limits.loginTimeoutMs);
  }

  /** RFC 5804 section 1.7, as Pigeonhole answers (SASL empty before TLS, STARTTLS until then). */
  writeCapabilities(): void {
    const s = this.settings;
    const lines: Array<[string, string?]> = [
      ['IMPLEMENTATION', 'maild'],
      // "This list can be empty if and only if STARTTLS is also advertised" (section 1.7).
      ['SASL', this.state === 'unauthenticated' && this.cleartextAllowed ? 'PLAIN LOGIN' : ''],
      ['SIEVE', s.sieveExtensions.join(' ')],
    ];
    if (!this.secure && this.tlsMode === 'starttls' && this.state === 'unauthenticated') lines.push(['STARTTLS']);
    lines.push(['MAXREDIRECTS', String(s.maxRedirects)]);
    if (this.user) lines.push(['OWNER', this.user.email]);
    lines.push(['UNAUTHENTICATE'], ['VERSION', '1.0']);
    for (const [name, value] of lines)
      this.writer.line(value === undefined ? sieveString(name) : `${sieveString(name)} ${sieveString(value)}`);
  }

  // ---- input ---------------------------------------------------------------------------------

  protected onData(chunk: Buffer): void {
    if (this.closed) return;
    this.armIdleTimer();
    this.#commands.push(this.#reader.push(chunk));
  }

  /** The client's next response (SASL continuations, RFC 5804 section 2.1); null when the connection closes. */
  async readResponse(): Promise<Token[] | null> {
    const input = await this.#commands.next();
    if (input === null) return null;
    if ('command' in input) return tokenize(input.command);
    if ('fatal' in input) {
      this.#fatal(input.fatal);
      return null;
    }
    return [];
  }

  async #execute(input: ReaderOutput): Promise<void> {
    if ('fatal' in input) return this.#fatal(input.fatal);
    if ('tooLong' in input) return this.#refuse({ text: 'Command line too long.', bad: true });
    if ('literalTooLarge' in input) {
      return this.#refuse({ code: 'QUOTA/MAXSIZE', text: `Literal larger than ${this.settings.quota.maxScriptSize} octets.`, bad: true });
    }
    let name = '';
    try {
      const tokens = tokenize(input.command);
      if (tokens.length === 0) return this.#refuse({ text: 'Empty command.', bad: true });
      const first = tokens[0]!;
      if (first.kind !== 'atom') return this.#refuse({ text: 'Command name expected.', bad: true });
      name = first.text.toUpperCase();
      const args = tokens.slice(1);
      this.countCommand();
      this.log.debug({ command: name.slice(0, 20), args: SECRET.has(name) ? '<hidden>' : args.length }, 'managesieve command');
      const command = this.ctx.commands.get(name);
      if (!command) return this.#refuse({ text: 'Unknown command.', bad: true });
      if (!command.states.includes(this.state)) {
        return this.#refuse({ text: this.state === 'unauthenticated' ? 'Authenticate first.' : 'Already authenticated.', bad: true });
      }
      await command.run(this, args);
      this.#bad = 0;
    } catch (err) {
      if (err instanceof StalledClientError) {
        this.log.info('client stopped reading output; closing');
        this.close();
        return;
      }
      const reply = replyForError(err);
      if (reply.unexpected) this.log.error({ err, command: name }, 'managesieve command failed');
      else this.log.debug({ err: (err as Error).message, command: name }, 'managesieve command refused');
      if (this.closed) return;
      this.#refuse(reply);
    }
    await this.drainOrClose(() => this.writer.flowControl());
  }

  #refuse(reply: { code?: string; text: string; bad: boolean }): void {
    this.writer.no(reply.text, reply.code);
    if (!reply.bad) return;
    if (++this.#bad >= this.settings.limits.badCommands) {
      this.writer.bye('Too many invalid commands.');
      this.close();
    }
  }

  #fatal(text: string): void {
    this.log.info({ reason: text }, 'managesieve protocol error; closing');
    this.writer.bye(text);
    this.close();
  }

  protected idleTimeoutMs(): number {
    return this.settings.limits.idleMs;
  }

  protected onIdle(): void {
    if (this.#commands.running) {
      this.armIdleTimer();
      return;
    }
    this.log.info({ state: this.state }, 'managesieve idle for too long');
    this.writer.bye('Disconnected for inactivity.');
    this.close();
  }

  protected override onLoginTimeout(): 'busy' | void {
    if (this.state !== 'unauthenticated') return;
    if (this.#commands.running) return 'busy';
    this.log.info({ ip: this.ip }, 'managesieve login timeout: no login in time');
    this.writer.bye('Login timed out.');
    this.close();
  }

  // ---- login, TLS, end -----------------------------------------------------------------------

  loggedIn(user: UserRecord, mechanism: string): void {
    this.stopLoginTimer();
    this.user = user;
    this.scripts = this.ctx.scripts(user);
    this.state = 'authenticated';
    this.log = this.log.child({ user: user.email });
    this.log.info({ mechanism, ip: this.ip, tls: this.secure }, 'managesieve login');
  }

  /** UNAUTHENTICATE (RFC 5804 section 2.14.1): back to the non-authenticated state. */
  loggedOut(): void {
    this.log.info('managesieve unauthenticate');
    this.user = undefined;
    this.scripts = undefined;
    this.state = 'unauthenticated';
    this.startLoginTimer(this.settings.limits.loginTimeoutMs);
  }

  protected override dropInputBeforeTls(): void {
    this.#commands.clear();
    this.#reader.reset();
  }

  protected override adoptTlsSocket(secure: tls.TLSSocket): void {
    this.writer.setSocket(secure);
  }

  /** Server shutdown: BYE (TRYLATER) once the running command is done. */
  shutdown(): void {
    this.#commands.shutdown();
  }

  #shutdownNow(): void {
    this.writer.bye('Server shutting down.', 'TRYLATER');
    this.close();
  }

  protected override onClosed(): void {
    this.#commands.closed();
    this.ctx.sessions.delete(this);
  }

  protected override disconnectFields(): Record<string, unknown> {
    return { bytesOut: this.writer.bytesOut };
  }
}
