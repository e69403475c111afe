/**
 * SMTP (the MX listener) and LMTP (RFC 2033) sessions on smtp-server. This is the only module
 * that imports smtp-server; it talks to the directory and the store through their interfaces.
 *
 * RCPT resolves the address (aliases, catch-all, extensions) and checks quota, so every refusal
 * happens at RCPT time where SMTP can report it per recipient. DATA streams the message into the
 * store, which acknowledges only once the message is durable; the reply follows from that.
 */
import { randomBytes } from 'node:crypto';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { hasSenderRouting, isAddressLiteral, isUnsafeLocalPart, splitAddress } from '../directory/address.js';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import { MailError, isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import { ConnectionCounter, normalizeIp, type NetworkList } from '../net.js';
import type { MaildirStore } from '../store/store.js';
import { applyConnectionPatch } from './connection-patch.js';
import { receivedHeader } from './received.js';
import { RELAY_DENIED, TOO_MANY_CONNECTIONS, replyError, replyFor, type SmtpReply } from './replies.js';

applyConnectionPatch();

export interface SmtpLimits {
  message_size: number;
  recipients: number;
  connections: number;
  connections_per_ip: number;
  line_length: number;
  errors: number;
  idle_timeout: number;
}

/** What a session needs to know; re-read on every use, so SIGHUP changes apply to new commands. */
export interface SmtpSettings {
  hostname: string;
  limits: SmtpLimits;
  trusted: NetworkList;
  shutdownTimeoutMs: number;
}

export interface SmtpContext {
  settings(): SmtpSettings;
  directory: Directory;
  store: MaildirStore;
  logger: Logger;
}

export interface SmtpListenerSpec {
  name: string;
  protocol: 'smtp' | 'lmtp';
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
}

/** What RCPT decided for a recipient, carried on smtp-server's recipient object until DATA. */
interface ResolvedRcpt extends SMTPServerAddress {
  mailboxes?: UserRecord[];
}

const states = new WeakMap<SMTPServerSession, SessionState>();

let idPool = Buffer.alloc(0);
let idOffset = 0;

/** A queue id: 12 random hex digits, from a pool so each id costs no system call. */
export function newQueueId(): string {
  if (idOffset + 6 > idPool.length) {
    idPool = randomBytes(6 * 1024);
    idOffset = 0;
  }
  idOffset += 6;
  return idPool.toString('hex', idOffset - 6, idOffset).toUpperCase();
}

function settingsToOptions(s: SmtpSettings): Partial<SMTPServerOptions> & { maildErrorLimit: number } {
  return {
    size: s.limits.message_size,
    maxClients: s.limits.connections,
    maxRecipients: s.limits.recipients,
    maxCommandLength: s.limits.line_length,
    socketTimeout: s.limits.idle_timeout,
    closeTimeout: s.shutdownTimeoutMs,
    maildErrorLimit: s.limits.errors,
  };
}

export class SmtpListener {
  readonly server: SMTPServer;
  readonly spec: SmtpListenerSpec;
  readonly #ctx: SmtpContext;
  readonly #connections = new ConnectionCounter();
  readonly #log: Logger;

  constructor(spec: SmtpListenerSpec, ctx: SmtpContext) {
    this.spec = spec;
    this.#ctx = ctx;
    this.#log = ctx.logger.child({ listener: spec.name });
    const lmtp = spec.protocol === 'lmtp';
    const disabled = ['AUTH']; // RFC 5321 MX and LMTP hand-off: no AUTH (submission has its own listener)
    if (spec.tls === 'none') disabled.push('STARTTLS');
    const settings = ctx.settings();
    const options: SMTPServerOptions & { maildErrorLimit: number } = {
      ...settingsToOptions(settings),
      lmtp,
      name: settings.hostname,
      banner: '',
      secure: spec.tls === 'implicit',
      key: spec.credentials.key,
      cert: spec.credentials.cert,
      disabledCommands: disabled,
      authOptional: true,
      disableReverseLookup: true,
      rejectOversized: true,
      hideENHANCEDSTATUSCODES: false,
      hidePIPELINING: false,
      hide8BITMIME: false,
      hideSMTPUTF8: false,
      hideDSN: true,
      hideREQUIRETLS: true,
      logger: false,
      onConnect: (session, cb) => this.#onConnect(session, cb),
      onClose: (session) => this.#onClose(session),
      onMailFrom: (address, session, cb) => this.#onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => void this.#onRcptTo(address as ResolvedRcpt, session).then(() => cb(), cb),
      onData: (stream, session, cb) => this.#onData(stream, session, cb),
    };
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

  #onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const st = this.#state(session);
    const declared = address.args && typeof address.args.SIZE === 'string' ? Number(address.args.SIZE) : 0;
    st.declaredSize = Number.isSafeInteger(declared) ? declared : 0;
    cb();
  }

  async #onRcptTo(address: ResolvedRcpt, session: SMTPServerSession): Promise<void> {
    const st = this.#state(session);
    const refuse = (reply: SmtpReply, why: string, err?: unknown) => {
      const level = isMailError(err) && !err.temporary ? 'info' : reply.code >= 500 ? 'info' : 'warn';
      st.log[level]({ rcpt: address.address, reply: `${reply.code} ${reply.text}`, why }, 'recipient refused');
      return replyError(reply);
    };
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
    if (!local) {
      // No relaying yet: remote recipients need the outbound queue. Untrusted clients get the
      // permanent refusal Postfix's reject_unauth_destination gives.
      if (!st.trusted) throw refuse(RELAY_DENIED, `not a local domain: ${split.domain}`);
      if (this.spec.protocol === 'lmtp') throw refuse(replyFor(new MailError('RECIPIENT_NOT_FOUND', 'not local')), 'lmtp: not local');
      throw refuse(replyFor(new MailError('RELAY_UNAVAILABLE', 'no queue')), 'relay from trusted client: no outbound queue');
    }
    // Sender-specified routing (user%host@, host!user@, "user@host"@) is a relay attempt
    // (Postfix: allow_untrusted_routing = no).
    if (hasSenderRouting(split.local) && !st.trusted) throw refuse(RELAY_DENIED, 'sender-specified routing');
    if (isUnsafeLocalPart(split.local)) throw refuse(replyFor(new MailError('BAD_ADDRESS', 'unsafe')), 'unsafe local part');

    let mailboxes: UserRecord[];
    try {
      const resolution = await directory.resolve(rcpt);
      if (resolution.remote.length > 0) {
        throw new MailError('RELAY_UNAVAILABLE', `alias forwards to ${resolution.remote.join(', ')}; no outbound queue`);
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
    const st = this.#state(session);
    const settings = this.#ctx.settings();
    const lmtp = this.spec.protocol === 'lmtp';
    const rcpts = session.envelope.rcptTo as ResolvedRcpt[];
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const queueId = newQueueId();
    const started = Date.now();
    const mailboxes = new Map<string, UserRecord>();
    for (const r of rcpts) for (const m of r.mailboxes ?? []) if (!mailboxes.has(m.email)) mailboxes.set(m.email, m);
    const cipher = session.secure && session.tlsOptions ? session.tlsOptions : undefined;
    const received = receivedHeader({
      helo: session.hostNameAppearsAs,
      ip: st.ip,
      hostname: settings.hostname,
      protocol: session.transmissionType,
      ...(cipher ? { tls: { version: cipher.version, cipher: cipher.standardName || cipher.name } } : {}),
      queueId,
      ...(rcpts.length === 1 ? { forAddress: rcpts[0]!.address } : {}),
    });

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
        maxBytes: settings.limits.message_size,
        atomic: !lmtp,
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
              stream.byteLength,
            );
          cb(replyError(reply));
        },
      );
  }

  listen(target: { port: number; address: string } | { path: string }): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.server.once('error', onError);
      const done = () => {
        this.server.server.removeListener('error', onError);
        resolve();
      };
      if ('path' in target) this.server.listen(target.path, done);
      else this.server.listen(target.port, target.address, done);
    });
  }

  address(): { port: number; address: string } | string | null {
    const a = this.server.server.address();
    if (a && typeof a === 'object') return { port: a.port, address: a.address };
    return a;
  }

  /**
   * Stops accepting connections and lets open sessions go on until they quit or `graceMs`
   * passes; whoever is left then gets 421 (RFC 5321 section 3.8) and is disconnected. A message
   * whose DATA is cut short this way was never acknowledged, so the client sends it again.
   */
  async close(graceMs: number): Promise<void> {
    const net = this.server.server;
    await new Promise<void>((resolve) => (net.listening ? net.close(() => resolve()) : resolve()));
    const deadline = Date.now() + graceMs;
    while (this.server.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.server.connections.size === 0) return;
    this.server.options.closeTimeout = 1;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
