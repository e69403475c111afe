import type { DirectoryConfig } from '../config/schema.js';
import { isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import { FileDirectory } from './file-backend.js';
import type { DirectoryAdmin, DirectorySource } from './types.js';

export type Backend = DirectorySource & DirectoryAdmin;

/**
 * Opens the configured backend. The daemon watches the file backend; the CLI does not. With
 * `check` (the daemon's start and SIGHUP), a MySQL backend's queries are run once: see checkBackend.
 */
export async function openBackend(
  cfg: DirectoryConfig,
  logger: Logger,
  opts: { watch: boolean; createIfMissing?: boolean; check?: boolean; rehash?: boolean },
): Promise<Backend> {
  if (cfg.backend === 'mysql') {
    // Loaded only when used: the file backend's CLI starts faster without mysql2.
    const { MysqlDirectory } = await import('./mysql-backend.js');
    const backend = await MysqlDirectory.open(cfg.mysql!, { logger, rehash: opts.rehash ?? false });
    if (opts.check) {
      try {
        await checkBackend(backend, logger);
      } catch (err) {
        await backend.close();
        throw err;
      }
    }
    return backend;
  }
  return FileDirectory.open(cfg.file.path, {
    logger,
    watch: opts.watch,
    ...(cfg.file.initial ? { initial: cfg.file.initial } : {}),
    ...(opts.createIfMissing ? { createIfMissing: true } : {}),
  });
}

/**
 * Runs a MySQL backend's queries once (MysqlDirectory.verify: the columns of the tutorials'
 * tables are read again for the default queries). A query that cannot run throws CONFIG_INVALID
 * naming it (start and SIGHUP refuse the configuration). An unreachable database is logged and
 * not fatal: lookups fail temporarily until it is back, as they would if it went away later.
 * Nothing to do for the file backend.
 */
export async function checkBackend(backend: DirectorySource, logger: Logger): Promise<void> {
  if (backend.kind !== 'mysql') return;
  const mysql = backend as import('./mysql-backend.js').MysqlDirectory;
  try {
    const report = await mysql.verify();
    for (const warning of report.warnings) logger.warn(warning);
    logger.info({ queries: Object.fromEntries(report.queries.map((q) => [q.name, q.text])) }, 'MySQL queries checked');
  } catch (err) {
    if (!isMailError(err, 'TEMP_FAIL')) throw err;
    logger.warn(
      { err: err.message },
      'MySQL unreachable, the queries are not checked: lookups fail temporarily (451, login later) until it is back',
    );
  }
}
