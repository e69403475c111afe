import { parseArgs } from 'node:util';
import { loadConfig, type LoadedConfig } from './config/load.js';
import { isMailError } from './errors.js';
import { createLogger } from './log.js';
import { defaultConfigPath } from './paths.js';
import { startServer } from './server.js';

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
  const configPath = args.values.config ?? defaultConfigPath();
  let config: LoadedConfig;
  try {
    config = loadConfig(configPath);
  } catch (err) {
    fail(isMailError(err) ? `config error: ${err.message}` : String(err));
  }
  const logger = createLogger(config.log.level);
  logger.info({ config: config.configPath, hostname: config.hostname, node: process.version }, 'starting');

  let runtime;
  try {
    runtime = await startServer(config, logger);
  } catch (err) {
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
    let next: LoadedConfig;
    try {
      next = loadConfig(configPath);
    } catch (err) {
      logger.error(
        { err: isMailError(err) ? err.message : String(err) },
        'reload refused: the configuration is invalid, keeping the running one',
      );
      return;
    }
    runtime.reload(next).catch((err: unknown) => logger.error({ err: (err as Error).message }, 'reload failed, keeping what was running'));
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
