/**
 * A throwaway instance of Debian's real Postfix (packages postfix, installed by .ci/run with
 * "No configuration"): its own config_directory, queue_directory and data_directory under a
 * temporary directory, listening on 127.0.0.1 only, logging to a file (maillog_file), started
 * with `postfix -c DIR start` and stopped with `postfix -c DIR stop`. The system's Postfix and
 * /etc/postfix/main.cf are neither needed nor touched. Postfix insists on root (it starts as
 * root and drops to the postfix user), so these tests run as root, as CI does.
 */
import { execFile } from 'node:child_process';
import { access, chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const POSTFIX = '/usr/sbin/postfix';

/** The uid and gid of a system user, from /etc/passwd. */
export async function systemUser(name: string): Promise<{ uid: number; gid: number }> {
  const entry = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith(`${name}:`));
  if (!entry) throw new Error(`no user ${name}: the Postfix interop tests need the postfix package (.ci/run installs it)`);
  const [, , uid, gid] = entry.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A TCP port free on 127.0.0.1 right now (the OS picks it; it is closed again for Postfix to take). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PostfixInstance {
  dir: string;
  configDir: string;
  /** Relative socket paths in main.cf/master.cf (private/...) are relative to this directory. */
  queueDir: string;
  /** The mail log so far (for assertions and failure messages). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Prepares the directories (the queue's private/ exists before start so that a daemon can put
 * its sockets there first, as Dovecot does with private/auth), without starting Postfix.
 */
export async function preparePostfix(): Promise<{ dir: string; configDir: string; queueDir: string; dataDir: string }> {
  await access(POSTFIX).catch(() => {
    throw new Error(`${POSTFIX} is missing: the Postfix interop tests need the postfix package (.ci/run installs it)`);
  });
  if (process.getuid?.() !== 0) throw new Error('the Postfix interop tests need root: Postfix starts as root and drops to its own user');
  const postfix = await systemUser('postfix');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-postfix-'));
  // Postfix's daemons (user postfix) reach the queue through it.
  await chmod(dir, 0o755);
  const configDir = path.join(dir, 'conf');
  const queueDir = path.join(dir, 'queue');
  const dataDir = path.join(dir, 'data');
  await mkdir(configDir);
  await mkdir(path.join(queueDir, 'private'), { recursive: true });
  await chown(path.join(queueDir, 'private'), postfix.uid, 0);
  await chmod(path.join(queueDir, 'private'), 0o700);
  await mkdir(dataDir);
  await chown(dataDir, postfix.uid, postfix.gid);
  return { dir, configDir, queueDir, dataDir };
}

/** Writes main.cf and master.cf and starts Postfix; fails with the mail log when it does not come up. */
export async function startPostfix(
  dirs: { dir: string; configDir: string; queueDir: string; dataDir: string },
  main: Record<string, string>,
  master: string,
): Promise<PostfixInstance> {
  const maillog = path.join(dirs.dir, 'maillog');
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: dirs.queueDir,
    data_directory: dirs.dataDir,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mydestination: '',
    alias_maps: '',
    alias_database: '',
    maillog_file: maillog,
    maillog_file_prefixes: dirs.dir,
    smtpd_peername_lookup: 'no',
    ...main,
  };
  await writeFile(
    path.join(dirs.configDir, 'main.cf'),
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}\n`)
      .join(''),
  );
  await writeFile(path.join(dirs.configDir, 'master.cf'), master);
  const log = () => readFile(maillog, 'utf8').catch(() => '');
  try {
    await run(POSTFIX, ['-c', dirs.configDir, 'start'], { timeout: 60_000 });
  } catch (err) {
    const text = await log();
    await run(POSTFIX, ['-c', dirs.configDir, 'stop'], { timeout: 60_000 }).catch(() => undefined);
    await rm(dirs.dir, { recursive: true, force: true });
    throw new Error(`postfix start failed: ${(err as Error).message}\n${text}`);
  }
  return {
    ...dirs,
    log,
    async stop() {
      await run(POSTFIX, ['-c', dirs.configDir, 'stop'], { timeout: 60_000 }).catch(() => undefined);
      await rm(dirs.dir, { recursive: true, force: true });
    },
  };
}

/** The services every Postfix needs (master.cf), without chroot: the test's own lines come first. */
export const BASE_SERVICES = `
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
