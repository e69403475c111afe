import { statSync } from 'node:fs';

/**
 * Whether a path exists, by stat(2): existsSync uses access(2), which judges by the real user and
 * ignores capabilities, so it says "no" to a process that may read the file.
 */
export function pathExists(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false }) !== undefined;
}

/** Where a production install keeps its configuration, as /etc/postfix/main.cf and /etc/dovecot/dovecot.conf. */
export const SYSTEM_CONFIG_PATH = '/etc/maild/maild.yaml';

/**
 * The configuration file the daemon and the CLI use, found the same way by both: `--config`, then
 * `$MAILD_CONFIG`, then /etc/maild/maild.yaml. The repository's `npm start` and `npm run maild` set
 * MAILD_CONFIG to config/quickstart.yaml when it is unset.
 */
export function resolveConfigPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return explicit;
  if (env.MAILD_CONFIG) return env.MAILD_CONFIG;
  return SYSTEM_CONFIG_PATH;
}
