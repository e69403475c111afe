/**
 * Unix socket listeners (LMTP, dovecot-auth): the stale socket of a crashed process removed, the
 * socket's mode, owner and group set once it exists, as Dovecot's unix_listener mode/user/group
 * do, so that Postfix (user postfix) can connect to a socket of a daemon running as vmail.
 */
import fs from 'node:fs/promises';
import { prepareUnixSocket } from '../control.js';

export interface SocketAccess {
  /** Octal string such as "0660". */
  mode: string;
  /** A user name or a numeric uid. */
  owner?: string | undefined;
  /** A group name or a numeric gid. */
  group?: string | undefined;
}

/** The numeric id of a user or group from /etc/passwd or /etc/group (numbers pass as they are). */
async function lookupId(database: '/etc/passwd' | '/etc/group', name: string): Promise<number> {
  if (/^\d+$/.test(name)) return Number(name);
  const text = await fs.readFile(database, 'utf8');
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields[2] !== undefined && /^\d+$/.test(fields[2])) return Number(fields[2]);
  }
  throw new Error(`no ${database === '/etc/passwd' ? 'user' : 'group'} named ${JSON.stringify(name)} in ${database}`);
}

/** Resolves owner and group before the socket exists, so a typo fails the start, not the chown. */
async function resolveOwnership(access: SocketAccess): Promise<{ uid: number; gid: number }> {
  return {
    uid: access.owner === undefined ? -1 : await lookupId('/etc/passwd', access.owner),
    gid: access.group === undefined ? -1 : await lookupId('/etc/group', access.group),
  };
}

/**
 * Opens a unix socket listener at `path` through `listen` (which binds it) and gives the socket
 * the configured mode, owner and group.
 */
export async function openUnixSocket(path: string, access: SocketAccess, listen: () => Promise<void>): Promise<void> {
  const { uid, gid } = await resolveOwnership(access);
  await prepareUnixSocket(path);
  await listen();
  if (uid !== -1 || gid !== -1) await fs.chown(path, uid, gid);
  await fs.chmod(path, parseInt(access.mode, 8));
}
