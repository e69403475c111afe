/**
 * The `managesieve:` section: the ManageSieve listeners' limits and the script quotas
 * (Pigeonhole's names in brackets), and how the server turns it into session settings.
 */
import { SIEVE_EXTENSIONS } from '../sieve/index.js';
import { z } from 'zod';
import { duration, int, size } from '../config/units.js';
import type { NetworkList } from '../net.js';
import type { ManageSieveSettings } from './session.js';

export const manageSieveSchema = z.strictObject({
  /** Longest command line, literals not counted. */
  line_length: int(1024, 1_048_576).default(8192),
  /** Failed commands in a row before the connection is closed with BYE (Dovecot's 20). */
  bad_commands: int(1).default(20),
  /** Inactivity before BYE. */
  idle_timeout: duration().default(1_800_000),
  /** Time from connecting to a successful login (Dovecot's login timeout, 3 minutes). 0: none. */
  login_timeout: duration().default(180_000),
  /** Largest script (sieve_max_script_size, 1M): also the largest literal a client may send. */
  max_script_size: size().default(1024 * 1024),
  /** Scripts per user, 0 for no limit (sieve_quota_max_scripts). */
  max_scripts: int(0).default(0),
  /** Octets of all of a user's scripts, 0 for no limit (sieve_quota_max_storage). */
  max_storage: size().default(0),
  /** Redirects per script run, announced as MAXREDIRECTS (sieve_max_redirects). */
  max_redirects: int(0, 1000).default(4),
});

export type ManageSieveConfig = z.output<typeof manageSieveSchema>;

export function manageSieveSettings(
  cfg: ManageSieveConfig,
  common: { trusted: NetworkList; cleartextAuth: 'never' | 'trusted' },
  sieveExtensions: readonly string[] = SIEVE_EXTENSIONS,
): ManageSieveSettings {
  return {
    ...common,
    limits: {
      lineLength: cfg.line_length,
      badCommands: cfg.bad_commands,
      idleMs: cfg.idle_timeout,
      loginTimeoutMs: cfg.login_timeout,
      outputHighWater: 256 * 1024,
      outputStallMs: 5 * 60_000,
    },
    quota: { maxScripts: cfg.max_scripts, maxScriptSize: cfg.max_script_size, maxStorage: cfg.max_storage },
    maxRedirects: cfg.max_redirects,
    sieveExtensions,
  };
}
