import type { DirectoryConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { FileDirectory } from './file-backend.js';
import type { DirectoryAdmin, DirectorySource } from './types.js';

export type Backend = DirectorySource & DirectoryAdmin;

/** Opens the configured backend. The daemon watches the file backend; the CLI does not. */
export async function openBackend(
  cfg: DirectoryConfig,
  logger: Logger,
  opts: { watch: boolean; createIfMissing?: boolean },
): Promise<Backend> {
  if (cfg.backend === 'mysql') {
    // Loaded only when used: the file backend's CLI starts faster without mysql2.
    const { MysqlDirectory } = await import('./mysql-backend.js');
    return MysqlDirectory.open(cfg.mysql!, { logger });
  }
  return FileDirectory.open(cfg.file.path, {
    logger,
    watch: opts.watch,
    ...(cfg.file.initial ? { initial: cfg.file.initial } : {}),
    ...(opts.createIfMissing ? { createIfMissing: true } : {}),
  });
}
