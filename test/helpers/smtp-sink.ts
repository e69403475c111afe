/**
 * Test SMTP servers for outbound delivery tests, on 127.0.0.1 and an ephemeral port.
 *
 * - startSmtpSink(): a programmable server on smtp-server: records every accepted message, answers
 *   per recipient with 250/4xx/5xx at RCPT or at the end of DATA, offers STARTTLS (self-signed
 *   certificate) or not, can require AUTH, can delay its replies; counts connections (open at once,
 *   too), RSET and QUIT, and can drop its open sessions (dropConnections) as an idle timeout would.
 * - startStartTlsInjector(): a raw `net` server that, on STARTTLS, sends its "220" together with
 *   extra plaintext replies (a man in the middle injecting responses, RFC 3207 section 6) and then
 *   speaks a minimal SMTP over TLS; a client must not take the injected lines as replies.
 */
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { SMTPServer, type SMTPServerAddress, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';

/** A message the sink accepted (a 2xx reply to the end of DATA). */
export interface SinkMessage {
  /** MAIL FROM address ('' for the null sender). */
  from: string;
  /** MAIL FROM parameters as the server parsed them (e.g. { SIZE: '123', BODY: '8BITMIME' }). */
  mailParams: Record<string, string | boolean>;
  /** Accepted RCPT TO addresses, in order. */
  to: string[];
  /** The message as received, after dot-unstuffing, without the terminating ".". */
  data: Buffer;
  /** True when the session was inside TLS (STARTTLS) when DATA ended. */
  secure: boolean;
  /** The authenticated user, when the client authenticated. */
  authUser?: string;
  /** The EHLO/HELO name the client gave. */
  heloName: string;
}

/** How to answer for one recipient; codes default to acceptance. */
export interface SinkRule {
  /** Reply code for MAIL FROM when this address is the sender (e.g. 451, 553). */
  mail?: number;
  /** Reply code for RCPT TO (e.g. 450, 550). 2xx or unset: accept. */
  rcpt?: number;
  /** Reply code for the end of DATA when this recipient is in the transaction (e.g. 451, 554). */
  data?: number;
  /** Reply text after the code (default: an enhanced code derived from the reply and a note). */
  text?: string;
}

export interface SmtpSinkOptions {
  /** Offer STARTTLS (default true). Without it the STARTTLS command is refused, too. */
  starttls?: boolean;
  /** TLS from the first byte (SMTPS, port 465 style) instead of STARTTLS. */
  implicitTls?: boolean;
  /** Require AUTH (PLAIN/LOGIN, only inside TLS) with these credentials before MAIL FROM. */
  auth?: { user: string; pass: string };
  /** Certificate and key; a cached self-signed one for "localhost" by default. */
  tls?: { key: string; cert: string };
  /** Delay, in milliseconds, before the greeting and every MAIL/RCPT/DATA reply. */
  delayMs?: number;
  /** Largest message, advertised with SIZE (RFC 1870); 10 MiB by default. */
  size?: number;
  /** Name in the greeting and EHLO reply (default "sink.test"). */
  hostname?: string;
}

export interface SinkStats {
  connections: number;
  mailFrom: number;
  auth: number;
  authFailed: number;
  active: number;
  maxActive: number;
  rset: number;
  quit: number;
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** Accepted messages, in order of acceptance. */
  readonly messages: SinkMessage[];
  /**
   * Counts of what the sink saw: connections, MAIL FROM commands, successful AUTHs, failed AUTHs;
   * connections open now (`active`, down once the socket has closed) and at most at once
   * (`maxActive`); RSET and QUIT commands.
   */
  readonly stats: SinkStats;
  /** Sets how to answer for `address` as recipient or sender (case-insensitive); replaces an earlier rule. */
  setRule(address: string, rule: SinkRule): void;
  /** Drops all rules: every recipient is accepted again. */
  clearRules(): void;
  /** Changes the reply delay for new replies. */
  setDelay(ms: number): void;
  /** Resolves once at least `n` messages were accepted; rejects after `timeoutMs`. */
  waitForMessages(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  /**
   * Ends every open session from the server side, as a server's idle timeout does: with `reply`
   * (e.g. "421 4.4.2 sink.test Error: timeout exceeded") first, or silently (a FIN) without.
   * Resolves once their sockets have closed.
   */
  dropConnections(reply?: string): Promise<void>;
  /** Resolves once `check(stats)` holds (polled); rejects after `timeoutMs` (5000 by default). */
  waitForStats(check: (stats: SinkStats) => boolean, timeoutMs?: number): Promise<void>;
  /** Stops listening and ends open sessions; connections are refused afterwards. */
  close(): Promise<void>;
}

/** What the sink needs of smtp-server's per-connection objects (not in its public types). */
interface ServerConnection {
  session: SMTPServerSession;
  _socket: net.Socket;
  send(code: number, text: string): void;
  close(): void;
  [handler: `handler_${string}`]: ((command: Buffer, callback: () => void) => void) | undefined;
}

let cachedCert: Promise<{ key: string; cert: string }> | undefined;

/** A self-signed certificate for "localhost" / 127.0.0.1, generated once per process. */
export function testCertificate(): Promise<{ key: string; cert: string }> {
  cachedCert ??= generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  }).then((pems) => ({ key: pems.private, cert: pems.cert }));
  return cachedCert;
}

function replyError(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

function defaultText(code: number, what: string): string {
  return `${Math.floor(code / 100)}.${code === 550 ? '1.1' : '0.0'} ${what} (sink rule ${code})`;
}

/** Starts a programmable SMTP server on 127.0.0.1 and an ephemeral port. */
export async function startSmtpSink(opts: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const credentials = opts.tls ?? (await testCertificate());
  const rules = new Map<string, SinkRule>();
  const messages: SinkMessage[] = [];
  const stats: SinkStats = { connections: 0, mailFrom: 0, auth: 0, authFailed: 0, active: 0, maxActive: 0, rset: 0, quit: 0 };
  const counted = new WeakSet<SMTPServerSession>();
  const waiters = new Set<() => void>();
  let delayMs = opts.delayMs ?? 0;
  // Delayed replies still pending; cleared on close so a long delay never holds the process.
  const pending = new Set<NodeJS.Timeout>();
  const later = (fn: () => void) => {
    if (delayMs <= 0) return fn();
    const timer = setTimeout(() => {
      pending.delete(timer);
      fn();
    }, delayMs);
    pending.add(timer);
  };
  const ruleFor = (address: string) => rules.get(address.toLowerCase());

  const disabled: string[] = [];
  if (opts.starttls === false) disabled.push('STARTTLS');
  if (!opts.auth) disabled.push('AUTH');
  const options: SMTPServerOptions = {
    name: opts.hostname ?? 'sink.test',
    banner: 'sink ready',
    key: credentials.key,
    cert: credentials.cert,
    disabledCommands: disabled,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: !opts.auth,
    allowInsecureAuth: false,
    hideSTARTTLS: opts.starttls === false || opts.implicitTls === true,
    secure: opts.implicitTls === true,
    disableReverseLookup: true,
    closeTimeout: 500,
    logger: false,
    size: opts.size ?? 10 * 1024 * 1024,
    onConnect: (session, cb) => {
      stats.connections++;
      stats.active++;
      counted.add(session);
      stats.maxActive = Math.max(stats.maxActive, stats.active);
      // smtp-server has no hook for RSET or QUIT: count them by wrapping this connection's handlers.
      const conn = [...(server.connections as Set<unknown> as Set<ServerConnection>)].find((c) => c.session === session);
      if (conn) {
        for (const [verb, key] of [
          ['RSET', 'rset'],
          ['QUIT', 'quit'],
        ] as const) {
          const handler = conn[`handler_${verb}`];
          if (handler) {
            conn[`handler_${verb}`] = function (this: ServerConnection, command, callback) {
              stats[key]++;
              return handler.call(this, command, callback);
            };
          }
        }
      }
      later(() => cb());
    },
    onClose: (session) => {
      if (counted.delete(session)) stats.active--;
    },
    onAuth: (auth, _session, cb) => {
      if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) {
        stats.auth++;
        return cb(null, { user: auth.username });
      }
      stats.authFailed++;
      cb(replyError(535, '5.7.8 Authentication credentials invalid'));
    },
    onMailFrom: (address, _session, cb) => {
      stats.mailFrom++;
      const rule = ruleFor(address.address);
      later(() => {
        if (rule?.mail && rule.mail >= 300) return cb(replyError(rule.mail, rule.text ?? defaultText(rule.mail, 'sender refused')));
        cb();
      });
    },
    onRcptTo: (address: SMTPServerAddress, _session, cb) => {
      const rule = ruleFor(address.address);
      later(() => {
        if (rule?.rcpt && rule.rcpt >= 300) return cb(replyError(rule.rcpt, rule.text ?? defaultText(rule.rcpt, 'recipient refused')));
        cb();
      });
    },
    onData: (stream, session: SMTPServerSession, cb) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const to = session.envelope.rcptTo.map((r) => r.address);
        const refusal = to.map((a) => ruleFor(a)).find((r) => r?.data && r.data >= 300);
        later(() => {
          if (refusal?.data) return cb(replyError(refusal.data, refusal.text ?? defaultText(refusal.data, 'message refused')));
          const mailFrom = session.envelope.mailFrom;
          messages.push({
            from: mailFrom ? mailFrom.address : '',
            mailParams: (mailFrom && mailFrom.args) || {},
            to,
            data: Buffer.concat(chunks),
            secure: session.secure,
            ...(session.user ? { authUser: String(session.user) } : {}),
            heloName: session.hostNameAppearsAs,
          });
          for (const w of [...waiters]) w();
          cb(null, '2.0.0 Ok: queued');
        });
      });
    },
  };
  const server = new SMTPServer(options);
  server.on('error', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  const port = (server.server.address() as net.AddressInfo).port;

  return {
    host: '127.0.0.1',
    port,
    messages,
    stats,
    setRule: (address, rule) => void rules.set(address.toLowerCase(), rule),
    clearRules: () => rules.clear(),
    setDelay: (ms) => void (delayMs = ms),
    waitForMessages: (n, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length < n) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(messages);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`sink: ${messages.length} of ${n} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    dropConnections: async (reply) => {
      const open = [...(server.connections as Set<unknown> as Set<ServerConnection>)];
      const closed = open.map((c) =>
        c._socket.destroyed ? Promise.resolve() : new Promise<void>((resolve) => c._socket.once('close', () => resolve())),
      );
      for (const c of open) {
        if (reply) c._socket.write(`${reply}\r\n`);
        c.close();
      }
      await Promise.all(closed);
    },
    waitForStats: (check, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const poll = () => {
          if (check(stats)) return resolve();
          if (Date.now() > deadline) return reject(new Error(`sink: stats ${JSON.stringify(stats)} after ${timeoutMs} ms`));
          setTimeout(poll, 10);
        };
        poll();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of pending) clearTimeout(timer);
        pending.clear();
        server.close(() => resolve());
      }),
  };
}

export interface StartTlsInjector {
  readonly port: number;
  /** Messages received over TLS, dot-unstuffed, without the terminating ".". */
  readonly messages: Buffer[];
  /** Every command line received, with "tls:" in front of those received inside TLS. */
  readonly commands: string[];
  close(): Promise<void>;
}

/**
 * A raw server offering STARTTLS that answers the STARTTLS command with "220 go ahead" followed
 * immediately, in the same write, by `inject` (e.g. "250 injected\r\n"), then upgrades with a
 * server-side TLSSocket and speaks a minimal SMTP (no PIPELINING) inside TLS. Its final reply to
 * a message is "250 2.0.0 Ok: queued as INJ<n>".
 */
export async function startStartTlsInjector(opts: { inject: string }): Promise<StartTlsInjector> {
  const { key, cert } = await testCertificate();
  const messages: Buffer[] = [];
  const commands: string[] = [];
  const sockets = new Set<net.Socket>();

  const serve = (socket: net.Socket | tls.TLSSocket, secure: boolean) => {
    let buf = '';
    let inData = false;
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          const end = buf.startsWith('.\r\n') ? 0 : buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          const body = end === 0 ? '' : buf.slice(0, end + 2);
          buf = buf.slice(end === 0 ? 3 : end + 5);
          inData = false;
          // RFC 5321 section 4.5.2: remove the stuffed dot of each line.
          messages.push(Buffer.from(body.replace(/(^|\r\n)\./g, '$1'), 'latin1'));
          socket.write(`250 2.0.0 Ok: queued as INJ${messages.length}\r\n`);
          continue;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.slice(0, eol);
        buf = buf.slice(eol + 2);
        commands.push(secure ? `tls:${line}` : line);
        const verb = line.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO') socket.write(secure ? '250-injector.test\r\n250 8BITMIME\r\n' : '250-injector.test\r\n250 STARTTLS\r\n');
        else if (verb === 'STARTTLS' && !secure) {
          socket.removeListener('data', onData);
          socket.write(`220 2.0.0 go ahead\r\n${opts.inject}`);
          const secured = new tls.TLSSocket(socket, { isServer: true, key, cert });
          secured.on('error', () => undefined);
          serve(secured, true);
          return;
        } else if (verb === 'MAIL' || verb === 'RCPT') socket.write('250 2.1.0 Ok\r\n');
        else if (verb === 'DATA') {
          inData = true;
          socket.write('354 End data with <CR><LF>.<CR><LF>\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 2.0.0 Bye\r\n');
          return;
        } else if (verb === 'RSET' || verb === 'NOOP') socket.write('250 2.0.0 Ok\r\n');
        else socket.write('502 5.5.2 Error: command not recognized\r\n');
      }
    };
    socket.on('data', onData);
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.write('220 injector.test ESMTP\r\n');
    serve(socket, false);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    messages,
    commands,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
