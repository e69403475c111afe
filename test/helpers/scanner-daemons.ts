/**
 * Throwaway instances of the real content scanners from Debian (packages rspamd, spamd with
 * spamassassin, clamav-daemon; .ci/run installs them): each in the foreground as a child of the
 * test, on an ephemeral port of 127.0.0.1, with its configuration, databases and logs in a
 * temporary directory. Nothing of the system's instances (/etc, /var/lib, /run) is written to,
 * and nothing is downloaded: clamd gets a local signature database the test writes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, chmod, chown, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { InboundMessage } from '../../src/inbound/types.js';
import { freePort, systemUser } from './postfix.js';

export { freePort };

export interface ScannerDaemon {
  port: number;
  dir: string;
  /** How long it took from spawn to the first answered ping (for the notes, never asserted). */
  startupMs: number;
  process: ChildProcess;
  /** What the daemon wrote to stdout/stderr so far. */
  output(): string;
  /** Sends SIGSTOP or SIGCONT to the daemon and its workers. */
  signal(sig: 'SIGSTOP' | 'SIGCONT'): void;
  /** SIGTERM, and waits for the exit; the temporary directory is removed. */
  stop(): Promise<void>;
}

async function requireBinary(file: string, pkg: string): Promise<void> {
  await access(file).catch(() => {
    throw new Error(`${file} is missing: this test needs the Debian package ${pkg} (.ci/run installs it)`);
  });
}

/** Spawns the daemon and polls `ready` every 100 ms; fails with its output if it exits or takes over 3 minutes. */
async function startDaemon(
  name: string,
  command: string,
  args: string[],
  dir: string,
  port: number,
  ready: () => Promise<boolean>,
): Promise<ScannerDaemon> {
  const started = Date.now();
  // Its own process group, so that a test can stop (SIGSTOP) a daemon and all its workers at once.
  const child = spawn(command, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  const exited = once(child, 'exit');
  const daemon: ScannerDaemon = {
    port,
    dir,
    startupMs: 0,
    process: child,
    output: () => output,
    signal: (sig) => process.kill(-child.pid!, sig),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(-child.pid!, 'SIGCONT');
        child.kill('SIGTERM');
        const killer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 20_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  while (!(await ready().catch(() => false))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before answering:\n${output}`);
    }
    if (Date.now() - started > 180_000) {
      await daemon.stop();
      throw new Error(`${name} did not answer within 3 minutes:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  daemon.startupMs = Date.now() - started;
  return daemon;
}

/** Sends `request` on a fresh TCP connection and resolves with everything read until the peer closes (1 s cap). */
function ask(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    let reply = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(request));
    s.setTimeout(1000, () => s.destroy());
    s.on('data', (d) => (reply += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(reply));
  });
}

/** A temporary directory the given system user can use (the daemon drops to it). */
async function tempDirFor(prefix: string, user?: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(dir, 0o755);
  if (user && process.getuid?.() === 0) {
    const { uid, gid } = await systemUser(user);
    await chown(dir, uid, gid);
  }
  return dir;
}

async function chownTree(p: string, user: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { uid, gid } = await systemUser(user);
  await chown(p, uid, gid);
  for (const e of await readdir(p, { withFileTypes: true })) {
    if (e.isDirectory()) await chownTree(path.join(p, e.name), user);
    else await chown(path.join(p, e.name), uid, gid);
  }
}

/**
 * rspamd 3.4: Debian's rules (/etc/rspamd/common.conf and the modules it includes), only the
 * normal worker, on 127.0.0.1:PORT, DNS pointed at a closed local port (no network here: DNS
 * symbols fail fast), `localConf` written into the LOCAL_CONFDIR (local.d/<file>: content).
 */
export async function startRspamd(localConf: Record<string, string>): Promise<ScannerDaemon> {
  await requireBinary('/usr/bin/rspamd', 'rspamd');
  const dir = await tempDirFor('maild-rspamd-', '_rspamd');
  for (const sub of ['db', 'run', 'log', 'local/local.d']) await mkdir(path.join(dir, sub), { recursive: true });
  for (const [file, content] of Object.entries(localConf)) await writeFile(path.join(dir, 'local', file), content);
  const port = await freePort();
  await writeFile(
    path.join(dir, 'rspamd.conf'),
    `.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }
}
logging { type = "console"; level = "warning"; }
worker "normal" {
  bind_socket = "127.0.0.1:${port}";
  count = 1;
  .include "$CONFDIR/worker-normal.inc"
}
`,
  );
  if (process.getuid?.() === 0) await chownTree(dir, '_rspamd');
  const vars = { DBDIR: 'db', RUNDIR: 'run', LOGDIR: 'log', LOCAL_CONFDIR: 'local' };
  const args = ['-f', '-c', path.join(dir, 'rspamd.conf')];
  for (const [k, v] of Object.entries(vars)) args.push(`--var=${k}=${path.join(dir, v)}`);
  if (process.getuid?.() === 0) args.push('-u', '_rspamd', '-g', '_rspamd');
  return startDaemon('rspamd', '/usr/bin/rspamd', args, dir, port, () => httpPing(port));
}

function httpPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ping', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim() === 'pong'));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/**
 * SpamAssassin 4.0's spamd: Debian's rules (/usr/share/spamassassin, compiled by sa-compile), a
 * site configuration directory of its own (the .pre files that load the plugins, copied from
 * /etc/spamassassin, plus `localCf`), no per-user configuration (-x), no network tests (-L),
 * one child.
 */
export async function startSpamd(localCf: string): Promise<ScannerDaemon> {
  await requireBinary('/usr/sbin/spamd', 'spamd');
  const dir = await tempDirFor('maild-spamd-');
  const site = path.join(dir, 'site');
  await mkdir(site);
  for (const f of await readdir('/etc/spamassassin'))
    if (f.endsWith('.pre')) await copyFile(path.join('/etc/spamassassin', f), path.join(site, f));
  await writeFile(path.join(site, 'local.cf'), localCf);
  const port = await freePort();
  const args = [
    `--listen=127.0.0.1:${port}`,
    `--siteconfigpath=${site}`,
    '-x',
    '-L',
    '--max-children=1',
    '--min-children=1',
    '--syslog=stderr',
  ];
  if (process.getuid?.() === 0) args.push('-u', 'debian-spamd');
  return startDaemon('spamd', '/usr/sbin/spamd', args, dir, port, async () => /PONG/.test(await ask(port, 'PING SPAMC/1.5\r\n\r\n')));
}

/** The EICAR anti-virus test file (eicar.org): 68 bytes every scanner reports, harmless. */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
/** The name of the LOCAL signature below (ClamAV's own database would say Win.Test.EICAR_HDB-1). */
export const EICAR_SIGNATURE = 'Maild.Test.EICAR-Local';

/**
 * ClamAV 1.4's clamd in the foreground on 127.0.0.1:PORT and a unix socket, with a database
 * directory holding only a LOCAL signature written here: an extended (.ndb) body signature for
 * the EICAR test string, any file type, any offset. No freshclam, no downloads.
 */
export async function startClamd(extraConf = ''): Promise<ScannerDaemon & { socketPath: string }> {
  await requireBinary('/usr/sbin/clamd', 'clamav-daemon');
  const dir = await tempDirFor('maild-clamd-');
  await mkdir(path.join(dir, 'db'));
  await writeFile(path.join(dir, 'db', 'local-eicar.ndb'), `${EICAR_SIGNATURE}:0:*:${Buffer.from(EICAR, 'latin1').toString('hex')}\n`);
  const port = await freePort();
  const socketPath = path.join(dir, 'clamd.sock');
  const conf = path.join(dir, 'clamd.conf');
  await writeFile(
    conf,
    [
      'Foreground yes',
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `LocalSocket ${socketPath}`,
      `DatabaseDirectory ${path.join(dir, 'db')}`,
      `LogFile ${path.join(dir, 'clamd.log')}`,
      `TemporaryDirectory ${dir}`,
      extraConf,
      '',
    ].join('\n'),
  );
  const daemon = await startDaemon('clamd', '/usr/sbin/clamd', ['-c', conf], dir, port, async () =>
    /PONG/.test(await ask(port, 'zPING\0')),
  );
  return Object.assign(daemon, { socketPath });
}

/** A temporary directory for the test's messages (kept apart from the daemon's, which stop() removes). */
export async function messageDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'maild-scan-'));
}

/** Writes a message (LF line ends become CRLF, as received) and gives it an inbound envelope. */
export async function inboundMessage(dir: string, name: string, text: string, recipients = ['bob@example.net']): Promise<InboundMessage> {
  const file = path.join(dir, name);
  const data = Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8');
  await writeFile(file, data);
  return {
    file,
    size: data.length,
    envelope: {
      queueId: `Q${name.replace(/\W/g, '')}`,
      clientIp: '192.0.2.10',
      helo: 'mail.example.org',
      protocol: 'ESMTP',
      sender: 'alice@example.org',
      recipients,
      hostname: 'mx.example.net',
    },
  };
}

/** A plain message from alice@example.org with `body`. */
export function plainMessage(subject: string, body: string, to = 'bob@example.net'): string {
  return [
    'From: Alice <alice@example.org>',
    `To: ${to}`,
    `Subject: ${subject}`,
    'Date: Mon, 07 Dec 2026 10:00:00 +0000',
    `Message-ID: <${subject.replace(/\W/g, '')}.1@example.org>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    body,
    '',
  ].join('\n');
}
