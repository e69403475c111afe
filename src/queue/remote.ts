/**
 * Delivery to another mail server over SMTP (RFC 5321), on nodemailer's low-level client.
 *
 * One call of deliver() is one attempt for one transaction: the next hop's addresses are tried in
 * order until one takes the transaction (or refuses it), and every recipient gets exactly one
 * RecipientResult. Network and DNS trouble never throws; it becomes 'deferred' results.
 *
 * Connection reuse (Postfix's smtp_connection_cache, per endpoint): a session whose transaction
 * ended cleanly (the message taken or refused by a final reply, or every recipient refused at
 * RCPT) stays open, idle, for `reuseIdleMs`, and the next transaction to the same endpoint takes
 * it instead of connecting. The key is the endpoint and everything that made the session what it
 * is: address, port, TLS policy (and, for 'verify', the name the certificate was checked
 * against), SMTP AUTH user (and password) and EHLO name. So two domains whose MX is the same
 * host share sessions, while a session never carries mail under another TLS policy or
 * identity. A reused session starts with RSET (RFC 5321 section 4.1.1.5); when RSET or MAIL FROM
 * fails, or the connection turns out to be gone before any recipient was accepted, it is closed
 * and the transaction goes over a new connection, so a session the server closed while idle
 * never turns into a deferral. A session carries `reuseLimit` transactions at most
 * (smtp_connection_reuse_count_limit) and lives REUSE_TIME_LIMIT_MS at most
 * (smtp_connection_reuse_time_limit); idle sessions end with QUIT, and hold neither the process
 * (timers and sockets are unref'd while idle) nor more than `reuseMaxIdle` descriptors per endpoint.
 *
 * What the client does on the wire, and what is relied upon in nodemailer (covered by tests):
 * - the message body is dot-stuffed and bare CR / bare LF become CRLF (its DataStream), so a
 *   body can never end the DATA phase early (SMTP smuggling);
 * - replies received before the TLS handshake after STARTTLS are discarded (RFC 3207 section 6);
 * - MAIL FROM, RCPT TO and DATA are pipelined when the server offers PIPELINING (RFC 2920).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';
import { oneLine as cleanLine } from './dsn.js';
import { DeliveryError, type MxHost, type MxResolver } from './mx.js';
import type { NextHop, RecipientResult, Transaction } from './types.js';

export { DeliveryError } from './mx.js';

export interface RemoteDeliveryOptions {
  /** The name we send in EHLO (our hostname). */
  heloName: string;
  /** Time to establish the TCP connection to one address. */
  connectTimeoutMs: number;
  /** Time to wait for the greeting, for each reply, and inactivity in general. */
  commandTimeoutMs: number;
  mx: MxResolver;
  logger: Logger;
  /** Addresses tried per attempt at most (Postfix's smtp_mx_address_limit); 5 by default. */
  maxAddresses?: number;
  /**
   * How long a session stays open, idle, after a transaction for the next one to the same
   * endpoint (Postfix's smtp_connection_cache_time_limit); 5000 ms by default, 0 disables reuse.
   */
  reuseIdleMs?: number;
  /** Transactions per session at most (Postfix's smtp_connection_reuse_count_limit); 100 by default. */
  reuseLimit?: number;
  /** Idle sessions kept per endpoint at most; 4 by default. */
  reuseMaxIdle?: number;
}

/** A session is not reused once it is this old (Postfix's smtp_connection_reuse_time_limit). */
const REUSE_TIME_LIMIT_MS = 300_000;
/** Idle sessions kept overall at most (each holds a descriptor, and a session on the far side). */
const MAX_IDLE_TOTAL = 256;
/** Longest wait for the RSET reply on a reused session before giving up on it (Postfix's smtp_rset_timeout). */
const RSET_TIMEOUT_MS = 20_000;
/** Longest wait for the reply to QUIT in close(). */
const QUIT_WAIT_MS = 2_000;

/** What nodemailer's errors carry (see _formatError in nodemailer/lib/smtp-connection). */
interface SmtpError extends Error {
  code?: string;
  originalCode?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  recipient?: string;
}

/** nodemailer's per-message envelope bookkeeping (internal `_envelope`; see recipientOutcomes). */
interface EnvelopeState {
  accepted: string[];
  rejectedErrors: SmtpError[];
}

/** A reply or synthetic outcome before it is tied to a recipient. */
export interface Outcome {
  status: RecipientResult['status'];
  code: number;
  enhanced: string;
  text: string;
  remoteMta?: string;
}

/** A transaction that got an answer (or failed after recipients were accepted): final for this attempt. */
type Done = { kind: 'done'; byAddress: Map<string, Outcome>; summary: string; mta: string; reused: boolean };

const MAX_TEXT = 500;

/** One line, no control characters, at most MAX_TEXT bytes: safe for logs and DSNs. */
const oneLine = (text: string) => cleanLine(text, MAX_TEXT);

/**
 * A server reply as an outcome: the code, its enhanced code (RFC 3463: given by the server when
 * its class matches the reply, else derived: 5.0.0 / 4.0.0 / 2.0.0) and the reply as one line.
 * Continuation lines lose their repeated "550-5.1.1 " prefixes.
 */
export function parseReply(response: string, remoteMta?: string): Outcome {
  const lines = response.split(/\r?\n/).filter((l) => l.length > 0);
  const code = Number(/^(\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
  const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/;
  let enhanced = '';
  const parts: string[] = [];
  lines.forEach((line, i) => {
    let rest = line.replace(/^\d{3}(?:[ -]|$)/, '');
    const m = ENHANCED.exec(rest);
    if (m && i === 0 && Number(m[1]) === Math.floor(code / 100)) enhanced = m[0];
    if (m && m[0] === enhanced) rest = rest.slice(m[0].length).trimStart();
    parts.push(rest);
  });
  const klass = Math.floor(code / 100);
  const status: Outcome['status'] = klass === 2 ? 'sent' : klass === 5 ? 'failed' : 'deferred';
  if (klass !== 2 && klass !== 4 && klass !== 5) {
    // Not a reply SMTP allows here: retry later rather than guess.
    return {
      status: 'deferred',
      code: 451,
      enhanced: '4.5.0',
      text: oneLine(`unexpected reply: ${response}`),
      ...(remoteMta ? { remoteMta } : {}),
    };
  }
  enhanced ||= `${klass}.0.0`;
  return { status, code, enhanced, text: oneLine(`${code} ${enhanced} ${parts.join(' ')}`), ...(remoteMta ? { remoteMta } : {}) };
}

function deferred(code: number, enhanced: string, text: string, remoteMta?: string): Outcome {
  return { status: 'deferred', code, enhanced, text: oneLine(text), ...(remoteMta ? { remoteMta } : {}) };
}

/** An address we can put between <> in MAIL/RCPT: no CR/LF, controls, spaces or angle brackets. */
function usableAddress(address: string): boolean {
  return !/[\x00-\x20\x7f<>]/.test(address) && address.length <= 998;
}

/**
 * nodemailer reports RCPT refusals only on success or when every recipient was refused; on a
 * refused DATA or a lost connection its error carries no per-recipient detail. The envelope
 * state it keeps on the connection has it in every case (accepted / rejectedErrors).
 */
function envelopeOf(conn: SMTPConnection): EnvelopeState {
  const env = (conn as unknown as { _envelope?: Partial<EnvelopeState> | false })._envelope;
  return {
    accepted: env && Array.isArray(env.accepted) ? env.accepted : [],
    rejectedErrors: env && Array.isArray(env.rejectedErrors) ? env.rejectedErrors : [],
  };
}

/** One SMTP session (connected, past EHLO, STARTTLS and AUTH), reusable for several transactions. */
interface Session {
  conn: SMTPConnection;
  /** The reuse key (see RemoteDelivery.#key). */
  key: string;
  /** "name[ip]:port" of the server, for results and logs. */
  mta: string;
  opened: number;
  /** Transactions started on it. */
  uses: number;
  /** Set once the connection has ended (nodemailer's 'end'). */
  gone: boolean;
  lastError?: SmtpError;
  /** Rejects once the connection has ended: steps whose callbacks nodemailer never calls end through it. */
  ended: Promise<never>;
  /** Set while the session waits in the idle pool. */
  idleTimer?: NodeJS.Timeout;
}

/** A transaction that cannot go over a reused session: close it, connect anew. */
type Stale = { kind: 'stale'; why: string };

/** Runs one nodemailer step; rejects when the connection ends first. */
function step<T>(session: Session, run: (cb: (err?: SmtpError | null, value?: T) => void) => void): Promise<T> {
  return Promise.race([new Promise<T>((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T)))), session.ended]);
}

/** The connection's socket (the TLS socket after STARTTLS) and the one it wraps. */
function sockets(conn: SMTPConnection): net.Socket[] {
  const socket = (conn as unknown as { _socket?: net.Socket & { _parent?: net.Socket } })._socket;
  if (!socket) return [];
  return socket._parent ? [socket, socket._parent] : [socket];
}

/** An idle session must not keep the process alive; a busy one does. */
function holdProcess(conn: SMTPConnection, hold: boolean): void {
  for (const s of sockets(conn)) {
    if (hold) s.ref();
    else s.unref();
  }
}

/** True when nodemailer waits for nothing: every reply is in, nothing is being sent, not closing. */
function atRest(conn: SMTPConnection): boolean {
  const c = conn as unknown as { _responseActions?: unknown[]; _pendingSend?: unknown; _closing?: boolean; destroyed?: boolean };
  return !c.destroyed && !c._closing && !c._pendingSend && Array.isArray(c._responseActions) && c._responseActions.length === 0;
}

export class RemoteDelivery {
  readonly #opts: Required<Omit<RemoteDeliveryOptions, 'logger' | 'mx'>>;
  readonly #mx: MxResolver;
  readonly #log: Logger;
  /** Idle sessions by reuse key, most recently used last. */
  readonly #idle = new Map<string, Session[]>();
  /** Every open session, busy or idle (abort() cuts them all). */
  readonly #live = new Set<Session>();
  #idleCount = 0;
  /** Set by close(): sessions are not kept any more. */
  #closed = false;

  constructor(options: RemoteDeliveryOptions) {
    // RFC 5321 section 4.1.1.1: EHLO takes a domain or an address literal; a CR/LF would inject commands.
    if (!options.heloName || /[\x00-\x20\x7f]/.test(options.heloName)) {
      throw new MailError('CONFIG_INVALID', `invalid EHLO name ${JSON.stringify(options.heloName)}`);
    }
    this.#opts = {
      heloName: options.heloName,
      connectTimeoutMs: options.connectTimeoutMs,
      commandTimeoutMs: options.commandTimeoutMs,
      maxAddresses: options.maxAddresses ?? 5,
      reuseIdleMs: Math.max(0, options.reuseIdleMs ?? 5000),
      reuseLimit: Math.max(1, options.reuseLimit ?? 100),
      reuseMaxIdle: Math.max(0, options.reuseMaxIdle ?? 4),
    };
    this.#mx = options.mx;
    this.#log = options.logger;
  }

  /**
   * Delivers one transaction to one next hop. Resolves with one result per tx.recipients entry,
   * in order; never rejects for network, DNS or protocol trouble.
   */
  async deliver(hop: NextHop, tx: Transaction): Promise<RecipientResult[]> {
    const fixed: Array<RecipientResult | undefined> = tx.recipients.map(() => undefined);
    const fill = (outcome: (address: string) => Outcome): RecipientResult[] =>
      tx.recipients.map((address, i) => fixed[i] ?? { address, ...outcome(address) });

    if (!usableAddress(tx.sender)) {
      return fill(() => ({ status: 'failed', code: 553, enhanced: '5.1.7', text: oneLine(`bad sender address syntax: ${tx.sender}`) }));
    }
    const unique: string[] = [];
    tx.recipients.forEach((address, i) => {
      if (!address || !usableAddress(address)) {
        fixed[i] = { address, status: 'failed', code: 553, enhanced: '5.1.3', text: oneLine(`bad recipient address syntax: ${address}`) };
      } else if (!unique.includes(address)) {
        unique.push(address);
      }
    });
    if (unique.length === 0) return fill(() => deferred(451, '4.3.0', 'no recipients'));

    const log = this.#log.child({ qid: tx.queueId });
    if (hop.auth && hop.tls === 'none') {
      // Credentials only ever travel inside TLS.
      const out = deferred(451, '4.7.0', `refusing to send SMTP AUTH credentials to ${hop.host} without TLS (TLS policy "none")`);
      log.warn({ host: hop.host, port: hop.port }, out.text);
      return fill(() => out);
    }

    let hosts: MxHost[];
    try {
      hosts = (hop.lookup === 'mx' ? await this.#mx.hostsFor(hop.host) : await this.#mx.hostAddresses(hop.host)).hosts;
    } catch (err) {
      const e =
        err instanceof DeliveryError ? err : new DeliveryError(451, '4.4.3', `DNS lookup of ${hop.host} failed: ${(err as Error).message}`);
      log.debug({ host: hop.host, result: `${e.code} ${e.enhanced} ${e.message}` }, 'delivery attempt');
      return fill(() => ({ status: e.permanent ? 'failed' : 'deferred', code: e.code, enhanced: e.enhanced, text: oneLine(e.message) }));
    }

    const targets: Array<{ name: string; ip: string }> = [];
    for (const host of hosts) {
      for (const ip of host.addresses) if (!targets.some((t) => t.ip === ip)) targets.push({ name: host.name, ip });
    }
    const candidates = targets.slice(0, this.#opts.maxAddresses);
    const done = (attempt: Done): RecipientResult[] => {
      log.debug({ host: attempt.mta, reused: attempt.reused, result: attempt.summary }, 'delivery attempt');
      return fill((address) => attempt.byAddress.get(address) ?? deferred(451, '4.4.2', `no reply for ${address}`, attempt.mta));
    };

    // An idle session to any of the hop's addresses first (like Postfix, even to a less preferred
    // MX that an earlier transaction ended up with); if it turns out unusable, connect as usual.
    for (const target of candidates) {
      const session = this.#take(this.#key(target, hop));
      if (!session) continue;
      // The same address may carry another name for this destination (a shared MX host).
      session.mta = `${target.name}[${target.ip}]:${hop.port}`;
      const attempt = await this.#transact(session, tx, unique, true);
      if (attempt.kind === 'done') return done(attempt);
      log.debug({ host: session.mta, why: attempt.why }, 'cached session unusable, connecting anew');
      break;
    }

    let last: Outcome = deferred(451, '4.4.3', `no address to connect to for ${hop.host}`);
    for (const target of candidates) {
      const opened = await this.#open(target, hop);
      if ('failure' in opened) {
        log.debug(
          { host: opened.failure.remoteMta, result: `${opened.failure.code} ${opened.failure.enhanced} ${opened.failure.text}` },
          'delivery attempt',
        );
        last = opened.failure;
        continue;
      }
      const attempt = await this.#transact(opened.session, tx, unique, false);
      // Only a reused session is ever stale.
      if (attempt.kind === 'done') return done(attempt);
    }
    return fill(() => last);
  }

  /** Sends QUIT on every idle session and waits (briefly) for them to end; sessions are not kept afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    const idle = [...this.#idle.values()].flat();
    for (const s of idle) this.#unpool(s);
    await Promise.all(
      idle.map(async (s) => {
        holdProcess(s.conn, true);
        const gone = s.ended.catch(() => undefined);
        this.#quit(s);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([gone, new Promise<void>((resolve) => (timer = setTimeout(resolve, QUIT_WAIT_MS)))]);
        clearTimeout(timer);
        if (!s.gone) s.conn.close();
      }),
    );
  }

  /**
   * Cuts every open session at once (shutdown after its grace time): transactions in progress
   * end with a lost connection, so their recipients stay queued and are tried again later.
   */
  abort(): void {
    this.#closed = true;
    for (const s of this.#live) if (!s.gone) s.conn.close();
  }

  /** Sessions interchangeable for a transaction: same endpoint, same TLS requirements, same identity. */
  #key(target: { name: string; ip: string }, hop: NextHop): string {
    const auth = hop.auth ? [hop.auth.user, createHash('sha256').update(hop.auth.pass).digest('base64')] : null;
    // Only 'verify' checked the certificate against the name; the other policies never look at it.
    const verified = hop.tls === 'verify' ? target.name.toLowerCase() : '';
    return JSON.stringify([target.ip, hop.port, hop.implicitTls === true, hop.tls, verified, auth, this.#opts.heloName]);
  }

  /** The most recently used idle session for `key`, taken out of the pool. */
  #take(key: string): Session | undefined {
    const list = this.#idle.get(key);
    const session = list?.at(-1);
    if (!session) return undefined;
    this.#unpool(session);
    holdProcess(session.conn, true);
    return session;
  }

  #unpool(session: Session): void {
    clearTimeout(session.idleTimer);
    if (!session.idleTimer) return;
    session.idleTimer = undefined;
    const list = this.#idle.get(session.key) ?? [];
    const i = list.indexOf(session);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#idle.delete(session.key);
    this.#idleCount--;
  }

  /** After a clean transaction: into the pool when it may carry more, else QUIT. */
  #release(session: Session): void {
    const o = this.#opts;
    const list = this.#idle.get(session.key) ?? [];
    const keep =
      !this.#closed &&
      o.reuseIdleMs > 0 &&
      session.uses < o.reuseLimit &&
      Date.now() - session.opened < REUSE_TIME_LIMIT_MS &&
      !session.gone &&
      atRest(session.conn) &&
      list.length < o.reuseMaxIdle &&
      this.#idleCount < MAX_IDLE_TOTAL;
    if (!keep) return this.#quit(session);
    session.idleTimer = setTimeout(() => {
      this.#unpool(session);
      this.#quit(session);
    }, o.reuseIdleMs);
    session.idleTimer.unref();
    list.push(session);
    this.#idle.set(session.key, list);
    this.#idleCount++;
    holdProcess(session.conn, false);
  }

  /** QUIT when the session is in a state to take it, else just close. */
  #quit(session: Session): void {
    if (atRest(session.conn)) session.conn.quit();
    else session.conn.close();
  }

  /** Connects to one address: greeting, EHLO, STARTTLS and AUTH as the hop wants them. */
  async #open(target: { name: string; ip: string }, hop: NextHop): Promise<{ session: Session } | { failure: Outcome }> {
    const mta = `${target.name}[${target.ip}]:${hop.port}`;
    const servername = net.isIP(target.name) ? undefined : target.name;
    let startTlsOffered = false;
    // The transaction log is only read for the EHLO reply: was STARTTLS offered?
    const transcript = {
      debug: (entry: { tnx?: string } | undefined, message?: unknown) => {
        if (entry?.tnx === 'server' && typeof message === 'string' && /^250[ -]STARTTLS\b/im.test(message)) startTlsOffered = true;
      },
    };
    const conn = new SMTPConnection({
      host: target.ip,
      port: hop.port,
      secure: hop.implicitTls === true,
      name: this.#opts.heloName,
      ...(servername ? { servername } : {}),
      ignoreTLS: hop.tls === 'none',
      opportunisticTLS: hop.tls === 'may',
      requireTLS: hop.tls === 'encrypt' || hop.tls === 'verify',
      // 'may' and 'encrypt' take any certificate (RFC 7435 opportunistic security); 'verify' checks
      // it against the MX host name (or the address of a literal).
      tls: { rejectUnauthorized: hop.tls === 'verify', minVersion: 'TLSv1.2', ...(servername ? { servername } : {}) },
      connectionTimeout: this.#opts.connectTimeoutMs,
      greetingTimeout: this.#opts.commandTimeoutMs,
      socketTimeout: this.#opts.commandTimeoutMs,
      logger: transcript,
      transactionLog: true,
    });

    const session: Session = {
      conn,
      key: this.#key(target, hop),
      mta,
      opened: Date.now(),
      uses: 0,
      gone: false,
      ended: undefined as unknown as Promise<never>,
    };
    conn.on('error', (err: SmtpError) => {
      session.lastError = err;
    });
    this.#live.add(session);
    conn.once('end', () => this.#live.delete(session));
    // 'end' comes before the failing step's own callback, hence setImmediate.
    session.ended = new Promise<never>((_, reject) => {
      conn.once('end', () => {
        session.gone = true;
        this.#unpool(session);
        setImmediate(() =>
          reject(session.lastError ?? Object.assign(new Error('Connection closed unexpectedly'), { code: 'ECONNECTION' })),
        );
      });
    });
    session.ended.catch(() => undefined);
    const fail = (failure: Outcome, quit: boolean) => {
      if (quit && !conn.destroyed) conn.quit();
      else conn.close();
      return { failure };
    };

    // Connect, greeting, EHLO, STARTTLS.
    try {
      await step<void>(session, (cb) => conn.connect((err) => cb(err)));
    } catch (err) {
      // A failed handshake surfaces as a socket error (e.g. DEPTH_ZERO_SELF_SIGNED_CERT) while upgrading.
      const inTls = conn.upgrading === true || /CERT|SSL|TLS/.test((err as SmtpError).originalCode ?? '');
      return fail(this.#setupFailure(err as SmtpError, mta, hop, startTlsOffered, inTls), false);
    }
    if (hop.tls !== 'none' && hop.tls !== 'may' && !conn.secure) {
      return fail(deferred(451, '4.7.4', `TLS is required, but was not offered by host ${mta}`, mta), true);
    }

    if (hop.auth) {
      if (!conn.secure) return fail(deferred(451, '4.7.0', `refusing to send SMTP AUTH credentials to ${mta} without TLS`, mta), true);
      if (!conn.allowsAuth) return fail(deferred(451, '4.7.0', `SMTP AUTH is configured, but host ${mta} does not offer it`, mta), true);
      try {
        await step<boolean>(session, (cb) => conn.login({ user: hop.auth!.user, pass: hop.auth!.pass }, (err, ok) => cb(err, ok)));
      } catch (err) {
        const e = err as SmtpError;
        const said = e.response ? `: server said ${e.response}` : `: ${e.message}`;
        // Postfix's smtp_sasl_auth_soft_bounce: a refused login is retried (the credentials may be fixed).
        return fail(deferred(451, '4.7.8', `SASL authentication failed with ${mta}${said}`, mta), Boolean(e.response));
      }
    }
    return { session };
  }

  /**
   * One transaction on a session: MAIL FROM, RCPT TO for each recipient, DATA. On a reused
   * session, RSET first; 'stale' when the session proved unusable before any recipient was
   * accepted (nothing was delivered, the transaction can go over a new connection).
   */
  async #transact(session: Session, tx: Transaction, rcpts: string[], reused: boolean): Promise<Done | Stale> {
    const { conn, mta } = session;
    const stale = (why: string): Stale => {
      if (!conn.destroyed) conn.close();
      return { kind: 'stale', why };
    };

    if (reused) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('no reply to RSET')), Math.min(RSET_TIMEOUT_MS, this.#opts.commandTimeoutMs));
        });
        await Promise.race([step<boolean>(session, (cb) => conn.reset((err, ok) => cb(err, ok))), timeout]);
      } catch (err) {
        return stale(`RSET: ${oneLine((err as Error).message)}`);
      } finally {
        clearTimeout(timer);
      }
    }

    let message: ReturnType<Transaction['open']>;
    try {
      message = tx.open();
    } catch (err) {
      const failure = deferred(451, '4.3.0', `error reading the queued message: ${(err as Error).message}`);
      this.#release(session);
      return { kind: 'done', byAddress: new Map(rcpts.map((a) => [a, failure])), summary: failure.text, mta, reused };
    }
    session.uses++;
    let info: { response: string } | undefined;
    let sendErr: SmtpError | undefined;
    try {
      const envelope = { from: tx.sender, to: rcpts, size: tx.size, use8BitMime: Boolean(tx.eightBit) };
      info = await step<{ response: string }>(session, (cb) => conn.send(envelope, message, (err, sent) => cb(err, sent)));
    } catch (err) {
      sendErr = err as SmtpError;
    }
    if (sendErr && !message.destroyed) message.destroy();

    const { accepted, rejectedErrors } = envelopeOf(conn);
    // nodemailer's own SIZE check (RFC 1870) refuses before anything is sent: a real answer.
    const sizeCheck = sendErr?.code === 'EMESSAGE' && sendErr.command === 'MAIL FROM' && !sendErr.response;
    if (
      reused &&
      sendErr &&
      !sizeCheck &&
      sendErr.code !== 'ESTREAM' &&
      accepted.length === 0 &&
      (sendErr.command === 'MAIL FROM' || !sendErr.response || sendErr.responseCode === 421)
    ) {
      // Nothing was accepted, so no message went out: the session (closed by the server, or
      // refusing more transactions) is the problem, not the transaction.
      return stale(`${sendErr.command ?? 'send'}: ${oneLine(sendErr.message)}`);
    }

    const rcptReply = new Map<string, SmtpError>();
    for (const e of rejectedErrors) if (e.recipient !== undefined) rcptReply.set(e.recipient, e);
    const byAddress = new Map<string, Outcome>();
    const whole = sendErr ? this.#transactionFailure(sendErr, mta, tx) : parseReply(info!.response, mta);
    for (const address of rcpts) {
      const refused = rcptReply.get(address);
      if (sendErr?.command === 'MAIL FROM') byAddress.set(address, whole);
      else if (refused?.response) byAddress.set(address, parseReply(refused.response, mta));
      else if (!sendErr && !accepted.includes(address))
        byAddress.set(address, deferred(451, '4.4.2', `no RCPT TO reply for ${address}`, mta));
      else byAddress.set(address, whole);
    }

    // Kept for reuse: a transaction that ended with a final reply, the message's (taken or
    // refused) or every recipient's refusal, except 421 (the server is closing). QUIT only when
    // the session is in a known state: never in the middle of DATA (a message stream error) or
    // after the server closed, where QUIT would be read as message text.
    const clean =
      !sendErr ||
      sizeCheck ||
      (sendErr.response !== undefined &&
        sendErr.responseCode !== 421 &&
        sendErr.code !== 'ESTREAM' &&
        (sendErr.command === 'RCPT TO' || sendErr.command === 'DATA'));
    const orderly = !sendErr || (sendErr.response !== undefined && sendErr.code !== 'ESTREAM' && sendErr.responseCode !== 421);
    if (clean) this.#release(session);
    else if (orderly && !conn.destroyed) conn.quit();
    else conn.close();

    const counts = { sent: 0, deferred: 0, failed: 0 };
    for (const o of byAddress.values()) counts[o.status]++;
    const summary = `sent=${counts.sent} deferred=${counts.deferred} failed=${counts.failed}: ${whole.text}`;
    return { kind: 'done', byAddress, summary, mta, reused };
  }

  /** Why a session ended before MAIL FROM: always temporary, the next address is tried. */
  #setupFailure(err: SmtpError, mta: string, hop: NextHop, startTlsOffered: boolean, inTls: boolean): Outcome {
    const why = err.originalCode ?? err.code ?? 'ERROR';
    if (err.code === 'ETLS' || inTls) {
      if (err.command === 'STARTTLS' && err.response) {
        return startTlsOffered
          ? deferred(451, '4.7.4', `TLS is required, but host ${mta} refused STARTTLS: ${err.response}`, mta)
          : deferred(451, '4.7.4', `TLS is required, but was not offered by host ${mta}`, mta);
      }
      const verify = hop.tls === 'verify' ? ' (certificate verification is required)' : '';
      return deferred(451, '4.7.5', `TLS handshake with ${mta} failed${verify}: ${err.message}`, mta);
    }
    if (err.response) return deferred(451, '4.4.1', `host ${mta} refused to talk to me: ${err.response}`, mta);
    if (why === 'ECONNREFUSED') return deferred(451, '4.4.1', `connect to ${mta}: Connection refused`, mta);
    if (err.code === 'ETIMEDOUT') return deferred(451, '4.4.1', `connect to ${mta}: ${err.message}`, mta);
    return deferred(451, '4.4.1', `connect to ${mta}: ${why}: ${err.message}`, mta);
  }

  /** A transaction that did not end in a 2xx reply to the message. */
  #transactionFailure(err: SmtpError, mta: string, tx: Transaction): Outcome {
    if (err.response && /^\d{3}/.test(err.response)) return parseReply(err.response, mta);
    if (err.command === 'MAIL FROM' && err.code === 'EMESSAGE') {
      // nodemailer refuses before sending when SIZE (RFC 1870) says the message is too large.
      return {
        status: 'failed',
        code: 552,
        enhanced: '5.3.4',
        text: oneLine(`message size ${tx.size} exceeds size limit of ${mta}: ${err.message}`),
        remoteMta: mta,
      };
    }
    if (err.code === 'ESTREAM') return deferred(451, '4.3.0', `error reading the queued message: ${err.message}`, mta);
    const while_ = err.command && err.command !== 'CONN' ? ` while sending ${err.command}` : '';
    if (err.code === 'ETIMEDOUT') return deferred(451, '4.4.2', `conversation with ${mta} timed out${while_}`, mta);
    return deferred(451, '4.4.2', `lost connection with ${mta}${while_}: ${err.message}`, mta);
  }
}
