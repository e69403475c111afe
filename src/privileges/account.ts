/**
 * The account maild serves as (`user:` / `group:`), looked up through NSS with getent, so users
 * from LDAP or systemd-userdbd work as they do for Postfix and Dovecot.
 */
import { execFileSync } from 'node:child_process';
import { MailError } from '../errors.js';

export interface Account {
  user: string;
  uid: number;
  group: string;
  gid: number;
}

function getent(database: 'passwd' | 'group', key: string): string[] | undefined {
  try {
    const line = execFileSync('getent', [database, key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0];
    return line ? line.split(':') : undefined;
  } catch {
    // getent exits 2 for a key that is not found.
    return undefined;
  }
}

/** Resolves `user:` (and `group:`, else the user's primary group) to ids; unknown names are a configuration error. */
export function lookupAccount(user: string, group?: string): Account {
  const pw = getent('passwd', user);
  if (!pw || pw.length < 4) throw new MailError('CONFIG_INVALID', `user: no such user ${user} (create it: useradd --system ${user})`);
  const uid = Number(pw[2]);
  let gid = Number(pw[3]);
  let groupName = getent('group', String(gid))?.[0] ?? String(gid);
  if (group !== undefined) {
    const gr = getent('group', group);
    if (!gr || gr.length < 3) throw new MailError('CONFIG_INVALID', `group: no such group ${group}`);
    gid = Number(gr[2]);
    groupName = gr[0]!;
  }
  return { user: pw[0]!, uid, group: groupName, gid };
}

/** What the start does about privileges. */
export type PrivilegePlan = { kind: 'stay'; reason: 'not-root' | 'user-is-root' } | { kind: 'drop'; account: Account };

/**
 * Decides the plan before anything is opened. Started as root, maild needs `user:` (it never
 * serves a client as root unless told `user: root`); started as another user, it stays that user.
 */
export function planPrivileges(
  cfg: { user?: string | undefined; group?: string | undefined },
  uid = process.getuid?.() ?? -1,
): PrivilegePlan {
  if (uid !== 0) return { kind: 'stay', reason: 'not-root' };
  if (cfg.user === undefined) {
    throw new MailError(
      'CONFIG_INVALID',
      'started as root without user: set user: (e.g. vmail) to drop to it after binding the listeners and reading the keys, or user: root to serve as root (not recommended)',
    );
  }
  if (cfg.user === 'root') return { kind: 'stay', reason: 'user-is-root' };
  const account = lookupAccount(cfg.user, cfg.group);
  if (account.uid === 0) throw new MailError('CONFIG_INVALID', `user: ${cfg.user} has uid 0: name an unprivileged user, or user: root`);
  return { kind: 'drop', account };
}

/**
 * Becomes the account for good: supplementary groups from /etc/group (so membership of e.g.
 * ssl-cert or postfix counts), then gid, then uid; there is no way back to root afterwards.
 */
export function dropPrivileges(account: Account): void {
  // process.initgroups exists on POSIX systems; the type definitions leave it out.
  (process as unknown as { initgroups(user: string, extraGroup: number): void }).initgroups(account.user, account.gid);
  process.setgid!(account.gid);
  process.setuid!(account.uid);
  if (process.getuid!() !== account.uid || process.geteuid!() !== account.uid || process.getegid!() !== account.gid) {
    throw new Error(`could not drop privileges to ${account.user}`);
  }
}
