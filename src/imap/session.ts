/**
 * One IMAP connection: reads commands one at a time, checks each against the session state,
 * runs its module, maps errors to responses in one place, and enforces the limits (line and
 * literal sizes, bad commands, idle time, output buffer).
 */
import type { Socket } from 'node:net';
import type tls from 'node:tls';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import type { AuthLimiter } from '../auth/limiter.js';
import type { Logger } from '../log.js';
import { LineSession, type LineSessionSettings, type SessionOptions } from '../session/line-session.js';
import type { ImapCommand, ImapState, SessionState } from './command.js';
import { replyForError } from './errors.js';
import { isValidTag, parseCommand, ParseError, type ParsedCommand } from './parser.js';
import { ImapReader, type LiteralDecision, type LiteralRequest, type Segment } from './reader.js';
import { ImapWriter, StalledClientError } from './writer.js';
import type { MailService, Account } from '../store/mail/service.js';
import type { SelectedMailbox } from './selected.js';

export interface ImapLimits {
  /** Longest command line without literals (RFC 7162 section 4 wants at least 8192). */
  lineLength: number;
  /** Largest literal outside APPEND once logged in. */
  literalSize: number;
  /** Largest literal before login. */
  literalSizeBeforeLogin: number;
  /** APPEND's limit: the message size limit (announced as APPENDLIMIT). */
  appendSize: number;
  badCommandsBeforeLogin: number;
  badCommandsAfterLogin: number;
  idleBeforeLoginMs: number;
  /** Time from connecting to a successful login, 0 for no limit (Dovecot's login timeout). */
  loginTimeoutMs: number;
  idleAfterLoginMs: number;
  connectionsPerUserIp: number;
  outputHighWater: number;
  outputStallMs: number;
}

export interface ImapSettings extends LineSessionSettings {
  hostname: string;
  limits: ImapLimits;
}

export interface ImapContext {
  settings(): ImapSettings;
  directory: Directory;
  mail: MailService;
  limiter: AuthLimiter;
  logger: Logger;
  commands: ReadonlyMap<string, ImapCommand>;
  /** The current certificate, for STARTTLS. */
  secureContext(): tls.SecureContext;
  /** Sessions register so shutdown can say BYE to them. */
  sessions: Set<ImapSession>;
}

let sessionCounter = 0;

export class ImapSession extends LineSession<ImapSettings> {
  readonly ctx: ImapContext;
  readonly id: string;
  readonly writer: ImapWriter;
  #reader: ImapReader;
  #state: ImapState = { name: 'not-authenticated' };
  /** LOGOUT ran: no command follows. */
  #loggedOut = false;
  /** ENABLEd extensions (RFC 5161): CONDSTORE, QRESYNC. */
  readonly enabled = new Set<string>();
  /** CONDSTORE was activated by a command that implies it (RFC 7162 section 3.1). */
  condstore = false;
  #badCommands = 0;
  /** A command is running: the idle timer waits (it measures the client's silence, not our work). */
  #busy = false;
  #lineWaiter: ((line: Buffer | null) => void) | undefined;
  /** The user whose session per user and address is counted (released on close). */
  #countedUser: string | undefined;

  constructor(socket: Socket | tls.TLSSocket, ctx: ImapContext, opts: SessionOptions) {
    const id = `${process.pid.toString(36)}${(++sessionCounter).toString(36)}`;
    super(socket, opts, { protocol: 'imap', log: ctx.logger.child({ session: id }), secureContext: () => ctx.secureContext() });
    this.ctx = ctx;
    this.id = id;
    const limits = ctx.settings().limits;
    this.writer = new ImapWriter(socket, { highWaterMark: limits.outputHighWater, stallTimeoutMs: limits.outputStallMs });
    this.#reader = this.#newReader();
    ctx.sessions.add(this);
  }

  get settings(): ImapSettings {
    return this.ctx.settings();
  }

  get state(): SessionState | 'logout' {
    return this.#loggedOut ? 'logout' : this.#state.name;
  }

  get user(): UserRecord | undefined {
    return this.#state.name === 'not-authenticated' ? undefined : this.#state.user;
  }

  /** The selected mailbox's view, if one is selected. */
  get selected(): SelectedMailbox | undefined {
    return this.#state.name === 'selected' ? this.#state.mailbox : undefined;
  }

  start(): void {
    this.beginSession();
    this.writer.untagged(`OK [CAPABILITY ${this.capabilities().join(' ')}] maild IMAP ready`);
    this.startLoginTimer(this.settings.limits.loginTimeoutMs);
  }

  /** No login within imap.login_timeout: the connection goes, however busy it kept itself. */
  protected override onLoginTimeout(): 'busy' | void {
    if (this.state !== 'not-authenticated') return;
    // A command (a password check) is running: its outcome decides; look again shortly.
    if (this.#busy) return 'busy';
    this.log.info({ ip: this.ip }, 'imap login timeout: no login in time');
    this.#bye('Login timed out, closing connection.');
  }

  protected onData(chunk: Buffer): void {
    if (!this.#busy) this.armIdleTimer();
    this.#reader.push(chunk);
    // Input that arrives while a command runs waits in the reader; past a line's worth the
    // socket stops reading, so TCP holds the client back rather than our memory growing.
    if (this.#reader.queuedBytes > this.#inputQueueMax) this.socket.pause();
    // A client that floods while a command runs must not queue without bound.
    if (this.#reader.queuedBytes > this.settings.limits.lineLength + this.settings.limits.appendSize + 65_536) {
      this.#bye('Too much input while a command is running');
    }
  }

  get #inputQueueMax(): number {
    return this.settings.limits.lineLength + 65_536;
  }

  /** Lets the reader go on with queued input, and the socket read again once that is small. */
  #resumeInput(): void {
    this.#reader.resume();
    if (!this.closed && this.#reader.queuedBytes <= this.#inputQueueMax && this.socket.isPaused()) this.socket.resume();
  }

  #newReader(): ImapReader {
    const limits = this.ctx.settings().limits;
    return new ImapReader(
      {
        onCommand: (segments) => this.#onCommand(segments),
        onLiteral: (req) => this.#onLiteral(req),
        onLineTooLong: () => this.#bye('Command line too long'),
        onProtocolError: (message) => this.#bye(message),
      },
      // A refused {N+} literal is read and dropped up to 16 MiB past APPENDLIMIT, so a client a
      // little over the limit gets a clean NO [TOOBIG]; beyond that the connection closes.
      { maxLineLength: limits.lineLength, maxDiscard: limits.appendSize + 16 * 1024 * 1024 },
    );
  }

  /** The capability list for the current state (RFC 3501 section 7.2.1). */
  capabilities(): string[] {
    const caps = [
      'IMAP4rev1',
      'LITERAL+',
      'SASL-IR',
      'ID',
      'ENABLE',
      'IDLE',
      'NAMESPACE',
      'UNSELECT',
      'CHILDREN',
      'SPECIAL-USE',
      'CREATE-SPECIAL-USE',
      'UIDPLUS',
      'MOVE',
      'LIST-EXTENDED',
      'LIST-STATUS',
      'ESEARCH',
      'QUOTA',
      'QUOTA=RES-STORAGE',
      'CONDSTORE',
      'QRESYNC',
    ];
    caps.push(`APPENDLIMIT=${this.settings.limits.appendSize}`);
    if (this.state === 'not-authenticated') {
      if (!this.secure && this.tlsMode === 'starttls') caps.push('STARTTLS');
      if (this.cleartextAllowed) caps.push('AUTH=PLAIN', 'AUTH=LOGIN');
      else caps.push('LOGINDISABLED');
    }
    return caps;
  }

  /** The idle timeout: it runs only while the session waits for the client. */
  protected idleTimeoutMs(): number {
    const limits = this.settings.limits;
    return this.state === 'not-authenticated' ? limits.idleBeforeLoginMs : limits.idleAfterLoginMs;
  }

  protected onIdle(): void {
    this.#bye('Autologout; idle for too long');
  }

  #onLiteral(req: LiteralRequest): LiteralDecision {
    const limits = this.settings.limits;
    const head = req.partial.toString('latin1', 0, Math.min(req.partial.length, 200));
    const m = /^(\S+) +(\S+)/.exec(head);
    const tag = m && isValidTag(m[1]!) ? m[1]! : '*';
    const name = (m?.[2] ?? '').toUpperCase();
    const isAppend = name === 'APPEND' && this.state !== 'not-authenticated';
    const limit = isAppend ? limits.appendSize : this.state === 'not-authenticated' ? limits.literalSizeBeforeLogin : limits.literalSize;
    if (req.size > limit || req.sizeSoFar + req.size > limit + limits.lineLength * 4) {
      // Refused before the client sends it (RFC 7888 section 4; RFC 7889 TOOBIG for APPEND).
      if (isAppend) this.writer.tagged(tag, 'NO', 'Message too large', 'TOOBIG');
      else this.writer.tagged(tag, 'BAD', 'Literal too large');
      this.#countBad();
      return { accept: false };
    }
    if (!req.nonSync) this.writer.continuation('Ready for literal data');
    return { accept: true };
  }

  #onCommand(segments: Segment[]): void {
    if (this.closed) return;
    if (this.#lineWaiter) {
      const waiter = this.#lineWaiter;
      this.#lineWaiter = undefined;
      this.#reader.pause();
      this.disarmIdleTimer();
      const text = segments.map((s) => ('text' in s ? s.text : s.literal));
      waiter(Buffer.concat(text));
      return;
    }
    this.#reader.pause();
    // A slow command (a login that waits out failure delays, a big SEARCH) is not the client
    // being idle: the timer runs again once the answer is out and the next command is awaited.
    this.#busy = true;
    this.disarmIdleTimer();
    void this.#execute(segments)
      .then(() => this.#drainOutput())
      .then(
        () => {
          this.#busy = false;
          if (this.closed || this.state === 'logout') return;
          this.armIdleTimer();
          this.#resumeInput();
        },
        (err: unknown) => {
          this.log.error({ err }, 'imap command crashed');
          this.#bye('Internal error');
        },
      );
  }

  /**
   * Holds the next command back while the client is behind on reading our output. Without it a
   * client that pipelines commands and reads nothing (CAPABILITY answers 20 times its size) makes
   * the socket's buffer grow without end; with it input waits in the reader, whose queue is
   * bounded, and a client that reads nothing for outputStallMs is dropped.
   */
  #drainOutput(): Promise<void> {
    return this.drainOrClose(() => this.writer.flowControl());
  }

  /** Reads one raw line from the client (IDLE's DONE, AUTHENTICATE responses); null when the connection closes. */
  readLine(): Promise<Buffer | null> {
    return new Promise((resolve) => {
      if (this.closed) return resolve(null);
      this.#lineWaiter = resolve;
      this.armIdleTimer();
      this.#resumeInput();
    });
  }

  /** Wakes a pending readLine (IDLE) with null, e.g. when the session must end. */
  #cancelLineWait(): void {
    const waiter = this.#lineWaiter;
    this.#lineWaiter = undefined;
    waiter?.(null);
  }

  async #execute(segments: Segment[]): Promise<void> {
    let parsed: ParsedCommand;
    try {
      parsed = parseCommand(segments);
    } catch (err) {
      const tag = err instanceof ParseError ? (err.tag ?? '*') : '*';
      this.writer.tagged(tag, 'BAD', err instanceof ParseError ? `Error in IMAP command: ${err.message}` : 'Error in IMAP command');
      this.#countBad();
      return;
    }
    this.countCommand();
    const command = this.ctx.commands.get(parsed.name);
    if (!command) {
      this.writer.tagged(parsed.tag, 'BAD', `Unknown command ${parsed.name.slice(0, 40)}`);
      this.#countBad();
      return;
    }
    const state = this.#state;
    if (this.#loggedOut || !command.states.includes(state.name)) {
      this.writer.tagged(parsed.tag, 'BAD', `${parsed.name} is not valid in this state`);
      this.#countBad();
      return;
    }
    try {
      const result = (await command.run(this, parsed, state)) ?? {};
      if (this.closed || result.answered) return;
      await this.flushUpdates(parsed.name);
      const status = result.status ?? 'OK';
      this.writer.tagged(parsed.tag, status, result.text ?? `${parsed.name} completed`, result.code);
      if (status === 'BAD') this.#countBad();
    } catch (err) {
      if (err instanceof StalledClientError) {
        this.log.info('client stopped reading output; closing');
        this.close();
        return;
      }
      const reply = replyForError(err);
      if (reply.unexpected) this.log.error({ err, command: parsed.name }, 'imap command failed');
      else this.log.debug({ err: (err as Error).message, command: parsed.name }, 'imap command refused');
      if (this.closed) return;
      await this.flushUpdates(parsed.name).catch(() => undefined);
      this.writer.tagged(parsed.tag, reply.status, reply.text, reply.code);
      if (reply.status === 'BAD') this.#countBad();
    }
  }

  /**
   * Sends pending mailbox changes (EXISTS, EXPUNGE/VANISHED, FETCH FLAGS) before the tagged
   * reply. RFC 3501 section 7.4.1: no EXPUNGE during FETCH, STORE and SEARCH (the UID forms may).
   */
  async flushUpdates(commandName: string): Promise<void> {
    if (!this.selected) return;
    const expungeAllowed = !['FETCH', 'STORE', 'SEARCH'].includes(commandName);
    await this.selected.flush(this, expungeAllowed);
  }

  /**
   * CONDSTORE from now on, for a command that implies it (RFC 7162 section 3.1). With a mailbox
   * selected the client learns its HIGHESTMODSEQ first (the one it has seen the changes up to).
   */
  enableCondstore(): void {
    if (this.condstore) return;
    this.condstore = true;
    if (this.selected) this.writer.untagged(`OK [HIGHESTMODSEQ ${this.selected.knownModseq}] Highest`);
  }

  #countBad(): void {
    this.#badCommands++;
    const limits = this.settings.limits;
    const max = this.state === 'not-authenticated' ? limits.badCommandsBeforeLogin : limits.badCommandsAfterLogin;
    if (this.#badCommands >= max) this.#bye('Too many invalid IMAP commands.');
  }

  /**
   * Logs in (LOGIN, AUTHENTICATE): the limit per user and address, the account with its special
   * folders, then the authenticated state. Returns a refusal, or undefined.
   */
  async login(user: UserRecord, mechanism: string): Promise<{ code: string; text: string } | undefined> {
    if (!this.ctx.limiter.openSession(user.email, this.ip, this.settings.limits.connectionsPerUserIp)) {
      this.log.warn({ user: user.email, ip: this.ip }, 'too many sessions for this user and address');
      return { code: 'LIMIT', text: 'Too many connections from this user and address' };
    }
    this.#countedUser = user.email;
    this.stopLoginTimer();
    let account: Account;
    try {
      account = await this.ctx.mail.account(user);
      await account.ensureSpecialFolders();
    } catch (err) {
      this.ctx.limiter.closeSession(user.email, this.ip);
      this.#countedUser = undefined;
      throw err;
    }
    this.#state = { name: 'authenticated', user, account };
    this.log = this.log.child({ user: user.email });
    this.log.info({ mechanism, ip: this.ip, tls: this.secure }, 'imap login');
    return undefined;
  }

  /** SELECT, EXAMINE: `mailbox` becomes the selected one (the previous one was deselected). */
  select(mailbox: SelectedMailbox): void {
    if (this.#state.name === 'not-authenticated') throw new Error('select before login');
    const { user, account } = this.#state;
    this.selected?.close();
    this.#state = { name: 'selected', user, account, mailbox };
  }

  /**
   * Back to the authenticated state (CLOSE, UNSELECT, DELETE of the selected mailbox, a new
   * SELECT). The view is closed, unless the caller closes it itself (CLOSE, once it expunged).
   */
  deselect(opts: { leaveViewOpen?: boolean } = {}): void {
    if (this.#state.name !== 'selected') return;
    const { user, account, mailbox } = this.#state;
    this.#state = { name: 'authenticated', user, account };
    if (!opts.leaveViewOpen) mailbox.close();
  }

  protected override flushOutput(): void {
    this.writer.flushHeld();
  }

  /** STARTTLS (RFC 3501 section 6.2.1): the plaintext that followed the command is dropped. */
  protected override dropInputBeforeTls(): void {
    this.#reader.close();
  }

  protected override adoptTlsSocket(secure: tls.TLSSocket): void {
    this.writer.setSocket(secure);
    this.#reader = this.#newReader();
    this.#reader.pause(); // resumed when the STARTTLS command completes
  }

  #bye(text: string): void {
    if (this.closed) return;
    if (!this.writer.inLiteral) this.writer.untagged(`BYE ${text}`);
    else this.log.info({ reason: text }, 'closing in the middle of a literal, without BYE');
    this.close();
  }

  /** Sends BYE for a server shutdown (RFC 3501 section 7.1.5). */
  shutdown(): void {
    this.#bye('Server shutting down.');
  }

  protected override onClosed(): void {
    this.#reader.close();
    this.#cancelLineWait();
    this.deselect();
    if (this.#countedUser !== undefined) this.ctx.limiter.closeSession(this.#countedUser, this.ip);
    this.#countedUser = undefined;
    this.ctx.sessions.delete(this);
  }

  protected override disconnectFields(): Record<string, unknown> {
    return { bytesOut: this.writer.bytesOut };
  }

  /** LOGOUT: BYE, the tagged OK, then close (RFC 3501 section 6.1.3). */
  logout(tag: string): void {
    this.#loggedOut = true;
    this.writer.untagged('BYE Logging out');
    this.writer.tagged(tag, 'OK', 'Logout completed');
    this.close();
  }
}
