/**
 * Builds the running server from a configuration: directory, password service, store, TLS
 * credentials and listeners. Handles reload (SIGHUP) and graceful shutdown (SIGTERM).
 */
import fs from 'node:fs/promises';
import type { LoadedConfig } from './config/load.js';
import { Directory } from './directory/directory.js';
import { checkBackend, openBackend } from './directory/open.js';
import { PasswordService } from './directory/passwords/index.js';
import { FileDirectory } from './directory/file-backend.js';
import type { Logger } from './log.js';
import { MailError } from './errors.js';
import { NetworkList } from './net.js';
import { SmtpListener, type SmtpSettings } from './smtp/server.js';
import { MaildirStore } from './store/delivery.js';
import { MailService } from './store/mail/service.js';
import { loadCredentials, type Credentials } from './tls/certificates.js';
import { AuthLimiter } from './auth/limiter.js';
import { ImapListener } from './imap/server.js';
import type { ImapContext, ImapSession, ImapSettings } from './imap/session.js';
import { commandTable } from './imap/commands/index.js';
import { Pop3Listener } from './pop3/server.js';
import { shutdownSessions } from './session-listener.js';
import type { Pop3Context, Pop3Session, Pop3Settings } from './pop3/session.js';
import { pop3Commands } from './pop3/commands/index.js';
import { LoginDelay } from './pop3/login-delay.js';
import { ManageSieveListener } from './managesieve/server.js';
import type { ManageSieveContext, ManageSieveSession, ManageSieveSettings } from './managesieve/session.js';
import { manageSieveCommands } from './managesieve/commands/index.js';
import { manageSieveSettings } from './managesieve/config.js';
import { sizeOnlyValidator, type ScriptValidation, type ScriptValidator } from './managesieve/validate.js';
import { compileSieve } from './sieve/index.js';
import { SieveScripts, resolveSieveLocation, sieveHome } from './store/sieve-scripts.js';
import tls from 'node:tls';
import path from 'node:path';
import { Queue, type QueueSettings } from './queue/queue.js';
import { Spool } from './queue/spool.js';
import { Router, type RouteSettings } from './queue/route.js';
import { LocalDelivery } from './queue/local.js';
import { RemoteDelivery } from './queue/remote.js';
import { MxResolver } from './queue/mx.js';
import { Dns, dnsOptions } from './dns.js';
import { InboundChecks, type InboundSettings } from './inbound/checks.js';
import { SieveDelivery, type SieveSettings } from './sieve/delivery.js';
import { activeSieveScripts } from './store/sieve-active.js';
import type { DNSResolver } from 'mailauth';
import { parseNextHop } from './queue/nexthop.js';
import { startControlServer } from './control.js';
import { DkimKeys } from './queue/dkim.js';
import { DovecotAuthListener } from './dovecot-auth/server.js';
import type { DovecotAuthContext, DovecotAuthSettings } from './dovecot-auth/session.js';
import { dovecotAuthCommands } from './dovecot-auth/commands/index.js';
import { bindListeners, listenerName, type BoundListeners } from './listen/bind.js';

export { listenerName };

/** What the runtime needs of any listener. */
export interface Listener {
  readonly spec: { name: string };
  address(): { port: number; address: string } | string | null;
  close(graceMs: number): Promise<void>;
}

export interface Runtime {
  readonly config: LoadedConfig;
  readonly directory: Directory;
  readonly store: MaildirStore;
  readonly passwords: PasswordService;
  readonly listeners: Listener[];
  readonly mail: MailService;
  readonly imapSessions: ReadonlySet<ImapSession>;
  readonly pop3Sessions: ReadonlySet<Pop3Session>;
  readonly queue: Queue;
  /** The bound TCP port of a listener by name (tests listen on port 0). */
  portOf(name: string): number;
  reload(next: LoadedConfig, inputs?: ReloadInputs): Promise<void>;
  shutdown(): Promise<void>;
}

function smtpSettings(cfg: LoadedConfig): SmtpSettings {
  return {
    hostname: cfg.hostname,
    limits: cfg.limits,
    trusted: new NetworkList(cfg.trusted_networks),
    shutdownTimeoutMs: cfg.shutdown_timeout,
    cleartextAuth: cfg.auth.cleartext === 'trusted_networks' ? 'trusted' : 'never',
    submission: cfg.submission,
  };
}

function inboundSettings(cfg: LoadedConfig): InboundSettings {
  const a = cfg.inbound.authentication;
  return {
    dir: cfg.inbound.dir ?? path.join(cfg.data_dir, 'inbound'),
    authentication: {
      enabled: a.enabled,
      authservId: a.authserv_id ?? cfg.hostname,
      enforceDmarc: a.dmarc_policy,
      dmarcExemptDomains: a.dmarc_exempt_domains,
      dmarcExemptNetworks: new NetworkList(a.dmarc_exempt_networks),
      trustedArcSealers: a.trusted_arc_sealers,
      onTemporaryError: a.on_dns_error,
      arcSeal: a.arc_seal,
    },
    dnsbl: cfg.inbound.dnsbl,
    scanners: cfg.inbound.scanners,
    milters: cfg.inbound.milters,
  };
}

/** ManageSieve's check of an uploaded script: its size, then the compiler's first error. */
function validateSieve(script: string, maxBytes: number): ScriptValidation {
  const size = sizeOnlyValidator(maxBytes)(script) as ScriptValidation;
  if (!size.ok) return size;
  const compiled = compileSieve(script, { limits: { maxScriptSize: maxBytes } });
  if (compiled.ok) return { ok: true };
  const first = compiled.errors[0]!;
  return { ok: false, line: first.line, column: first.column, message: first.message };
}

function sieveSettings(cfg: LoadedConfig): SieveSettings {
  const s = cfg.sieve;
  return {
    enabled: s.enabled,
    before: s.before,
    after: s.after,
    limits: {
      maxScriptSize: s.max_script_size,
      maxActions: s.max_actions,
      maxRedirects: s.max_redirects,
      maxIncludeDepth: s.max_include_depth,
      maxCpuMs: s.max_cpu_time,
    },
    vacation: { defaultPeriod: s.vacation.default_period, minPeriod: s.vacation.min_period, maxPeriod: s.vacation.max_period },
    redirectEnvelopeFrom: s.redirect_envelope_from,
    hostname: cfg.hostname,
  };
}

function queueSettings(cfg: LoadedConfig): QueueSettings {
  const q = cfg.queue;
  return {
    hostname: cfg.hostname,
    concurrency: q.concurrency,
    destinationConcurrency: q.destination_concurrency,
    recipientsPerTransaction: q.recipients_per_transaction,
    retryMinMs: q.retry_min,
    retryMaxMs: q.retry_max,
    maxLifetimeMs: q.max_lifetime,
    delayWarningMs: q.delay_warning,
  };
}

function routeSettings(cfg: LoadedConfig): RouteSettings {
  const q = cfg.queue;
  // A broken relayhost is a configuration error now, not a deferral of every message later.
  if (q.relayhost) parseNextHop(q.relayhost, { port: 25, tls: q.tls });
  return { relayhost: q.relayhost, tls: q.tls, tlsPolicy: q.tls_policy, relayAuth: q.relay_auth, mxPort: q.mx_port };
}

/** The spool directory: queue.dir, or .queue under the mail root (made absolute by the loader). */
function spoolDir(cfg: LoadedConfig): string {
  return cfg.queue.dir ?? path.join(cfg.mail.root, '.queue');
}

function imapSettings(cfg: LoadedConfig, trusted: NetworkList): ImapSettings {
  return {
    hostname: cfg.hostname,
    trusted,
    cleartextAuth: cfg.auth.cleartext === 'trusted_networks' ? 'trusted' : 'never',
    limits: {
      lineLength: cfg.imap.line_length,
      literalSize: cfg.imap.literal_size,
      literalSizeBeforeLogin: 8192,
      appendSize: cfg.limits.message_size,
      badCommandsBeforeLogin: cfg.imap.bad_commands_before_login,
      badCommandsAfterLogin: cfg.imap.bad_commands,
      idleBeforeLoginMs: cfg.imap.idle_timeout_before_login,
      loginTimeoutMs: cfg.imap.login_timeout,
      idleAfterLoginMs: cfg.imap.idle_timeout,
      connectionsPerUserIp: cfg.imap.connections_per_user_ip,
      outputHighWater: 1024 * 1024,
      outputStallMs: 5 * 60_000,
    },
  };
}

function pop3Settings(cfg: LoadedConfig, trusted: NetworkList): Pop3Settings {
  return {
    hostname: cfg.hostname,
    trusted,
    cleartextAuth: cfg.auth.cleartext === 'trusted_networks' ? 'trusted' : 'never',
    lockSession: cfg.pop3.lock_session,
    limits: {
      lineLength: cfg.pop3.line_length,
      badCommands: cfg.pop3.bad_commands,
      idleMs: cfg.pop3.idle_timeout,
      loginTimeoutMs: cfg.pop3.login_timeout,
      loginDelayMs: cfg.pop3.login_delay,
      outputHighWater: 256 * 1024,
      outputStallMs: 5 * 60_000,
    },
  };
}

function dovecotAuthSettings(cfg: LoadedConfig, trusted: NetworkList): DovecotAuthSettings {
  const d = cfg.dovecot_auth;
  return {
    trusted,
    cleartextAuth: cfg.auth.cleartext === 'trusted_networks' ? 'trusted' : 'never',
    limits: {
      lineLength: d.line_length,
      pendingRequests: d.pending_requests,
      requestTimeoutMs: d.request_timeout,
      idleMs: d.idle_timeout,
      connections: d.connections,
    },
  };
}

function directoryOptions(cfg: LoadedConfig, passwords: PasswordService, logger: Logger, rehash: () => boolean) {
  const cache = cfg.directory.cache;
  return {
    recipientDelimiter: cfg.directory.recipient_delimiter,
    cache: { positiveTtlMs: cache.positive_ttl, negativeTtlMs: cache.negative_ttl, maxEntries: cache.max_entries },
    passwords,
    logger: logger.child({ component: 'directory' }),
    rehash,
  };
}

export interface ServerHooks {
  /** Test hook: a clock for the queue (retry times, expiry). */
  now?: () => number;
  /**
   * The listeners, bound already (the daemon binds them before it gives up root); bound here
   * when absent. Either way the runtime owns them from now on and closes them at shutdown.
   */
  bound?: BoundListeners;
  /** Credentials read before the start dropped privileges (root-only key files). */
  credentials?: Credentials;
  /** The check of Sieve scripts for ManageSieve (absent: sizeOnlyValidator, until the interpreter's compiler is wired). */
  sieveValidator?: ScriptValidator;
}

/** What a reload may bring that the running process cannot read itself (see privileges/keeper.ts). */
export interface ReloadInputs {
  credentials?: Credentials;
}

export async function startServer(config: LoadedConfig, logger: Logger, hooks: ServerHooks = {}): Promise<Runtime> {
  let current = config;
  let routeConfig = routeSettings(config); // validated before anything is opened
  let settings = smtpSettings(config);
  await fs.mkdir(config.data_dir, { recursive: true, mode: 0o750 });
  await fs.mkdir(config.mail.root, { recursive: true, mode: 0o750 });

  const passwords = new PasswordService({ defaultScheme: config.passwords.default_scheme, newScheme: config.passwords.scheme });
  // A MySQL query that cannot run stops the start here, naming it.
  let backend;
  try {
    backend = await openBackend(config.directory, logger.child({ component: 'directory' }), {
      watch: true,
      check: true,
      rehash: config.passwords.rehash,
    });
  } catch (err) {
    await passwords.close();
    throw err;
  }
  const directory = new Directory(
    backend,
    directoryOptions(config, passwords, logger, () => current.passwords.rehash),
  );
  const store = new MaildirStore({
    root: config.mail.root,
    layout: config.mail.layout,
    logger: logger.child({ component: 'store' }),
    // Spam goes to the user's \Junk folder (the MailService below knows the folders).
    specialFolder: async (user, use) => (await mail.account(user)).specialFolderDir(use),
    folderByName: async (user, name, create) => (await mail.account(user)).folderDir(name, create),
    // The users' Sieve scripts (SieveDelivery below, once the queue exists).
    filter: (req) => sieve.filter(req),
  });
  let credentials: Credentials = hooks.credentials ?? (await loadCredentials(config.tls, config.data_dir, config.hostname, logger));
  logger.info({ certificate: credentials.source, subject: credentials.subject, validTo: credentials.validTo }, 'TLS certificate loaded');

  // One resolver for the process: MX lookups and the inbound checks share its cache.
  const dns = new Dns(dnsOptions({ ...config.dns, servers: config.dns.servers.length ? config.dns.servers : config.queue.resolver }));
  let queueConfig = queueSettings(config);
  const queueLog = logger.child({ component: 'queue' });
  if (!config.hostname.includes('.')) {
    // RFC 5321 section 4.1.1.1: EHLO names a fully qualified domain; many servers refuse others.
    queueLog.warn(
      { hostname: config.hostname },
      'hostname is not a fully qualified domain name: set hostname, or remote servers may refuse our EHLO',
    );
  }
  const queue = new Queue({
    spool: new Spool(spoolDir(config)),
    router: new Router(directory, () => routeConfig),
    local: new LocalDelivery(directory, store),
    remote: new RemoteDelivery({
      heloName: config.hostname,
      connectTimeoutMs: config.queue.connect_timeout,
      commandTimeoutMs: config.queue.command_timeout,
      reuseIdleMs: config.queue.connection_reuse_time,
      reuseLimit: config.queue.connection_reuse_limit,
      mx: new MxResolver({ resolver: dns }),
      logger: queueLog,
    }),
    settings: () => queueConfig,
    logger: queueLog,
    ...(hooks.now ? { now: hooks.now } : {}),
  });
  try {
    await queue.start();
  } catch (err) {
    await directory.close();
    await passwords.close();
    throw err;
  }
  // The CLI's way to the running queue; mail flows without it, so a failure is logged, not fatal.
  const control = await startControlServer(config.data_dir, queue, logger.child({ component: 'control' })).catch((err: unknown) => {
    logger.error(
      { err: (err as Error).message, path: config.data_dir },
      'control socket unavailable: queue flush/hold/release/delete need a restart',
    );
    return { close: async () => undefined };
  });
  const limiter = new AuthLimiter({
    baseDelayMs: config.auth.failure_delay,
    maxDelayMs: config.auth.failure_delay_max,
    forgetAfterMs: 15 * 60_000,
    maxEntries: 100_000,
  });
  const dkim = new DkimKeys({ dir: config.dkim.keys_dir!, selector: config.dkim.selector, logger: logger.child({ component: 'dkim' }) });
  let sieveConfig = sieveSettings(config);
  const sieve = new SieveDelivery({
    settings: () => sieveConfig,
    scripts: activeSieveScripts(
      config.mail.root,
      config.mail.layout,
      config.sieve.max_script_size,
      config.sieve.global_dir,
      () => current.sieve.location,
    ),
    queue,
    logger: logger.child({ component: 'sieve' }),
    directoryVacation: (user) => directory.vacation(user.email),
    // `mail` is built below; this runs at delivery, after it.
    folderNames: async (user) => (await (await mail.account(user)).list()).filter((f) => f.exists).map((f) => f.name),
  });
  let inboundConfig = inboundSettings(config);
  const inbound = new InboundChecks({
    settings: () => inboundConfig,
    resolver: dns.resolve as DNSResolver,
    dns,
    sealKey: async (domain) => {
      const key = await dkim.get(domain);
      return key ? { signingDomain: key.domain, selector: key.selector, privateKey: key.pem } : undefined;
    },
    logger: logger.child({ component: 'inbound' }),
  });
  const ctx = { settings: () => settings, directory, store, queue, limiter, dkim, inbound, logger };
  const mail = new MailService({
    root: config.mail.root,
    layout: config.mail.layout,
    blockingReads: config.mail.blocking_reads,
    logger: logger.child({ component: 'mail' }),
    syncer: store.syncer,
    specialFolders: config.imap.special_folders,
    autoSpecialFolders: config.imap.auto_special_folders,
    separator: config.imap.hierarchy_separator,
    store,
  });
  let imapConfig = imapSettings(config, settings.trusted);
  let secureContext = tls.createSecureContext({ key: credentials.key, cert: credentials.cert });
  const imapSessions = new Set<ImapSession>();
  const imapCtx: ImapContext = {
    settings: () => imapConfig,
    directory,
    mail,
    limiter,
    logger: logger.child({ component: 'imap' }),
    commands: commandTable(),
    secureContext: () => secureContext,
    sessions: imapSessions,
  };
  let pop3Config = pop3Settings(config, settings.trusted);
  const pop3Sessions = new Set<Pop3Session>();
  const pop3Ctx: Pop3Context = {
    settings: () => pop3Config,
    directory,
    mail,
    limiter,
    loginDelay: new LoginDelay(),
    logger: logger.child({ component: 'pop3' }),
    commands: pop3Commands(),
    secureContext: () => secureContext,
    sessions: pop3Sessions,
  };
  const manageSieveSettingsOf = (cfg: LoadedConfig): ManageSieveSettings =>
    manageSieveSettings(cfg.managesieve, { trusted: settings.trusted, cleartextAuth: settings.cleartextAuth });
  let manageSieveConfig = manageSieveSettingsOf(config);
  const sieveSessions = new Set<ManageSieveSession>();
  const sieveCtx: ManageSieveContext = {
    settings: () => manageSieveConfig,
    directory,
    limiter,
    logger: logger.child({ component: 'managesieve' }),
    commands: manageSieveCommands(),
    scripts: (user) => {
      const home = sieveHome(current.mail.root, current.mail.layout, user);
      return new SieveScripts(home, manageSieveConfig.quota, resolveSieveLocation(current.sieve.location, home, user));
    },
    // PUTSCRIPT and CHECKSCRIPT compile the script as delivery will (RFC 5804 section 2.6).
    validate: hooks.sieveValidator ?? ((script) => validateSieve(script, manageSieveConfig.quota.maxScriptSize)),
    secureContext: () => secureContext,
    sessions: sieveSessions,
  };
  let dovecotAuthConfig = dovecotAuthSettings(config, settings.trusted);
  const dovecotAuthCtx: DovecotAuthContext = {
    settings: () => dovecotAuthConfig,
    directory,
    limiter,
    logger: logger.child({ component: 'dovecot-auth' }),
    commands: dovecotAuthCommands(),
  };
  const dovecotAuthListeners: DovecotAuthListener[] = [];
  const smtpListeners: SmtpListener[] = [];
  const imapListeners: ImapListener[] = [];
  const pop3Listeners: Pop3Listener[] = [];
  const sieveListeners: ManageSieveListener[] = [];
  const listeners: Listener[] = [];
  let bound: BoundListeners | undefined = hooks.bound;
  try {
    await inbound.prepare();
    bound ??= await bindListeners(config, { logger });
    for (const l of config.listeners) {
      const name = listenerName(l);
      const front = bound.get(name);
      if (!front) throw new MailError('CONFIG_INVALID', `listener ${name} was not bound`);
      const address = () => front.address();
      if (l.protocol === 'imap' || l.protocol === 'pop3' || l.protocol === 'managesieve') {
        const spec = {
          name,
          tls: l.tls,
          credentials,
          maxConnections: () => current.limits.connections,
          maxPerIp: () => current.limits.connections_per_ip,
        };
        const listener =
          l.protocol === 'imap'
            ? new ImapListener(spec, imapCtx)
            : l.protocol === 'pop3'
              ? new Pop3Listener(spec, pop3Ctx)
              : new ManageSieveListener(spec, sieveCtx);
        if (listener instanceof ImapListener) imapListeners.push(listener);
        else if (listener instanceof Pop3Listener) pop3Listeners.push(listener);
        else sieveListeners.push(listener);
        front.serve((socket, peer) => listener.accept(socket, peer));
        listeners.push({ spec: { name }, address, close: async () => listener.close() });
      } else if (l.protocol === 'dovecot-auth') {
        const listener = new DovecotAuthListener({ name, unix: l.path !== undefined }, dovecotAuthCtx);
        front.serve((socket, peer) => listener.accept(socket, peer));
        dovecotAuthListeners.push(listener);
        listeners.push({ spec: { name }, address, close: (graceMs) => listener.close(graceMs) });
      } else {
        const listener = new SmtpListener({ name, protocol: l.protocol, tls: l.tls, credentials }, ctx);
        front.serve((socket, peer) => listener.accept(socket, peer));
        smtpListeners.push(listener);
        listeners.push({ spec: { name }, address, close: (graceMs) => listener.close(graceMs) });
      }
      logger.info({ listener: name, protocol: l.protocol, tls: l.tls, at: front.address(), addresses: front.addresses() }, 'listening');
    }
  } catch (err) {
    await Promise.all([bound?.close(), ...listeners.map((x) => x.close(0))]);
    await control.close();
    await queue.stop();
    await directory.close();
    await passwords.close();
    throw err;
  }
  const front = bound;

  let shuttingDown: Promise<void> | undefined;

  return {
    get config() {
      return current;
    },
    directory,
    store,
    passwords,
    listeners,
    mail,
    imapSessions,
    pop3Sessions,
    queue,
    portOf(name: string) {
      const l = listeners.find((x) => x.spec.name === name);
      const a = l?.address();
      if (!a || typeof a === 'string') throw new Error(`no TCP listener named ${name}`);
      return a.port;
    },
    async reload(next: LoadedConfig, inputs: ReloadInputs = {}) {
      const nextRoutes = routeSettings(next); // throws on a broken relayhost: nothing is changed
      const changed = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);
      if (changed(current.listeners, next.listeners)) logger.warn('listener changes take effect after a restart');
      if (changed(current.mail, next.mail) || current.data_dir !== next.data_dir)
        logger.warn('mail root and data_dir changes take effect after a restart');
      // The directory first: a MySQL query that cannot run refuses the whole reload (nothing changed yet).
      const directoryLog = logger.child({ component: 'directory' });
      let fresh;
      if (changed(current.directory, next.directory) || current.passwords.rehash !== next.passwords.rehash) {
        fresh = await openBackend(next.directory, directoryLog, { watch: true, check: true, rehash: next.passwords.rehash });
      } else {
        // The same queries, but the tables may have changed (maild migrate added quota and enable).
        await checkBackend(directory.source, directoryLog);
      }
      try {
        credentials = inputs.credentials ?? (await loadCredentials(next.tls, current.data_dir, next.hostname, logger));
      } catch (err) {
        await fresh?.close();
        throw err;
      }
      if (fresh) {
        await directory.replaceSource(fresh);
        logger.info({ backend: next.directory.backend }, 'directory backend replaced');
      } else if (directory.source instanceof FileDirectory) {
        await directory.source.reload();
      }
      directory.clearCache();
      settings = smtpSettings(next);
      queueConfig = queueSettings(next);
      inboundConfig = inboundSettings(next);
      sieveConfig = sieveSettings(next);
      routeConfig = nextRoutes;
      imapConfig = imapSettings(next, settings.trusted);
      pop3Config = pop3Settings(next, settings.trusted);
      manageSieveConfig = manageSieveSettingsOf(next);
      dovecotAuthConfig = dovecotAuthSettings(next, settings.trusted);
      secureContext = tls.createSecureContext({ key: credentials.key, cert: credentials.cert });
      front.updateProxyNetworks(next.proxy_networks);
      for (const l of smtpListeners) l.update(settings, credentials);
      for (const l of imapListeners) l.updateCredentials(credentials);
      for (const l of [...pop3Listeners, ...sieveListeners]) l.updateCredentials(credentials);
      logger.level = next.log.level;
      current = next;
      logger.info({ certificate: credentials.source, validTo: credentials.validTo }, 'configuration reloaded');
    },
    shutdown() {
      shuttingDown ??= (async () => {
        logger.info({ timeoutMs: current.shutdown_timeout }, 'shutting down: no new connections, sessions may finish');
        // The ports close at once; this resolves once every connection has ended.
        const connectionsEnded = front.close();
        // IMAP sessions are long-lived: they are told BYE at once (RFC 3501 section 7.1.5).
        for (const l of [...imapListeners, ...pop3Listeners, ...sieveListeners]) l.close();
        for (const session of [...imapSessions]) session.shutdown();
        // POP3 sessions waiting for a command end at once (without UPDATE: nothing is deleted);
        // a running RETR or QUIT may finish within the shutdown timeout.
        await Promise.all([
          // Nothing is deleted for a POP3 session without QUIT; ManageSieve says BYE (TRYLATER).
          shutdownSessions(pop3Sessions, current.shutdown_timeout),
          shutdownSessions(sieveSessions, current.shutdown_timeout),
          ...smtpListeners.map((l) => l.close(current.shutdown_timeout)),
          ...dovecotAuthListeners.map((l) => l.close(current.shutdown_timeout)),
        ]);
        await connectionsEnded;
        // Deliveries in progress finish and are recorded; nothing new starts.
        await control.close();
        await queue.stop(current.shutdown_timeout);
        await store.close();
        await directory.close();
        await passwords.close();
        logger.info('shut down');
      })();
      return shuttingDown;
    },
  };
}
