/**
 * One client connection of Dovecot's authentication protocol (Postfix's smtpd, one connection per
 * process, kept between SMTP sessions). The server speaks first: VERSION, the MECH lines, SPID,
 * CUID, COOKIE, DONE. The client answers VERSION and CPID, then multiplexes requests by id:
 * AUTH starts one, CONT continues it, and each ends with exactly one OK or FAIL. Password checks
 * run while further lines are read; they go through the same login function (directory, per-IP
 * failure delay) as IMAP, POP3 and submission.
 *
 * Limits: line length, requests in progress, the time a request may wait for its CONT, idle
 * time without requests, and output the client does not read.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { AuthLimiter } from '../auth/limiter.js';
import { passwordLogin, passwordsAllowed } from '../auth/login.js';
import type { Directory } from '../directory/directory.js';
import type { Logger } from '../log.js';
import { normalizeIp } from '../net.js';
import type { ClientPeer } from '../listen/peer.js';
import { LineReader } from '../session/line-reader.js';
import { LineSession, type LineSessionSettings } from '../session/line-session.js';
import type { DovecotAuthCommand, HandshakeState } from './command.js';
import { PROTOCOL_MAJOR } from './commands/version.js';
import { isExpected, ProtocolViolation, replyForError, RequestFailed } from './errors.js';
import { MECHANISMS, type Credentials, type Exchange } from './mechanisms.js';
import { line, tabEscape, type Params } from './wire.js';

/** The minor protocol version announced (Dovecot 2.3 announces 1.2). */
const PROTOCOL_MINOR = 2;

/**
 * Longest failed-login delay before a FAIL: Postfix gives the auth server 10 seconds to answer
 * (AUTH_TIMEOUT in xsasl_dovecot_server.c) and reports a lost connection after that.
 */
const MAX_FAILURE_DELAY_MS = 5000;

/** Output the client may leave unread before it is disconnected (replies are short lines). */
const OUTPUT_LIMIT = 256 * 1024;

export interface DovecotAuthLimits {
  lineLength: number;
  pendingRequests: number;
  requestTimeoutMs: number;
  idleMs: number;
  connections: number;
}

/** cleartextAuth is auth.cleartext: 'trusted' lets clients in trusted_networks (by `rip`) send passwords unsecured. */
export interface DovecotAuthSettings extends LineSessionSettings {
  limits: DovecotAuthLimits;
}

export interface DovecotAuthContext {
  settings(): DovecotAuthSettings;
  directory: Directory;
  limiter: AuthLimiter;
  logger: Logger;
  commands: ReadonlyMap<string, DovecotAuthCommand>;
}

/** A request in progress. */
export interface AuthRequest {
  id: string;
  mechanism: string;
  params: Params;
  exchange: Exchange;
  /** The password is being checked: no CONT is expected any more. */
  checking?: boolean;
  timer?: NodeJS.Timeout;
}

let connectionCounter = 0;

export class DovecotAuthSession extends LineSession<DovecotAuthSettings> {
  readonly ctx: DovecotAuthContext;
  readonly id: number;
  readonly requests = new Map<string, AuthRequest>();
  handshake: HandshakeState = 'version';
  clientPid: number | undefined;
  readonly #reader: LineReader;
  #closeWhenIdle = false;

  constructor(socket: Socket, ctx: DovecotAuthContext, listener: string, peer: ClientPeer) {
    const id = ++connectionCounter;
    super(
      socket,
      { tlsMode: 'none', listener, peer },
      {
        protocol: 'dovecot-auth',
        log: ctx.logger.child({ listener, authConnection: id }),
        logLevel: 'debug',
        // A client that writes its next request to a closed unix socket gets EPIPE at once,
        // which makes Postfix reconnect instead of reporting a lost connection.
        closeBothWays: true,
      },
    );
    this.ctx = ctx;
    this.id = id;
    this.#reader = new LineReader(ctx.settings().limits.lineLength);
  }

  get settings(): DovecotAuthSettings {
    return this.ctx.settings();
  }

  /** The connecting process's address ('' over a unix socket). */
  get peer(): string {
    return this.ip;
  }

  start(): void {
    this.beginSession();
    // The server's handshake; the client may have sent its own already (Postfix does not wait).
    let handshake = line('VERSION', String(PROTOCOL_MAJOR), String(PROTOCOL_MINOR));
    for (const [name, mechanism] of MECHANISMS) handshake += line('MECH', name, ...mechanism.flags);
    handshake += line('SPID', String(process.pid));
    handshake += line('CUID', String(this.id));
    handshake += line('COOKIE', randomBytes(16).toString('hex'));
    handshake += line('DONE');
    this.#send(handshake);
  }

  /**
   * May a password come through a request with these parameters? `secured` (the client's
   * connection has TLS) always; otherwise only where auth.cleartext allows it for trusted
   * networks and `rip` is in one: the same rule as IMAP, POP3 and submission.
   */
  passwordsAllowed(params: Params): boolean {
    const rip = params.values.get('rip');
    const trusted = rip !== undefined && this.settings.trusted.contains(rip);
    return passwordsAllowed(params.flags.has('secured'), this.settings.cleartextAuth, trusted);
  }

  // ---- input ---------------------------------------------------------------------------------

  protected onData(chunk: Buffer): void {
    if (this.closed) return;
    for (const input of this.#reader.push(chunk)) {
      if (this.closed) return;
      if ('tooLong' in input) {
        this.#violation(new ProtocolViolation('line too long'));
        return;
      }
      this.#dispatch(input.line.toString('utf8'));
    }
    this.armIdleTimer();
  }

  #dispatch(text: string): void {
    const [name = '', ...fields] = text.split('\t');
    this.countCommand();
    const command = this.ctx.commands.get(name);
    try {
      if (!command) throw new ProtocolViolation(`unknown command ${JSON.stringify(name.slice(0, 20))}`);
      if (!command.states.includes(this.handshake))
        throw new ProtocolViolation(
          this.handshake === 'ready' ? `${name} after the handshake` : `${name} before the handshake (VERSION, then CPID) was complete`,
        );
      command.run(this, fields);
    } catch (err) {
      if (err instanceof RequestFailed) {
        // AUTH and CONT both carry the request id first.
        this.log.debug({ request: fields[0], code: err.code }, 'dovecot-auth request refused');
        this.#answerError(fields[0]!, err);
      } else if (err instanceof ProtocolViolation) {
        this.#violation(err);
      } else {
        this.log.error({ err, command: name.slice(0, 20) }, 'dovecot-auth command crashed');
        this.close();
      }
    }
  }

  /** Dovecot logs such a client as buggy and disconnects it; so do we. */
  #violation(err: ProtocolViolation): void {
    this.log.warn(
      { peer: this.peer || 'unix', pid: this.clientPid, reason: err.message },
      'dovecot-auth client broke the protocol; disconnecting',
    );
    this.close();
  }

  // ---- requests ------------------------------------------------------------------------------

  /** Registers a new request and takes its first step (with the initial response, if any). */
  begin(request: AuthRequest, initial: Buffer | undefined): void {
    this.requests.set(request.id, request);
    this.advance(request, initial);
  }

  /** Feeds the client's response to the exchange: a challenge goes out as CONT, credentials are checked. */
  advance(request: AuthRequest, response: Buffer | undefined): void {
    if (request.timer) clearTimeout(request.timer);
    let step;
    try {
      step = request.exchange.step(response);
    } catch (err) {
      this.end(request);
      throw err;
    }
    if ('challenge' in step) {
      this.#send(line('CONT', request.id, step.challenge.toString('base64')));
      // A request whose CONT never comes (Postfix leaves it when the SMTP client cancels with "*").
      request.timer = setTimeout(() => {
        this.log.debug({ request: request.id }, 'dovecot-auth request timed out waiting for CONT');
        this.end(request);
      }, this.settings.limits.requestTimeoutMs);
      request.timer.unref();
      return;
    }
    request.checking = true;
    void this.#check(request, step.credentials);
  }

  /** Forgets a request (answered, failed or timed out). */
  end(request: AuthRequest): void {
    if (request.timer) clearTimeout(request.timer);
    this.requests.delete(request.id);
    if (this.#closeWhenIdle && ![...this.requests.values()].some((r) => r.checking)) this.close();
  }

  async #check(request: AuthRequest, credentials: Credentials): Promise<void> {
    const service = request.params.values.get('service') ?? '';
    const rip = request.params.values.get('rip');
    // The failure delay is per client address: the SMTP client's, not Postfix's.
    const ip = rip ? normalizeIp(rip) : this.peer || 'local';
    try {
      if (credentials.authzid && credentials.authzid.toLowerCase() !== credentials.username.toLowerCase()) {
        this.log.info(
          { user: credentials.username.slice(0, 256), authzid: credentials.authzid.slice(0, 256), service },
          'dovecot-auth login refused: authorization as another user',
        );
        throw new RequestFailed('AUTHZ_REFUSED', credentials.username);
      }
      const outcome = await passwordLogin(
        { directory: this.ctx.directory, limiter: this.ctx.limiter, log: this.log, maxDelayMs: MAX_FAILURE_DELAY_MS },
        ip,
        credentials.username,
        credentials.password,
        `dovecot-auth/${service}`,
      );
      if (!outcome.ok) throw new RequestFailed(outcome.temporary ? 'TEMP_FAIL' : 'AUTH_FAILED', credentials.username);
      this.log.info({ user: outcome.user.email, mechanism: request.mechanism, service, rip }, 'dovecot-auth login');
      // Postfix takes the login name from user= (smtpd_sasl_authenticated login, sender checks).
      this.#send(line('OK', request.id, `user=${tabEscape(outcome.user.email)}`));
    } catch (err) {
      if (!isExpected(err)) this.log.error({ err, request: request.id }, 'dovecot-auth password check failed');
      this.#answerError(request.id, err);
    }
    this.end(request);
    this.armIdleTimer();
  }

  /** FAIL for the request, or the end of the connection for a temporary failure (errors.ts says why). */
  #answerError(id: string, err: unknown): void {
    const reply = replyForError(id, err);
    if ('line' in reply) {
      this.#send(reply.line);
      return;
    }
    this.log.warn(
      { request: id, reason: reply.disconnect },
      'dovecot-auth temporary failure; closing the connection so that the client answers 454',
    );
    this.close();
  }

  // ---- output, timers, end -------------------------------------------------------------------

  #send(text: string): void {
    this.writeBounded(text, OUTPUT_LIMIT);
  }

  protected idleTimeoutMs(): number {
    return this.settings.limits.idleMs;
  }

  protected onIdle(): void {
    if (this.requests.size > 0) return this.armIdleTimer();
    this.log.debug('dovecot-auth connection idle for too long; closing');
    this.close();
  }

  /** Server shutdown: closes now, or once the password checks in progress have answered. */
  shutdown(): void {
    if ([...this.requests.values()].some((r) => r.checking)) this.#closeWhenIdle = true;
    else this.close();
  }

  protected override onClosed(): void {
    for (const r of this.requests.values()) if (r.timer) clearTimeout(r.timer);
    this.requests.clear();
  }
}
