import { parseArgs } from 'node:util';
import { loadConfig, parseConfig, type LoadedConfig } from './config/load.js';
import { isMailError } from './errors.js';
import { createLogger } from './log.js';
import { resolveConfigPath } from './paths.js';
import { startServer, type ServerHooks } from './server.js';
import { bindListeners } from './listen/bind.js';
import { dropPrivileges, planPrivileges, type PrivilegePlan } from './privileges/account.js';
import { prepareDirectories } from './privileges/directories.js';
import { Keeper } from './privileges/keeper-client.js';
import { loadCredentials } from './tls/certificates.js';

function fail(message: string): never {
  process.stderr.write(`maild: ${message}\n`);
  process.exit(1);
}

/** Runs the server until SIGTERM/SIGINT; SIGHUP reloads the config, directory and certificates. */
export async function runDaemon(argv: string[]): Promise<void> {
  let args;
  try {
    args = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } }, allowPositionals: false });
  } catch (err) {
    fail(`${(err as Error).message}\nusage: maild serve [--config PATH]`);
  }
  const configPath = resolveConfigPath(args.values.config);
  let config: LoadedConfig;
  try {
    config = loadConfig(configPath);
  } catch (err) {
    fail(isMailError(err) ? `config error: ${err.message}` : String(err));
  }
  const logger = createLogger(config.log.level);
  logger.info({ config: config.configPath, hostname: config.hostname, node: process.version }, 'starting');

  let plan: PrivilegePlan;
  try {
    plan = planPrivileges(config);
  } catch (err) {
    fail(isMailError(err) ? `config error: ${err.message}` : String(err));
  }
  if (plan.kind === 'stay' && plan.reason === 'user-is-root') logger.warn('user: root: serving clients as root');
  if (plan.kind === 'stay' && plan.reason === 'not-root' && config.user !== undefined) {
    logger.info({ user: process.env.USER ?? process.getuid?.() }, 'not started as root: serving as the current user, user: is not used');
  }

  let runtime;
  let keeper: Keeper | undefined;
  try {
    const hooks: ServerHooks = {};
    if (plan.kind === 'drop') {
      // The root phase: what only root may do, then the drop, before any client is served.
      const { account } = plan;
      await prepareDirectories(config, account);
      hooks.credentials = await loadCredentials(config.tls, config.data_dir, config.hostname, logger);
      // Ports below 1024, and unix sockets in directories only root may write (Postfix's private/).
      // Connections that come before the drop wait in the listen queue: none is served as root.
      hooks.bound = await bindListeners(config, { logger });
      keeper = Keeper.start(configPath);
      dropPrivileges(account);
      logger.info({ user: account.user, uid: account.uid, group: account.group, gid: account.gid }, 'privileges dropped');
    }
    runtime = await startServer(config, logger, hooks);
  } catch (err) {
    keeper?.close();
    logger.fatal({ err: isMailError(err) ? err.message : err }, 'start failed');
    logger.flush();
    fail(isMailError(err) ? err.message : `start failed: ${(err as Error).message}`);
  }
  logger.info({ listeners: runtime.listeners.map((l) => l.spec.name) }, 'ready');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now');
      logger.flush();
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'stopping');
    runtime.shutdown().then(
      () => {
        keeper?.close();
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading configuration, directory and certificates');
    void (async () => {
      let next: LoadedConfig;
      let credentials;
      try {
        if (keeper) {
          // Dropped: the configuration and keys may be root-only; the keeper reads them.
          const read = await keeper.reload();
          next = parseConfig(read.configText, configPath);
          credentials = read.credentials;
        } else {
          next = loadConfig(configPath);
        }
      } catch (err) {
        logger.error(
          { err: isMailError(err) ? err.message : String(err) },
          'reload refused: the configuration is invalid, keeping the running one',
        );
        return;
      }
      if (next.user !== config.user || next.group !== config.group) logger.warn('user and group changes take effect after a restart');
      await runtime.reload(next, credentials ? { credentials } : {});
    })().catch((err: unknown) => logger.error({ err: (err as Error).message }, 'reload failed, keeping what was running'));
  });
  process.on('uncaughtException', (err) => {
    // Crash-only: every acknowledged message is already durable; a supervisor restarts us.
    logger.fatal({ err }, 'uncaught exception');
    logger.flush();
    process.exit(70);
  });
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'unhandled rejection');
    logger.flush();
    process.exit(70);
  });
}
