/**
 * `maild check-config`: opens what the start would open and says what would stop it, like
 * `postfix check` and `doveconf -n` together. Each problem is one line naming the key; exit 1 for
 * a configuration that cannot start, 75 when only a dependency (MySQL) could not be reached.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import { redactConfig, type LoadedConfig } from '../config/load.js';
import { sendControl } from '../control.js';
import { isMailError, MailError } from '../errors.js';
import { silentLogger } from '../log.js';
import { lookupAccount, type Account } from '../privileges/account.js';

export interface CheckIo {
  out(line: string): void;
  note(line: string): void;
}

/** Who the daemon will be when it touches files: the dropped-to account, or whoever runs it. */
function effectiveAccount(cfg: LoadedConfig, problems: string[]): { uid: number; gids: number[]; name: string } | undefined {
  const uid = process.getuid?.() ?? -1;
  if (uid === 0 && cfg.user === undefined) {
    problems.push('user: the start as root refuses to run without it: set user: vmail (or user: root to serve as root)');
    return undefined;
  }
  if (uid === 0 && cfg.user !== 'root') {
    let account: Account;
    try {
      account = lookupAccount(cfg.user!, cfg.group);
    } catch (err) {
      problems.push((err as Error).message);
      return undefined;
    }
    return { uid: account.uid, gids: [account.gid, ...supplementaryGroups(account.user)], name: account.user };
  }
  return { uid, gids: process.getgroups?.() ?? [], name: cfg.user === 'root' || uid === 0 ? 'root' : String(process.env.USER ?? uid) };
}

/** Every group of the user from NSS (id -G), as initgroups() will set them at the drop. */
function supplementaryGroups(user: string): number[] {
  try {
    return execFileSync('id', ['-G', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split(/\s+/)
      .map(Number);
  } catch {
    return [];
  }
}

/** Whether `who` may do `want` (r, w, x bits) on a file with this stat, by its mode bits (ACLs are not read). */
function allowed(st: { uid: number; gid: number; mode: number }, who: { uid: number; gids: number[] }, want: number): boolean {
  if (who.uid === 0) return true;
  const bits = st.uid === who.uid ? (st.mode >> 6) & 7 : who.gids.includes(st.gid) ? (st.mode >> 3) & 7 : st.mode & 7;
  return (bits & want) === want;
}

/**
 * A directory the daemon writes: it must be reachable and writable by the account, or be
 * creatable (the root phase of the start creates missing ones for the account).
 */
async function checkWritableDir(
  key: string,
  dir: string,
  who: { uid: number; gids: number[]; name: string },
  problems: string[],
): Promise<void> {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let at = '/';
  for (let i = 0; i <= parts.length; i++) {
    let st;
    try {
      st = await fs.stat(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        problems.push(`${key}: cannot check ${at}: ${(err as NodeJS.ErrnoException).code}`);
        return;
      }
      // Missing from here on: the parent must let the start create it.
      const parent = path.dirname(at);
      const pst = await fs.stat(parent);
      const creator = process.getuid?.() === 0 ? { uid: 0, gids: [] } : who;
      if (!allowed(pst, creator, 3)) problems.push(`${key}: ${dir} does not exist and ${parent} does not let ${who.name} create it`);
      return;
    }
    const last = i === parts.length;
    if (!st.isDirectory()) {
      problems.push(`${key}: ${at} is not a directory`);
      return;
    }
    if (!allowed(st, who, last ? 7 : 1)) {
      problems.push(
        last
          ? `${key}: ${dir} is not writable by ${who.name} (owner ${st.uid}:${st.gid}, mode ${(st.mode & 0o7777).toString(8)})`
          : `${key}: ${at} does not let ${who.name} reach ${dir} (mode ${(st.mode & 0o7777).toString(8)})`,
      );
      return;
    }
    if (!last) at = path.join(at, parts[i]!);
  }
}

/** Whether a maild answers on this data_dir's control socket (the ping `maild health` sends). */
async function daemonRunning(dataDir: string): Promise<boolean> {
  // A socket that accepts but does not answer in time still belongs to a running daemon.
  return sendControl(dataDir, { cmd: 'ping' }, 2000).then(
    (reply) => reply !== undefined,
    () => true,
  );
}

/** Binds each TCP listener address for a moment, as the start will. */
async function checkPorts(cfg: LoadedConfig, problems: string[], notes: string[]): Promise<void> {
  const running = await daemonRunning(cfg.data_dir);
  for (const [i, l] of cfg.listeners.entries()) {
    if (l.path || l.port === undefined || l.port === 0) continue;
    for (const address of l.address) {
      const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
        const server = net.createServer();
        server.once('error', (e: NodeJS.ErrnoException) => resolve(e));
        server.listen({ port: l.port, host: address, exclusive: true }, () => server.close(() => resolve(undefined)));
      });
      const where = `listeners[${i}] (${l.name ?? l.protocol}): ${address.includes(':') ? `[${address}]` : address}:${l.port}`;
      if (!err) continue;
      if (err.code === 'EADDRINUSE' && running) notes.push(`${where}: in use, by the running maild (a restart takes it over)`);
      else if (err.code === 'EADDRINUSE') problems.push(`${where}: already in use by another program`);
      else if (err.code === 'EACCES') problems.push(`${where}: a port below 1024 needs the start as root (user: drops afterwards)`);
      else if (err.code === 'EADDRNOTAVAIL') problems.push(`${where}: no such address on this host`);
      else problems.push(`${where}: cannot bind: ${err.code ?? err.message}`);
    }
  }
}

async function checkDirectoryFile(
  cfg: LoadedConfig,
  who: { uid: number; gids: number[]; name: string } | undefined,
  problems: string[],
): Promise<void> {
  if (cfg.directory.backend !== 'file') return;
  const file = cfg.directory.file.path;
  try {
    const st = await fs.stat(file);
    if (who && !allowed(st, who, 4)) problems.push(`directory.file.path: ${file} is not readable by ${who.name}`);
  } catch {
    const initial = cfg.directory.file.initial;
    if (!initial) problems.push(`directory.file.path: ${file} does not exist (and no directory.file.initial to copy)`);
    else if (
      !(await fs.stat(initial).then(
        () => true,
        () => false,
      ))
    )
      problems.push(`directory.file.initial: ${initial} does not exist (${file} does not either)`);
  }
}

export async function checkConfig(config: LoadedConfig, io: CheckIo): Promise<number> {
  io.out(stringify(redactConfig(config)).trimEnd());
  const problems: string[] = [];
  const notes: string[] = [];

  const who = effectiveAccount(config, problems);
  if (who) {
    await checkWritableDir('data_dir', config.data_dir, who, problems);
    await checkWritableDir('mail.root', config.mail.root, who, problems);
    if (config.queue.dir) await checkWritableDir('queue.dir', config.queue.dir, who, problems);
  }
  await checkDirectoryFile(config, who, problems);
  for (const [i, l] of config.listeners.entries()) {
    if (!l.path) continue;
    const parent = path.dirname(l.path);
    if (
      !(await fs.stat(parent).then(
        (s) => s.isDirectory(),
        () => false,
      ))
    )
      problems.push(`listeners[${i}].path: the directory ${parent} does not exist`);
  }
  await checkPorts(config, problems, notes);

  if (config.tls.cert && config.tls.key) {
    // The files the daemon reads at start (as root, before the drop): missing, unreadable or mismatched stop it there.
    const { loadCredentials } = await import('../tls/certificates.js');
    try {
      const cert = await loadCredentials(config.tls, config.data_dir, config.hostname, silentLogger);
      notes.push(`tls.cert: ${cert.subject}, valid until ${cert.validTo}: OK`);
      if (new Date(cert.validTo).getTime() < Date.now()) problems.push(`tls.cert: ${config.tls.cert} expired on ${cert.validTo}`);
    } catch (err) {
      problems.push(isMailError(err) ? err.message : String(err));
    }
  }

  let unreachable: string | undefined;
  if (config.directory.backend === 'mysql') {
    // Every query runs once with a key that matches nothing: a broken one fails here, not at the first RCPT.
    const { MysqlDirectory } = await import('../directory/mysql-backend.js');
    try {
      const db = await MysqlDirectory.open(config.directory.mysql!, { logger: silentLogger, rehash: config.passwords.rehash });
      try {
        const report = await db.verify();
        for (const q of report.queries) notes.push(`directory.mysql.queries.${q.name}${q.isDefault ? ' (default)' : ''}: ${q.text}: OK`);
        for (const w of report.warnings) notes.push(`warning: ${w}`);
      } finally {
        await db.close();
      }
    } catch (err) {
      if (isMailError(err, 'TEMP_FAIL')) unreachable = `the MySQL queries could not be checked: ${err.message}`;
      else problems.push(isMailError(err) ? err.message : String(err));
    }
  }

  for (const n of notes) io.note(n);
  for (const p of problems) io.note(`config error: ${p}`);
  if (problems.length > 0) {
    io.note(`${config.configPath}: ${problems.length} problem${problems.length === 1 ? '' : 's'}: the start would fail`);
    return 1;
  }
  if (unreachable) throw new MailError('TEMP_FAIL', unreachable);
  io.note(`${config.configPath}: configuration OK`);
  return 0;
}
