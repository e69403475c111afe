/**
 * Real milters from Debian for the milter client's interop tests, each in a temp directory with
 * its own configuration on an ephemeral port: rspamd's proxy worker in milter mode scanning by
 * itself (self_scan), and OpenDKIM signing or verifying with a generated key. Facts about
 * starting them are in NOTES (rspamd needs about 10 s to compile its regexps before it listens).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A port free right now on 127.0.0.1 (rspamd and OpenDKIM cannot report a port they picked). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Waits until something accepts connections on the port, or the process exits, or the deadline. */
export async function waitListening(port: number, proc: ChildProcess, output: () => string, deadlineMs: number): Promise<void> {
  const started = Date.now();
  let exited = false;
  proc.once('exit', () => (exited = true));
  for (;;) {
    if (exited) throw new Error(`daemon exited before listening:\n${output().slice(-3000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - started > deadlineMs)
      throw new Error(`daemon not listening on ${port} after ${deadlineMs} ms:\n${output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface MilterDaemon {
  address: string;
  /** rspamd's second worker, when asked for (quarantinePort). */
  extraAddress?: string;
  dir: string;
  output: () => string;
  stop(): Promise<void>;
}

function run(command: string, args: string[]): { proc: ChildProcess; output: () => string } {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out = (out + d).slice(-200_000)));
  proc.stderr!.on('data', (d) => (out = (out + d).slice(-200_000)));
  process.once('exit', () => proc.kill('SIGKILL'));
  return { proc, output: () => out };
}

async function stopProcess(proc: ChildProcess, dir: string): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await once(proc, 'exit');
    clearTimeout(timer);
  }
  await rm(dir, { recursive: true, force: true });
}

/** A user the daemon drops to (both refuse to run as root); the Debian package creates it. */
function userIds(name: string): { uid: number; gid: number } {
  const uid = Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error(`no user ${name}: is the Debian package installed?`);
  return { uid, gid };
}

/**
 * rspamd 3.4's proxy worker with `milter = yes` and `self_scan = yes`, no other workers, DNS
 * pointed at a closed local port (no network here; lookups fail fast), headers added through
 * milter_headers (`config` goes into the top-level configuration); optionally on a unix socket too.
 */
export async function startRspamd(
  opts: { config?: string; unixSocket?: string; localLua?: string; quarantinePort?: boolean } = {},
): Promise<MilterDaemon> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-rspamd-'));
  const port = await freePort();
  const quarantinePort = opts.quarantinePort ? await freePort() : undefined;
  for (const sub of ['db', 'run', 'log', 'local/local.d', 'local/override.d']) await mkdir(path.join(dir, sub), { recursive: true });
  const conf = [
    '.include "$CONFDIR/common.conf"',
    'options {',
    '  pidfile = "$RUNDIR/rspamd.pid";',
    '  .include "$CONFDIR/options.inc"',
    '  dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }',
    '  local_addrs = [];',
    '}',
    'logging { type = "console"; level = "notice"; }',
    'worker "rspamd_proxy" {',
    `  bind_socket = "127.0.0.1:${port}";`,
    ...(opts.unixSocket ? [`  bind_socket = "${opts.unixSocket} mode=0666";`] : []),
    '  milter = yes;',
    '  timeout = 60s;',
    '  count = 1;',
    '  self_scan = yes;',
    '  upstream "local" { default = yes; self_scan = yes; }',
    '  reject_message = "Spam message rejected";',
    '}',
    // A second proxy worker that asks for quarantine (SMFIR_QUARANTINE) where it would reject.
    ...(quarantinePort
      ? [
          'worker "rspamd_proxy" {',
          `  bind_socket = "127.0.0.1:${quarantinePort}";`,
          '  milter = yes; timeout = 60s; count = 1; self_scan = yes;',
          '  upstream "local" { default = yes; self_scan = yes; }',
          '  quarantine_on_reject = true;',
          '}',
        ]
      : []),
    opts.config ?? '',
  ].join('\n');
  // rules/rspamd.lua runs $LOCAL_CONFDIR/rspamd.local.lua: local Lua rules for the tests.
  if (opts.localLua) await writeFile(path.join(dir, 'local', 'rspamd.local.lua'), opts.localLua);
  await writeFile(path.join(dir, 'rspamd.conf'), conf);
  const { uid, gid } = userIds('_rspamd');
  for (const sub of ['', 'db', 'run', 'log']) await chown(path.join(dir, sub), uid, gid);
  const vars = [
    'LOCAL_CONFDIR=' + path.join(dir, 'local'),
    'DBDIR=' + path.join(dir, 'db'),
    'RUNDIR=' + path.join(dir, 'run'),
    'LOGDIR=' + path.join(dir, 'log'),
  ];
  const { proc, output } = run('/usr/bin/rspamd', [
    '-f',
    '-u',
    '_rspamd',
    '-g',
    '_rspamd',
    '-c',
    path.join(dir, 'rspamd.conf'),
    ...vars.flatMap((v) => ['--var', v]),
  ]);
  try {
    await waitListening(port, proc, output, 120_000);
    if (quarantinePort) await waitListening(quarantinePort, proc, output, 120_000);
  } catch (err) {
    await stopProcess(proc, dir);
    throw err;
  }
  return {
    address: `inet:127.0.0.1:${port}`,
    extraAddress: quarantinePort ? `inet:127.0.0.1:${quarantinePort}` : undefined,
    dir,
    output,
    stop: () => stopProcess(proc, dir),
  };
}

export interface DkimKey {
  domain: string;
  selector: string;
  privateKeyPem: string;
  /** The TXT record's value (v=DKIM1; k=rsa; p=...). */
  dnsTxt: string;
}

/** Generates an RSA key with Debian's opendkim-genkey. */
export async function generateDkimKey(dir: string, domain: string, selector: string): Promise<DkimKey> {
  const r = spawnSync('/usr/sbin/opendkim-genkey', ['-b', '1024', '-d', domain, '-s', selector, '-D', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`opendkim-genkey: ${r.stderr}`);
  const privateKeyPem = await readFile(path.join(dir, `${selector}.private`), 'utf8');
  const record = await readFile(path.join(dir, `${selector}.txt`), 'utf8');
  // The .txt file is a zone file line with the value split into quoted strings.
  const dnsTxt = [...record.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
  return { domain, selector, privateKeyPem, dnsTxt };
}

/**
 * OpenDKIM in one mode: 's' signs mail of key.domain from InternalHosts (127.0.0.1), 'v'
 * verifies, reading the public key from TestPublicKeys instead of DNS.
 */
export async function startOpendkim(mode: 's' | 'v', key: DkimKey): Promise<MilterDaemon> {
  // OpenDKIM refuses a configuration file below a directory others may write to (/tmp): /run is not.
  const dir = await mkdtemp(path.join('/run', 'maild-opendkim-'));
  const port = await freePort();
  const { uid, gid } = userIds('opendkim');
  const keyFile = path.join(dir, 'key.private');
  await writeFile(keyFile, key.privateKeyPem);
  await chmod(keyFile, 0o600);
  await chown(keyFile, uid, gid);
  await writeFile(path.join(dir, 'test-keys'), `${key.selector}._domainkey.${key.domain} ${key.dnsTxt}\n`);
  const conf = [
    `Socket inet:${port}@127.0.0.1`,
    `Mode ${mode}`,
    `Domain ${key.domain}`,
    `Selector ${key.selector}`,
    `KeyFile ${keyFile}`,
    // The signer signs for the loopback client; the verifier treats no client as internal.
    `InternalHosts ${mode === 's' ? '127.0.0.1' : '192.0.2.255'}`,
    'Canonicalization relaxed/simple',
    `TestPublicKeys ${path.join(dir, 'test-keys')}`,
    'AuthservID mx.example.test',
    'Background no',
    'Syslog no',
    `PidFile ${path.join(dir, 'opendkim.pid')}`,
    'UserID opendkim:opendkim',
    'LogWhy yes',
  ].join('\n');
  await writeFile(path.join(dir, 'opendkim.conf'), conf + '\n');
  await chown(dir, uid, gid);
  const { proc, output } = run('/usr/sbin/opendkim', ['-f', '-x', path.join(dir, 'opendkim.conf')]);
  try {
    await waitListening(port, proc, output, 30_000);
  } catch (err) {
    await stopProcess(proc, dir);
    throw err;
  }
  return { address: `inet:127.0.0.1:${port}`, dir, output, stop: () => stopProcess(proc, dir) };
}
