/**
 * Debian's Dovecot as the benchmarks' yardstick: started in the foreground with a configuration
 * and a passwd-file of its own in a work folder, serving Maildirs under `mailRoot/<domain>/<local>`
 * as nobody (it refuses root), for IMAP or POP3, in clear text or over implicit TLS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chown, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort, waitListening } from '../test/helpers/milter-daemons.js';

/** Dovecot serves mail as nobody; its copy of the Maildirs is handed over (chownTree). */
export const DOVECOT_UID = 65534;

export interface DovecotOptions {
  work: string;
  mailRoot: string;
  protocol: 'imap' | 'pop3';
  tls: boolean;
  cert: { cert: string; key: string };
  /** Full addresses; every one has `password`. */
  users: string[];
  password: string;
  /** mail_max_userip_connections. */
  connectionsPerUserIp: number;
}

export interface RunningServer {
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

export async function chownTree(p: string, uid: number): Promise<void> {
  await chown(p, uid, uid);
  if ((await stat(p)).isDirectory()) for (const e of await readdir(p)) await chownTree(path.join(p, e), uid);
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export async function startDovecot(o: DovecotOptions): Promise<RunningServer> {
  const port = await freePort();
  await writeFile(path.join(o.work, 'passwd'), `${o.users.map((u) => `${u}:{PLAIN}${o.password}::::::`).join('\n')}\n`);
  const conf = path.join(o.work, 'dovecot.conf');
  const [clear, secure] = o.protocol === 'imap' ? ['imap', 'imaps'] : ['pop3', 'pop3s'];
  await writeFile(
    conf,
    [
      `base_dir = ${o.work}/run`,
      `state_dir = ${o.work}/state`,
      `log_path = ${o.work}/dovecot.log`,
      `protocols = ${o.protocol}`,
      'listen = 127.0.0.1',
      `ssl = ${o.tls ? 'required' : 'yes'}`,
      `ssl_cert = <${o.cert.cert}`,
      `ssl_key = <${o.cert.key}`,
      'disable_plaintext_auth = no',
      'auth_mechanisms = plain login',
      `mail_location = maildir:${o.mailRoot}/%d/%n`,
      `mail_uid = ${DOVECOT_UID}`,
      `mail_gid = ${DOVECOT_UID}`,
      'first_valid_uid = 1',
      'first_valid_gid = 1',
      `mail_max_userip_connections = ${o.connectionsPerUserIp}`,
      'default_login_user = dovenull',
      'default_internal_user = dovecot',
      `passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u ${o.work}/passwd\n}`,
      `userdb {\n  driver = static\n  args = uid=${DOVECOT_UID} gid=${DOVECOT_UID} home=${o.mailRoot}/%d/%n\n}`,
      `service ${o.protocol}-login {\n  inet_listener ${clear} {\n    port = ${o.tls ? 0 : port}\n  }\n  inet_listener ${secure} {\n    port = ${o.tls ? port : 0}\n${o.tls ? '    ssl = yes\n' : ''}  }\n}`,
      'namespace inbox {\n  inbox = yes\n  separator = /\n}',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('dovecot', ['-F', '-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitListening(port, child, () => readFileSafe(path.join(o.work, 'dovecot.log')), 15_000);
  return {
    port,
    pid: child.pid,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** CPU seconds of a process and its children (Dovecot's mail and login processes), from /proc. */
export async function processCpu(pid: number | undefined): Promise<number> {
  if (!pid) return 0;
  const ticks = async (p: number): Promise<number> => {
    const stat = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    const f = stat.split(') ')[1]?.split(' ') ?? [];
    // utime, stime, cutime, cstime (fields 14-17): the reaped children count in cutime/cstime.
    let own = Number(f[11] ?? 0) + Number(f[12] ?? 0) + Number(f[13] ?? 0) + Number(f[14] ?? 0);
    const children = await readFile(`/proc/${p}/task/${p}/children`, 'utf8').catch(() => '');
    for (const c of children.split(' ').filter(Boolean)) own += await ticks(Number(c));
    return own;
  };
  return (await ticks(pid)) / 100;
}
