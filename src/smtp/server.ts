/**
 * SMTP (the MX listener), submission (RFC 6409) and LMTP (RFC 2033) sessions on smtp-server.
 * This is the only module that imports smtp-server; it talks to the directory, the store and
 * the outbound queue through their interfaces.
 *
 * RCPT resolves the address (aliases, catch-all, extensions) and checks quota, so every refusal
 * happens at RCPT time where SMTP can report it per recipient. DATA streams the message into the
 * store (local mailboxes only) or the queue (anything leaving the server, and everything
 * submitted), which acknowledge only once the message is durable; the reply follows from that.
 */
import { logLoginRefused, passwordsAllowed } from '../auth/login.js';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerDataStream,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import { hasSenderRouting, isAddressLiteral, isUnsafeLocalPart, splitAddress } from '../directory/address.js';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import { MailError, isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import { ConnectionCounter, normalizeIp, type NetworkList } from '../net.js';
import type { MaildirStore } from '../store/delivery.js';
import { newQueueId } from '../queue/ids.js';
import type { EnvelopeDsn, OutboundQueue } from '../queue/types.js';
import type { AuthLimiter } from '../auth/limiter.js';
import type { SubmissionConfig } from '../config/schema.js';
import { applyConnectionPatch } from './connection-patch.js';
import type { ClientPeer } from '../listen/peer.js';
import { implicitTls } from '../listen/tls.js';
import type net from 'node:net';
import type tls from 'node:tls';
import { receivedHeader } from './received.js';
import {
  AUTH_REQUIRED,
  CHECKS_REJECTED,
  CHECKS_UNAVAILABLE,
  RATE_LIMITED,
  RELAY_DENIED,
  STARTTLS_FIRST,
  SenderNotOwnedError,
  TOO_MANY_CONNECTIONS,
  replyError,
  replyFor,
} from './replies.js';
import { statusLine, type Status } from '../status.js';
import { RecipientRateLimiter, ownsAddress } from './sender-check.js';
import { relayBeforeCommit, saslLogin, submissionBeforeCommit, type DkimSigner } from './submission.js';
import type { InboundChecks } from '../inbound/checks.js';
import type { CheckResult } from '../inbound/types.js';
import type { HeldMessage } from '../inbound/message-file.js';
import type { InboundVerdict } from '../inbound/checks.js';
import type { SpamScores } from '../inbound/types.js';
import type { Readable } from 'node:stream';

/** The message of a transaction: smtp-server's DATA stream, or the checked message composed anew. */
type DataSource = Readable & { sizeExceeded?: boolean; byteLength?: number };

/** What the inbound checks decided, carried to delivery. */
interface Checked {
  queueId: string;
  /** Deliver into the folder with this special use ('\\Junk'). */
  folder?: string;
  /** The scanners' scores, for Sieve's spamtest and virustest. */
  scores?: SpamScores;
  /** The checks' findings for the log lines. */
  checks: Record<string, unknown>;
  /** The envelope a milter changed (sender, recipients): the queue delivers to it. */
  envelope?: { sender: string; recipients: string[] };
}

applyConnectionPatch();

export interface SmtpLimits {
  message_size: number;
  recipients: number;
  connections: number;
  connections_per_ip: number;
  line_length: number;
  errors: number;
  recipient_overshoot: number;
  idle_timeout: number;
  data_timeout: number;
  data_min_rate: number;
  session_timeout: number;
}

/** What a session needs to know; re-read on every use, so SIGHUP changes apply to new commands. */
export interface SmtpSettings {
  hostname: string;
  limits: SmtpLimits;
  trusted: NetworkList;
  shutdownTimeoutMs: number;
  /** Passwords over cleartext connections: never, or from trusted networks only (auth.cleartext). */
  cleartextAuth: 'never' | 'trusted';
  submission: SubmissionConfig;
}

export interface SmtpContext {
  settings(): SmtpSettings;
  directory: Directory;
  store: MaildirStore;
  /** Remote recipients (and everything submitted) go here; durable before the 250. */
  queue: OutboundQueue;
  /** Failed-login delays shared with IMAP and POP3. */
  limiter: AuthLimiter;
  /** DKIM signing of submitted mail (src/queue/dkim.ts DkimKeys); unsigned without it. */
  dkim?: DkimSigner;
  /** Checks of mail from the internet on smtp listeners (sender authentication, milters, scanners). */
  inbound?: InboundChecks;
  logger: Logger;
}

export interface SmtpListenerSpec {
  name: string;
  protocol: 'smtp' | 'submission' | 'lmtp';
  tls: 'none' | 'starttls' | 'implicit';
  credentials: { key: string | Buffer; cert: string | Buffer };
}

interface SessionState {
  ip: string;
  trusted: boolean;
  counted: boolean;
  log: Logger;
  messages: number;
  declaredSize: number;
  /** Submission: the authenticated login (the mailbox address). */
  login?: string;
  /** Submission: sender addresses found to belong to the login (saves lookups). */
  owned: Set<string>;
  /** The blocklists' verdict for this client and the transaction's sender (asked once per sender). */
  blocklisted?: { sender: string; verdict: Promise<CheckResult> };
}

/** What RCPT decided for a recipient, carried on smtp-server's recipient object until DATA. */
interface ResolvedRcpt extends SMTPServerAddress {
  mailboxes?: UserRecord[];
  /** Needs the outbound queue: a remote address, or an alias that forwards to one. */
  queue?: boolean;
  /** A remote address relayed for a trusted or authenticated client. */
  relayed?: boolean;
  /** The address as it is delivered to (<postmaster> gets the server's domain). */
  target?: string;
}

const states = new WeakMap<SMTPServerSession, SessionState>();

/**
 * SMTP has one reply for all recipients after DATA (RFC 5321 section 3.3). A message for several
 * mailboxes where one has a quota could fit some and not others; such a message goes through
 * the queue, which delivers to each mailbox on its own and bounces only for the one over quota
 * (as Postfix's virtual delivery does). Everything else is written to the mailboxes directly.
 */
const NOTIFY_VALUES = new Set(['SUCCESS', 'FAILURE', 'DELAY', 'NEVER']);
const isNotify = (v: string): v is 'SUCCESS' | 'FAILURE' | 'DELAY' | 'NEVER' => NOTIFY_VALUES.has(v);

function needsPerMailboxDelivery(rcpts: ResolvedRcpt[]): boolean {
  const mailboxes = new Map<string, UserRecord>();
  for (const r of rcpts) for (const m of r.mailboxes ?? []) mailboxes.set(m.email, m);
  return mailboxes.size > 1 && [...mailboxes.values()].some((m) => m.quotaBytes > 0);
}

/** One recipient rate limiter per server (both submission listeners count together). */
const rateLimiters = new WeakMap<SmtpContext, RecipientRateLimiter>();

interface PatchOptions {
  maildErrorLimit: number;
  maildRecipientOvershoot: number;
  maildDataTimeout: number;
  maildDataMinRate: number;
  maildSessionTimeout: number;
}

function settingsToOptions(s: SmtpSettings): Partial<SMTPServerOptions> & PatchOptions {
  return {
    size: s.limits.message_size,
    maxClients: s.limits.connections,
    maxRecipients: s.limits.recipients,
    maxCommandLength: s.limits.line_length,
    socketTimeout: s.limits.idle_timeout,
    closeTimeout: s.shutdownTimeoutMs,
    maildErrorLimit: s.limits.errors,
    maildRecipientOvershoot: s.limits.recipient_overshoot,
    maildDataTimeout: s.limits.data_timeout,
    maildDataMinRate: s.limits.data_min_rate,
    maildSessionTimeout: s.limits.session_timeout,
  };
}

export class SmtpListener {
  readonly server: SMTPServer;
  readonly spec: SmtpListenerSpec;
  readonly #ctx: SmtpContext;
  readonly #connections = new ConnectionCounter();
  readonly #log: Logger;
  /** Implicit TLS connections still in their handshake (no session yet). */
  readonly #handshaking = new Set<tls.TLSSocket>();
  #closing = false;

  constructor(spec: SmtpListenerSpec, ctx: SmtpContext) {
    this.spec = spec;
    this.#ctx = ctx;
    this.#log = ctx.logger.child({ listener: spec.name });
    const lmtp = spec.protocol === 'lmtp';
    const submission = spec.protocol === 'submission';
    if (submission && !rateLimiters.has(ctx)) rateLimiters.set(ctx, new RecipientRateLimiter());
    // RFC 5321 MX and LMTP hand-off: no AUTH. Submission: AUTH PLAIN and LOGIN (RFC 4954),
    // offered per connection by maildAuthAllowed (connection-patch.ts).
    const disabled = submission ? [] : ['AUTH'];
    if (spec.tls === 'none') disabled.push('STARTTLS');
    const settings = ctx.settings();
    const options: SMTPServerOptions &
      PatchOptions & {
        maildAuthAllowed?: (session: SMTPServerSession) => boolean;
        maildAuthRefused?: (session: SMTPServerSession) => void;
        maildTimedOut: (session: SMTPServerSession, what: 'data' | 'session', dataBytes?: number) => void;
      } = {
      ...settingsToOptions(settings),
      lmtp,
      name: settings.hostname,
      banner: '',
      secure: spec.tls === 'implicit',
      key: spec.credentials.key,
      cert: spec.credentials.cert,
      disabledCommands: disabled,
      // MAIL without AUTH is refused in onMailFrom (530 5.7.0), where it can be logged.
      authOptional: true,
      authMethods: ['PLAIN', 'LOGIN'],
      // Whether passwords may cross this connection is decided by maildAuthAllowed instead.
      allowInsecureAuth: true,
      ...(submission
        ? {
            maildAuthAllowed: (session: SMTPServerSession) => this.#authAllowed(session),
            maildAuthRefused: (session: SMTPServerSession) => logLoginRefused(this.#state(session).log, 'smtp', '', 'cleartext'),
          }
        : {}),
      maildTimedOut: (session, what, dataBytes) => {
        const st = this.#state(session);
        st.log.info({ ip: st.ip || 'unix', what, ...(dataBytes === undefined ? {} : { bytes: dataBytes }) }, 'session timed out');
      },
      disableReverseLookup: true,
      rejectOversized: true,
      hideENHANCEDSTATUSCODES: false,
      hidePIPELINING: false,
      hide8BITMIME: false,
      hideSMTPUTF8: false,
      // RFC 3461 DSN on the MX and submission: the queue honours NOTIFY, ORCPT, RET and ENVID.
      hideDSN: lmtp,
      hideREQUIRETLS: true,
      logger: false,
      onConnect: (session, cb) => this.#onConnect(session, cb),
      onClose: (session) => this.#onClose(session),
      onAuth: (auth, session, cb) => this.#onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => void this.#onMailFrom(address, session).then(() => cb(), cb),
      onRcptTo: (address, session, cb) => void this.#onRcptTo(address as ResolvedRcpt, session).then(() => cb(), cb),
      onData: (stream, session, cb) => this.#onData(stream, session, cb),
    };
    if (submission && spec.tls === 'none') {
      this.#log.warn(
        { cleartext: settings.cleartextAuth },
        'submission listener without TLS: AUTH only from trusted networks with auth.cleartext: trusted_networks',
      );
    }
    this.server = new SMTPServer(options);
    this.server.on('error', (err: Error & { remoteAddress?: string }) => {
      this.#log.debug({ err: err.message, ip: err.remoteAddress }, 'connection error');
    });
  }

  /** Applies changed limits and certificates (SIGHUP); sessions pick them up from their next command. */
  update(settings: SmtpSettings, credentials?: SmtpListenerSpec['credentials']): void {
    Object.assign(this.server.options, settingsToOptions(settings), { name: settings.hostname });
    if (credentials) this.server.updateSecureContext({ key: credentials.key, cert: credentials.cert });
  }

  #state(session: SMTPServerSession): SessionState {
    let st = states.get(session);
    if (!st) {
      const ip = normalizeIp(session.remoteAddress);
      st = {
        ip,
        trusted: this.#ctx.settings().trusted.contains(ip),
        counted: false,
        log: this.#log.child({ session: session.id }),
        messages: 0,
        declaredSize: 0,
        owned: new Set(),
      };
      states.set(session, st);
    }
    return st;
  }

  #onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const st = this.#state(session);
    if (st.ip && !this.#connections.acquire(st.ip, this.#ctx.settings().limits.connections_per_ip)) {
      st.log.warn({ ip: st.ip }, 'too many connections from this address');
      return cb(replyError(TOO_MANY_CONNECTIONS));
    }
    st.counted = true;
    st.log.info({ ip: st.ip || 'unix', trusted: st.trusted }, 'connect');
    cb();
  }

  #onClose(session: SMTPServerSession): void {
    const st = states.get(session);
    if (!st) return;
    if (st.counted) {
      st.counted = false;
      if (st.ip) this.#connections.release(st.ip);
      st.log.info({ ip: st.ip || 'unix', messages: st.messages }, 'disconnect');
    }
  }

  /** The authenticated login of a submission session (smtp-server forgets it at STARTTLS). */
  #login(session: SMTPServerSession): string | undefined {
    const st = this.#state(session);
    return session.user && st.login ? st.login : undefined;
  }

  /**
   * Whether passwords may be sent on this connection (RFC 4954 section 4, RFC 6409 section 4.3):
   * inside TLS, or in cleartext from trusted networks when auth.cleartext allows that.
   */
  #authAllowed(session: SMTPServerSession): boolean {
    return passwordsAllowed(session.secure, this.#ctx.settings().cleartextAuth, this.#state(session).trusted);
  }

  #onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    cb: (err: Error | null | undefined, response?: { user: string }) => void,
  ): void {
    const st = this.#state(session);
    if (!this.#authAllowed(session)) {
      logLoginRefused(st.log, 'smtp', auth.username ?? '', 'cleartext');
      return cb(replyError(STARTTLS_FIRST));
    }
    const creds = {
      method: auth.method,
      username: auth.username ?? '',
      password: auth.password ?? '',
      ...(auth.authzid ? { authzid: auth.authzid } : {}),
      ...(auth.authcid ? { authcid: auth.authcid } : {}),
    };
    void saslLogin({ directory: this.#ctx.directory, limiter: this.#ctx.limiter, log: st.log }, st.ip, creds).then((outcome) => {
      if (!outcome.ok) return cb(replyError(outcome.reply));
      st.login = outcome.login;
      st.owned.clear();
      st.log.info({ ip: st.ip || 'unix', sasl_method: auth.method, sasl_username: outcome.login }, 'authenticated');
      cb(null, { user: outcome.login });
    });
  }

  async #onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const st = this.#state(session);
    const declared = address.args && typeof address.args.SIZE === 'string' ? Number(address.args.SIZE) : 0;
    st.declaredSize = Number.isSafeInteger(declared) ? declared : 0;
    if (this.spec.protocol !== 'submission') return;
    // RFC 6409 section 4.3 / RFC 4954 section 6: nothing is accepted for relaying without AUTH.
    const login = this.#login(session);
    if (!login) {
      st.log.info({ ip: st.ip || 'unix', from: address.address }, 'sender refused: not authenticated');
      throw replyError(AUTH_REQUIRED);
    }
    // The null sender is allowed (Postfix allows it too); the From: header is still checked.
    const sender = address.address;
    if (sender === '' || st.owned.has(sender.toLowerCase())) return;
    let owned: boolean;
    try {
      owned = await ownsAddress(
        { directory: this.#ctx.directory, extraSenders: this.#ctx.settings().submission.extra_senders },
        login,
        sender,
      );
    } catch (err) {
      if (!isMailError(err)) st.log.error({ err, from: sender }, 'sender lookup failed');
      const reply = replyFor(err);
      st.log.warn({ from: sender, sasl_username: login, reply: statusLine(reply) }, 'sender refused');
      throw replyError(reply);
    }
    if (!owned) {
      const reply = replyFor(new SenderNotOwnedError(login, sender, 'envelope'));
      st.log.info({ from: sender, sasl_username: login, reply: statusLine(reply) }, 'sender refused: not owned by user');
      throw replyError(reply);
    }
    st.owned.add(sender.toLowerCase());
  }

  async #onRcptTo(address: ResolvedRcpt, session: SMTPServerSession): Promise<void> {
    const st = this.#state(session);
    const refuse = (reply: Status, why: string, err?: unknown) => {
      const level = isMailError(err) && !err.temporary ? 'info' : reply.code >= 500 ? 'info' : 'warn';
      st.log[level]({ rcpt: address.address, reply: statusLine(reply), why }, 'recipient refused');
      return replyError(reply);
    };
    if (this.spec.protocol === 'smtp') await this.#checkBlocklists(session, st, refuse);
    if (this.spec.protocol !== 'submission') return this.#checkRcpt(address, st, refuse, false);
    const login = this.#login(session);
    if (!login) throw refuse(AUTH_REQUIRED, 'not authenticated'); // MAIL needs AUTH already
    // Per-login recipient rate; a recipient refused below does not count.
    const limits = this.#ctx.settings().submission.rate_limit;
    const rate = rateLimiters.get(this.#ctx)!;
    if (!rate.take(login, limits.recipients, limits.window))
      throw refuse(RATE_LIMITED, `rate limit: ${limits.recipients} recipients per ${limits.window} ms`);
    try {
      await this.#checkRcpt(address, st, refuse, true);
    } catch (err) {
      rate.giveBack(login);
      throw err;
    }
  }

  /**
   * DNS blocklists at RCPT time (Postfix's reject_rbl_client and reject_rhsbl_sender in
   * smtpd_recipient_restrictions), for clients outside trusted_networks; the answer of the lists
   * is asked once per sender and session, and each recipient gets the refusal.
   */
  async #checkBlocklists(
    session: SMTPServerSession,
    st: SessionState,
    refuse: (reply: Status, why: string, err?: unknown) => Error,
  ): Promise<void> {
    const inbound = this.#ctx.inbound;
    if (!inbound?.blocklists || st.trusted || !st.ip) return;
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    if (st.blocklisted?.sender !== sender) {
      const verdict = inbound.checkClient({ clientIp: st.ip, sender, helo: session.hostNameAppearsAs ?? '' });
      st.blocklisted = { sender, verdict };
      const result = await verdict;
      st.log[result.action === 'accept' ? 'debug' : 'info']({ ip: st.ip, from: sender, ...result.log }, 'blocklists');
    }
    const result = await st.blocklisted.verdict;
    if (result.action === 'reject' || result.action === 'tempfail') {
      throw refuse(result.status ?? CHECKS_REJECTED, `blocklisted: ${JSON.stringify(result.log ?? {})}`);
    }
  }

  /**
   * Decides one recipient. Local ones are resolved and their quota checked, for every
   * protocol; remote ones are relayed only for trusted and authenticated clients (`relay`).
   */
  async #checkRcpt(
    address: ResolvedRcpt,
    st: SessionState,
    refuse: (reply: Status, why: string, err?: unknown) => Error,
    authenticated: boolean,
  ): Promise<void> {
    const lmtp = this.spec.protocol === 'lmtp';
    const relay = st.trusted || authenticated;
    let rcpt = address.address;
    // RFC 5321 section 4.1.1.3: the domainless <postmaster> must be accepted.
    if (!rcpt.includes('@') && rcpt.toLowerCase() === 'postmaster') rcpt = `postmaster@${this.#ctx.settings().hostname}`;
    const split = splitAddress(rcpt);
    if (!split) throw refuse(replyFor(new MailError('BAD_ADDRESS', 'no domain')), 'no domain');
    const directory = this.#ctx.directory;

    let local: boolean;
    try {
      local = !isAddressLiteral(split.domain) && (await directory.isLocalDomain(split.domain));
    } catch (err) {
      throw refuse(replyFor(err), (err as Error).message, err);
    }
    address.target = rcpt;
    if (!local) {
      // Untrusted, unauthenticated clients get the permanent refusal Postfix's
      // reject_unauth_destination gives. LMTP is a local hand-off: nothing remote.
      if (!relay) throw refuse(RELAY_DENIED, `not a local domain: ${split.domain}`);
      if (lmtp) throw refuse(replyFor(new MailError('RECIPIENT_NOT_FOUND', 'not local')), 'lmtp: not local');
      // Relaying (permit_mynetworks, permit_sasl_authenticated): the queue delivers it.
      address.queue = true;
      address.relayed = true;
      return;
    }
    // Sender-specified routing (user%host@, host!user@, "user@host"@) is a relay attempt
    // (Postfix: allow_untrusted_routing = no).
    if (hasSenderRouting(split.local) && !relay) throw refuse(RELAY_DENIED, 'sender-specified routing');
    if (isUnsafeLocalPart(split.local)) throw refuse(replyFor(new MailError('BAD_ADDRESS', 'unsafe')), 'unsafe local part');

    let mailboxes: UserRecord[];
    try {
      const resolution = await directory.resolve(rcpt);
      if (resolution.remote.length > 0) {
        // An alias that forwards off the server: the whole message goes through the queue
        // (which re-resolves the local recipients). LMTP hands off to local mailboxes only.
        if (lmtp) throw new MailError('RELAY_UNAVAILABLE', `alias forwards to ${resolution.remote.join(', ')}; not over LMTP`);
        address.queue = true;
      }
      mailboxes = resolution.mailboxes;
      for (const mailbox of mailboxes) await this.#ctx.store.checkQuota(mailbox, st.declaredSize);
    } catch (err) {
      if (!isMailError(err)) st.log.error({ err, rcpt }, 'recipient lookup failed');
      throw refuse(replyFor(err), (err as Error).message, err);
    }
    address.mailboxes = mailboxes;
  }

  #onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    cb: (err?: Error | null, message?: string | Array<string | Error>) => void,
  ): void {
    const inbound = this.#ctx.inbound;
    // Mail from the internet is checked before it is delivered; trusted clients' is not (Postfix's
    // permit_mynetworks), nor LMTP's and submission's (authenticated, or checked by the MTA in front).
    if (this.spec.protocol === 'smtp' && inbound?.enabled && !this.#state(session).trusted) {
      void this.#checkThenDeliver(stream, session, cb, inbound);
      return;
    }
    this.#deliver(stream, session, cb);
  }

  /**
   * Receives the message into a file, runs the inbound checks and answers with their refusal,
   * or delivers the message composed anew (their Authentication-Results on top, to Junk when
   * they say so). The file goes once the store or the queue has answered.
   */
  async #checkThenDeliver(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    cb: (err?: Error | null, message?: string | Array<string | Error>) => void,
    inbound: InboundChecks,
  ): Promise<void> {
    const st = this.#state(session);
    const settings = this.#ctx.settings();
    const rcpts = session.envelope.rcptTo as ResolvedRcpt[];
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const queueId = newQueueId();
    const refuse = (reply: Status, why: string, checks: Record<string, unknown> = {}) => {
      const level = reply.code >= 500 ? 'info' : 'warn';
      st.log[level]({ qid: queueId, from: sender, nrcpt: rcpts.length, ...checks, reply: statusLine(reply), why }, 'message refused');
      cb(replyError(reply));
    };
    let held: HeldMessage;
    try {
      held = await inbound.receive(stream, queueId, settings.limits.message_size);
    } catch (err) {
      if (!isMailError(err)) st.log.error({ err, qid: queueId }, 'receiving the message failed unexpectedly');
      return refuse(replyFor(stream.sizeExceeded ? new MailError('MESSAGE_TOO_BIG', 'size exceeded') : err), (err as Error).message);
    }
    const size = held.size;
    let verdict: InboundVerdict | undefined;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      void inbound.release(held, verdict);
    };
    try {
      const cipher = session.secure && session.tlsOptions ? session.tlsOptions : undefined;
      verdict = await inbound.check(
        held,
        {
          queueId,
          clientIp: st.ip,
          clientPort: session.remotePort,
          helo: session.hostNameAppearsAs ?? '',
          protocol: session.transmissionType,
          ...(cipher ? { tls: { version: cipher.version, cipher: cipher.standardName || cipher.name } } : {}),
          sender,
          recipients: rcpts.map((r) => r.address),
          hostname: settings.hostname,
        },
        { forwardDomains: rcpts.filter((r) => r.queue && !r.relayed).map((r) => splitAddress(r.target ?? r.address)?.domain ?? '') },
      );
      if (verdict.action === 'reject' || verdict.action === 'tempfail') {
        release();
        const reply = verdict.status ?? (verdict.action === 'reject' ? CHECKS_REJECTED : CHECKS_UNAVAILABLE);
        return refuse(reply, `inbound checks: ${verdict.action}`, verdict.log);
      }
      if (verdict.action === 'discard') {
        release();
        st.messages++;
        st.log.info({ qid: queueId, from: sender, to: rcpts.map((r) => r.address), size, ...verdict.log }, 'message discarded');
        return cb(null, `2.0.0 Ok: queued as ${queueId}`);
      }
      const composed: DataSource = await inbound.compose(verdict);
      const checked: Checked = {
        queueId,
        checks: verdict.log,
        ...(verdict.action === 'junk' ? { folder: '\\Junk' } : {}),
        ...(verdict.scores.spam !== undefined || verdict.scores.virus !== undefined ? { scores: verdict.scores } : {}),
        ...(verdict.envelope ? { envelope: verdict.envelope } : {}),
      };
      this.#deliver(
        composed,
        session,
        (err, message) => {
          release();
          cb(err, message);
        },
        checked,
      );
    } catch (err) {
      release();
      st.log.error({ err, qid: queueId }, 'inbound checks failed unexpectedly');
      refuse(CHECKS_UNAVAILABLE, (err as Error).message);
    }
  }

  /**
   * Routes a transaction: submitted mail, and any message with a recipient off this server, goes
   * through the queue; a message only for local mailboxes is written to them directly.
   */
  #deliver(
    stream: DataSource,
    session: SMTPServerSession,
    cb: (err?: Error | null, message?: string | Array<string | Error>) => void,
    checked?: Checked,
  ): void {
    const st = this.#state(session);
    const settings = this.#ctx.settings();
    const lmtp = this.spec.protocol === 'lmtp';
    const rcpts = session.envelope.rcptTo as ResolvedRcpt[];
    if (this.spec.protocol === 'submission') return this.#enqueue(stream, session, cb, 'submission');
    // A milter changed the envelope: the queue resolves the recipients as they are now.
    if (checked?.envelope) return this.#enqueue(stream, session, cb, 'inbound', checked);
    if (!lmtp && rcpts.some((r) => r.queue))
      return this.#enqueue(stream, session, cb, rcpts.some((r) => r.relayed) ? 'relay' : 'forward', checked);
    // A success report (RFC 3461 NOTIFY=SUCCESS) comes from the queue too.
    if (!lmtp && (needsPerMailboxDelivery(rcpts) || rcpts.some((r) => r.dsn?.notify?.includes('SUCCESS')))) {
      return this.#enqueue(stream, session, cb, 'inbound', checked);
    }
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const queueId = checked?.queueId ?? newQueueId();
    const started = Date.now();
    const mailboxes = new Map<string, UserRecord>();
    for (const r of rcpts) for (const m of r.mailboxes ?? []) if (!mailboxes.has(m.email)) mailboxes.set(m.email, m);
    const received = this.#received(session, st, queueId, false);

    const logResult = (rcpt: string, mailbox: string, reply: string, ok: boolean, size: number) => {
      // The maillog line operators grep for: one per recipient, with the queue id.
      st.log.info(
        {
          qid: queueId,
          from: sender,
          to: mailbox,
          orig_to: rcpt,
          size,
          relay: lmtp ? 'lmtp' : 'smtp',
          delay: Date.now() - started,
          status: ok ? 'sent' : reply.startsWith('4') ? 'deferred' : 'bounced',
          reply,
          ...(checked ? { folder: checked.folder ?? 'INBOX', ...checked.checks } : {}),
        },
        ok ? 'delivered' : 'delivery failed',
      );
    };

    this.#ctx.store
      .deliver(stream, {
        queueId,
        sender,
        received,
        mailboxes: [...mailboxes.values()],
        // The checked message is larger than it came by the fields the checks added.
        maxBytes: checked ? Number.MAX_SAFE_INTEGER : settings.limits.message_size,
        atomic: !lmtp,
        ...(checked?.folder ? { folder: checked.folder } : {}),
        ...(checked?.scores ? { scores: checked.scores } : {}),
      })
      .then(
        (outcome) => {
          const byMailbox = new Map(outcome.results.map((r) => [r.mailbox.email, r]));
          st.messages++;
          const perRcpt = rcpts.map((r) => {
            const failures = (r.mailboxes ?? []).map((m) => byMailbox.get(m.email)!).filter((res) => !res.ok);
            for (const m of r.mailboxes ?? []) {
              const res = byMailbox.get(m.email)!;
              logResult(
                r.address,
                m.email,
                res.ok ? '250 2.0.0 delivered' : `${replyFor(res.error).code} ${res.error.message}`,
                res.ok,
                outcome.inputBytes,
              );
            }
            const failed = failures[0];
            return failed && !failed.ok ? replyError(replyFor(failed.error)) : `2.0.0 <${r.address}> delivered as ${queueId}`;
          });
          if (lmtp) return cb(null, perRcpt);
          // Not atomic only when every mailbox failed before the transaction began (all refused).
          const firstError = perRcpt.find((p): p is Error & { responseCode: number } => p instanceof Error);
          return firstError ? cb(firstError) : cb(null, `Ok: queued as ${queueId}`);
        },
        (err: unknown) => {
          if (stream.sizeExceeded) err = new MailError('MESSAGE_TOO_BIG', 'size exceeded');
          const reply = replyFor(err);
          if (!isMailError(err)) st.log.error({ err, qid: queueId }, 'delivery failed unexpectedly');
          for (const r of rcpts)
            logResult(
              r.address,
              (r.mailboxes ?? []).map((m) => m.email).join(','),
              `${reply.code} ${(err as Error).message}`,
              false,
              stream.byteLength ?? 0,
            );
          cb(replyError(reply));
        },
      );
  }

  /**
   * Hands the whole transaction to the outbound queue: every recipient as the client gave it
   * (the queue resolves local ones itself, as Postfix's cleanup/qmgr do), our Received header
   * in front. For submissions, the queue's beforeCommit hook checks the From: header, adds a
   * missing Date/Message-ID and signs (submission.ts). The reply waits for the queue's fsync.
   */
  /** The Received: field this hop adds (RFC 5321 section 4.4; RFC 3848 names ESMTPA/ESMTPSA once authenticated). */
  #received(session: SMTPServerSession, st: SessionState, queueId: string, hideClient: boolean): string {
    const rcpts = session.envelope.rcptTo;
    const cipher = session.secure && session.tlsOptions ? session.tlsOptions : undefined;
    return receivedHeader({
      helo: session.hostNameAppearsAs,
      ip: st.ip,
      hostname: this.#ctx.settings().hostname,
      protocol: session.transmissionType,
      ...(cipher ? { tls: { version: cipher.version, cipher: cipher.standardName || cipher.name } } : {}),
      queueId,
      ...(rcpts.length === 1 ? { forAddress: rcpts[0]!.address } : {}),
      ...(hideClient ? { hideClient } : {}),
    });
  }

  #enqueue(
    stream: DataSource,
    session: SMTPServerSession,
    cb: (err?: Error | null, message?: string) => void,
    origin: 'submission' | 'relay' | 'forward' | 'inbound',
    checked?: Checked,
  ): void {
    const st = this.#state(session);
    const settings = this.#ctx.settings();
    const rcpts = session.envelope.rcptTo as ResolvedRcpt[];
    const sender = checked?.envelope?.sender ?? (session.envelope.mailFrom ? session.envelope.mailFrom.address : '');
    const queueId = checked?.queueId ?? newQueueId();
    const started = Date.now();
    const login = origin === 'submission' ? this.#login(session) : undefined;
    if (origin === 'submission' && !login) {
      // Unreachable (MAIL needs AUTH), but never queue a submission without its author.
      cb(replyError(AUTH_REQUIRED));
      return;
    }
    const received =
      this.#received(session, st, queueId, Boolean(login) && settings.submission.hide_client_ip).replace(/\n/g, '\r\n') + '\r\n';
    const beforeCommit = login
      ? submissionBeforeCommit({
          directory: this.#ctx.directory,
          extraSenders: settings.submission.extra_senders,
          login,
          sender,
          hostname: settings.hostname,
          queueId,
          prepend: received,
          dkim: this.#ctx.dkim,
          log: st.log,
          owned: st.owned,
        })
      : origin === 'relay'
        ? relayBeforeCommit({ dkim: this.#ctx.dkim, queueId, sender, prepend: received, log: st.log })
        : undefined;
    const recipients = checked?.envelope
      ? checked.envelope.recipients.map((address) => ({ address }))
      : rcpts.map((r) => ({
          address: r.target ?? r.address,
          ...(r.dsn?.notify?.length ? { notify: r.dsn.notify.filter(isNotify) } : {}),
          ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
        }));
    const envelopeDsn = session.envelope.dsn;
    const ret = envelopeDsn?.ret === 'FULL' || envelopeDsn?.ret === 'HDRS' ? envelopeDsn.ret : undefined;
    const dsn: EnvelopeDsn = {
      ...(ret ? { ret } : {}),
      ...(envelopeDsn?.envid ? { envid: envelopeDsn.envid } : {}),
    };
    const logged = {
      qid: queueId,
      from: sender,
      nrcpt: recipients.length,
      origin,
      ...(login ? { sasl_username: login } : {}),
      ...(checked ? { folder: checked.folder ?? 'INBOX', ...checked.checks } : {}),
    };
    this.#ctx.queue
      .enqueue({
        sender,
        recipients,
        message: stream,
        prepend: received,
        maxBytes: checked ? Number.MAX_SAFE_INTEGER : settings.limits.message_size,
        queueId,
        origin,
        ...(checked?.folder ? { folder: checked.folder } : {}),
        ...(checked?.scores ? { scores: checked.scores } : {}),
        ...(dsn.ret || dsn.envid ? { dsn } : {}),
        ...(login ? { authUser: login } : {}),
        ...(beforeCommit ? { beforeCommit } : {}),
      })
      .then(
        (result) => {
          st.messages++;
          st.log.info(
            { ...logged, to: recipients.map((r) => r.address), size: result.size, delay: Date.now() - started },
            'accepted for the queue',
          );
          cb(null, `2.0.0 Ok: queued as ${result.queueId}`);
        },
        (err: unknown) => {
          if (stream.sizeExceeded) err = new MailError('MESSAGE_TOO_BIG', 'size exceeded');
          const reply = replyFor(err);
          if (!isMailError(err) && !(err instanceof SenderNotOwnedError))
            st.log.error({ err, qid: queueId }, 'enqueue failed unexpectedly');
          const level = reply.code >= 500 ? 'info' : 'warn';
          st.log[level]({ ...logged, reply: statusLine(reply), why: (err as Error).message }, 'message refused');
          cb(replyError(reply));
        },
      );
  }

  /**
   * Takes a connection from the socket front. smtp-server never listens itself: the session
   * gets the peer's address (the PROXY header's when the listener takes one) in place of the
   * socket's, for limits, trusted networks, logs and Received.
   */
  accept(socket: net.Socket, peer: ClientPeer): void {
    socket.on('error', () => undefined);
    if (this.#closing) {
      socket.destroy();
      return;
    }
    // On a unix socket there is no address: the session's ip stays empty ("unix" in logs).
    const options = peer.address
      ? { remoteAddress: peer.address, remotePort: peer.port, localAddress: peer.localAddress, localPort: peer.localPort }
      : {};
    if (this.spec.tls !== 'implicit') return this.server.connect(socket, options);
    const wrapped = implicitTls(socket, this.server.secureContext.get('*')!);
    this.#handshaking.add(wrapped.socket);
    wrapped.secured.then(
      () => {
        this.#handshaking.delete(wrapped.socket);
        this.server.connect(wrapped.socket, options);
      },
      (err: Error) => {
        this.#handshaking.delete(wrapped.socket);
        this.#log.debug({ ip: peer.address, err: err.message }, 'TLS handshake failed');
      },
    );
  }

  /**
   * Stops accepting connections and lets open sessions go on until they quit or `graceMs`
   * passes; whoever is left then gets 421 (RFC 5321 section 3.8) and is disconnected. A message
   * whose DATA is cut short this way was never acknowledged, so the client sends it again.
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    for (const socket of this.#handshaking) socket.destroy();
    const deadline = Date.now() + graceMs;
    while (this.server.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.server.connections.size === 0) return;
    // As smtp-server's own close() does: 421 and the end of each session.
    for (const connection of this.server.connections) {
      connection.send(421, 'Server shutting down');
      connection.close();
    }
    // A client that never closes its side is cut off.
    const deadlineForce = Date.now() + 1000;
    while (this.server.connections.size > 0 && Date.now() < deadlineForce) await new Promise((r) => setTimeout(r, 50));
    for (const connection of this.server.connections as Set<{ _socket?: { destroy(): void } }>) connection._socket?.destroy();
  }
}
