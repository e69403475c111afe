/**
 * Builds the running server from a configuration: directory, password service, store, TLS
 * credentials and listeners. Handles reload (SIGHUP) and graceful shutdown (SIGTERM).
 */
import fs from 'node:fs/promises';
import type { LoadedConfig } from './config/load.js';
import { Directory } from './directory/directory.js';
import { openBackend } from './directory/open.js';
import { PasswordService } from './directory/passwords/index.js';
import { FileDirectory } from './directory/file-backend.js';
import type { Logger } from './log.js';
import { NetworkList } from './net.js';
import { SmtpListener, type SmtpSettings } from './smtp/server.js';
import { MaildirStore } from './store/store.js';
import { loadCredentials, type Credentials } from './tls/certificates.js';

export interface Runtime {
  readonly config: LoadedConfig;
  readonly directory: Directory;
  readonly store: MaildirStore;
  readonly passwords: PasswordService;
  readonly listeners: SmtpListener[];
  /** The bound TCP port of a listener by name (tests listen on port 0). */
  portOf(name: string): number;
  reload(next: LoadedConfig): Promise<void>;
  shutdown(): Promise<void>;
}

export function listenerName(l: LoadedConfig['listeners'][number]): string {
  return l.name ?? `${l.protocol}:${l.path ?? l.port}`;
}

function smtpSettings(cfg: LoadedConfig): SmtpSettings {
  return {
    hostname: cfg.hostname,
    limits: cfg.limits,
    trusted: new NetworkList(cfg.trusted_networks),
    shutdownTimeoutMs: cfg.shutdown_timeout,
  };
}

function directoryOptions(cfg: LoadedConfig, passwords: PasswordService, logger: Logger) {
  const cache = cfg.directory.cache;
  return {
    recipientDelimiter: cfg.directory.recipient_delimiter,
    cache: { positiveTtlMs: cache.positive_ttl, negativeTtlMs: cache.negative_ttl, maxEntries: cache.max_entries },
    passwords,
    logger: logger.child({ component: 'directory' }),
  };
}

async function prepareUnixSocket(path: string): Promise<void> {
  // A socket left by a crash would make listen() fail with EADDRINUSE; Postfix and Dovecot
  // remove it the same way. Anything that is not a socket is left alone.
  const st = await fs.lstat(path).catch(() => undefined);
  if (st?.isSocket()) await fs.unlink(path);
}

export async function startServer(config: LoadedConfig, logger: Logger): Promise<Runtime> {
  let current = config;
  let settings = smtpSettings(config);
  await fs.mkdir(config.data_dir, { recursive: true, mode: 0o750 });
  await fs.mkdir(config.mail.root, { recursive: true, mode: 0o750 });

  const passwords = new PasswordService({ defaultScheme: config.passwords.default_scheme, newScheme: config.passwords.scheme });
  const backend = await openBackend(config.directory, logger.child({ component: 'directory' }), { watch: true });
  const directory = new Directory(backend, directoryOptions(config, passwords, logger));
  const store = new MaildirStore({ root: config.mail.root, layout: config.mail.layout, logger: logger.child({ component: 'store' }) });
  let credentials: Credentials = await loadCredentials(config.tls, config.data_dir, config.hostname, logger);
  logger.info({ certificate: credentials.source, subject: credentials.subject, validTo: credentials.validTo }, 'TLS certificate loaded');

  const ctx = { settings: () => settings, directory, store, logger };
  const listeners: SmtpListener[] = [];
  try {
    for (const l of config.listeners) {
      const name = listenerName(l);
      const listener = new SmtpListener({ name, protocol: l.protocol, tls: l.tls, credentials }, ctx);
      if (l.path) {
        await prepareUnixSocket(l.path);
        await listener.listen({ path: l.path });
        await fs.chmod(l.path, parseInt(l.socket_mode, 8));
      } else {
        await listener.listen({ port: l.port!, address: l.address });
      }
      listeners.push(listener);
      logger.info({ listener: name, protocol: l.protocol, tls: l.tls, at: listener.address() }, 'listening');
    }
  } catch (err) {
    await Promise.all(listeners.map((x) => x.close(0)));
    await directory.close();
    await passwords.close();
    throw err;
  }

  let shuttingDown: Promise<void> | undefined;

  return {
    get config() {
      return current;
    },
    directory,
    store,
    passwords,
    listeners,
    portOf(name: string) {
      const l = listeners.find((x) => x.spec.name === name);
      const a = l?.address();
      if (!a || typeof a === 'string') throw new Error(`no TCP listener named ${name}`);
      return a.port;
    },
    async reload(next: LoadedConfig) {
      const changed = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);
      if (changed(current.listeners, next.listeners)) logger.warn('listener changes take effect after a restart');
      if (changed(current.mail, next.mail) || current.data_dir !== next.data_dir)
        logger.warn('mail root and data_dir changes take effect after a restart');
      credentials = await loadCredentials(next.tls, current.data_dir, next.hostname, logger);
      if (changed(current.directory, next.directory)) {
        const fresh = await openBackend(next.directory, logger.child({ component: 'directory' }), { watch: true });
        await directory.replaceSource(fresh);
        logger.info({ backend: next.directory.backend }, 'directory backend replaced');
      } else if (directory.source instanceof FileDirectory) {
        await directory.source.reload();
      }
      directory.clearCache();
      settings = smtpSettings(next);
      for (const l of listeners) l.update(settings, credentials);
      logger.level = next.log.level;
      current = next;
      logger.info({ certificate: credentials.source, validTo: credentials.validTo }, 'configuration reloaded');
    },
    shutdown() {
      shuttingDown ??= (async () => {
        logger.info({ timeoutMs: current.shutdown_timeout }, 'shutting down: no new connections, sessions may finish');
        await Promise.all(listeners.map((l) => l.close(current.shutdown_timeout)));
        await store.close();
        await directory.close();
        await passwords.close();
        logger.info('shut down');
      })();
      return shuttingDown;
    },
  };
}
