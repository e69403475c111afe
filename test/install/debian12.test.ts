/**
 * The README's "Production install on Debian 12" checklist, run literally on a clean Debian 12:
 * a root filesystem made by debootstrap (minbase, plus systemd and procps as a Debian 12 server
 * has them), the release tarball (`npm run release`) copied in, and every sh block between the
 * README's `production-checklist` markers run in order, in one bash as root, chrooted into it.
 *
 * The one substitution: systemd cannot run in a chroot, so `systemctl` is a shim (written below into
 * /usr/local/sbin, first on root's PATH) that starts a unit's ExecStart as systemd would for this
 * unit: as root, in WorkingDirectory, with EnvironmentFile and RuntimeDirectory. The unit itself is
 * checked by `systemd-analyze verify` against the installed tree. The daemon uses the host's network,
 * so ports 25, 110, 143, 465, 587, 993 and 995 must be free here.
 *
 * The pristine root filesystem is cached as a tarball under /var/cache/maild-test, keyed by date,
 * mirror and package list; each run unpacks a fresh copy (a modified tree is never reused).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CACHE_DIR = '/var/cache/maild-test';
const SUITE = 'bookworm';
/** A Debian 12 server has these beyond minbase; systemd also gives `systemd-analyze verify` its units. */
const INCLUDE = ['systemd', 'procps'];
const MAIL_PORTS = [25, 110, 143, 465, 587, 993, 995];

/** The Debian mirror this machine's apt uses (one-line or deb822 sources), for debootstrap. */
function debianMirror(): string {
  const candidates = ['/etc/apt/sources.list', ...listDir('/etc/apt/sources.list.d').map((f) => `/etc/apt/sources.list.d/${f}`)];
  for (const file of candidates) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text);
    if (oneLine) return oneLine[1]!;
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/im.exec(stanza)?.[1];
      if (uri && /^Suites:.*\bbookworm\b(?!-)/im.test(stanza)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A fresh copy of the pristine Debian 12 tree in a new directory (debootstrapped once per day and package list). */
async function freshRootfs(): Promise<string> {
  const mirror = debianMirror();
  const key = createHash('sha256')
    .update(JSON.stringify([new Date().toISOString().slice(0, 10), SUITE, mirror, INCLUDE]))
    .digest('hex')
    .slice(0, 16);
  const cached = path.join(CACHE_DIR, `debian12-minbase-${key}.tar`);
  const rootfs = await mkdtemp(path.join(os.tmpdir(), 'maild-debian12-'));
  await chmod(rootfs, 0o755); // a root directory (mkdtemp makes it 0700: apt's _apt could not enter)
  if (!existsSync(cached)) {
    await run('debootstrap', ['--variant=minbase', `--include=${INCLUDE.join(',')}`, SUITE, rootfs, mirror], { maxBuffer: 64 << 20 });
    await mkdir(CACHE_DIR, { recursive: true });
    for (const old of await readdir(CACHE_DIR))
      if (old.startsWith('debian12-minbase-')) await rm(path.join(CACHE_DIR, old), { force: true });
    await run('tar', ['--numeric-owner', '-cf', `${cached}.tmp`, '-C', rootfs, '.']);
    await rename(`${cached}.tmp`, cached);
  } else {
    await run('tar', ['--numeric-owner', '-xpf', cached, '-C', rootfs]);
  }
  return rootfs;
}

/** The sh blocks between the README's production-checklist markers, unindented, in order. */
function checklistBlocks(readme: string): string[] {
  const start = readme.indexOf('<!-- production-checklist:');
  const end = readme.indexOf('<!-- production-checklist end -->');
  assert.ok(start >= 0 && end > start, 'README.md has the production-checklist markers');
  const blocks: string[] = [];
  for (const m of readme.slice(start, end).matchAll(/^( *)```sh\n([\s\S]*?)^\1```$/gm)) {
    const indent = m[1]!.length;
    blocks.push(m[2]!.replace(new RegExp(`^ {0,${indent}}`, 'gm'), ''));
  }
  return blocks;
}

/** The systemctl of the chroot: see the file comment. Only what the checklist and the test use. */
const SYSTEMCTL_SHIM = `#!/bin/bash
# Test shim (test/install/debian12.test.ts): systemd cannot run in a chroot. Starts a unit's
# ExecStart as systemd would for it: as root, in WorkingDirectory, with EnvironmentFile and
# RuntimeDirectory; the main PID goes to /run/UNIT.mainpid, its output to /var/log/UNIT.log.
set -euo pipefail
unit_key() { sed -n "s/^$2=//p" "/etc/systemd/system/$1.service" | tail -n 1; }
start_unit() {
  local name="\${1%.service}" pidfile="/run/\${1%.service}.mainpid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 0; fi
  local exec_start dir env_file runtime_dir runtime_mode
  exec_start="$(unit_key "$name" ExecStart)"; dir="$(unit_key "$name" WorkingDirectory)"
  env_file="$(unit_key "$name" EnvironmentFile)"; runtime_dir="$(unit_key "$name" RuntimeDirectory)"
  runtime_mode="$(unit_key "$name" RuntimeDirectoryMode)"
  [ -n "$exec_start" ] || { echo "systemctl: no ExecStart in $name.service" >&2; exit 1; }
  [ -z "$runtime_dir" ] || install -d -m "\${runtime_mode:-0755}" "/run/$runtime_dir"
  (
    cd "\${dir:-/}"
    if [ -n "$env_file" ] && [ -f "\${env_file#-}" ]; then set -a; . "\${env_file#-}"; set +a; fi
    exec setsid $exec_start </dev/null >>"/var/log/$name.log" 2>&1
  ) &
  echo $! >"$pidfile"
}
command="$1"; shift
case "$command" in
  daemon-reload) ;;
  enable)
    now=; units=()
    for arg in "$@"; do case "$arg" in --now) now=1 ;; -*) ;; *) units+=("\${arg%.service}") ;; esac; done
    for unit in "\${units[@]}"; do
      mkdir -p /etc/systemd/system/multi-user.target.wants
      ln -sf "/etc/systemd/system/$unit.service" /etc/systemd/system/multi-user.target.wants/
      [ -z "$now" ] || start_unit "$unit"
    done ;;
  start) start_unit "$1" ;;
  reload) kill -HUP "$(cat "/run/\${1%.service}.mainpid")" ;;
  is-active) if kill -0 "$(cat "/run/\${1%.service}.mainpid" 2>/dev/null || echo 0)" 2>/dev/null; then echo active; else echo inactive; exit 3; fi ;;
  *) echo "systemctl (test shim): $command is not supported" >&2; exit 1 ;;
esac
`;

async function assertPortsFree(): Promise<void> {
  for (const port of MAIL_PORTS) {
    await new Promise<void>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (err) => reject(new Error(`port ${port} is taken on this machine (${String(err)}): the checklist binds it`)));
      server.listen(port, '0.0.0.0', () => server.close(() => resolve()));
    });
  }
}

/** Runs a bash script as root chrooted into rootfs, with proc and dev mounted in a private mount namespace. */
function runChrooted(rootfs: string, script: string): Promise<{ code: number | null; output: string }> {
  const inner = `set -e
mount -t proc proc "$1/proc"
mount --rbind /dev "$1/dev"
exec chroot "$1" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive /bin/bash -c 'cd /root && exec /bin/bash -e -o pipefail -x "$0"' "$2"`;
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', inner, 'sh', rootfs, script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** The PIDs of a process and all its descendants. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of listDir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const tree: number[] = [];
  const walk = (pid: number) => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) walk(child);
  };
  if (existsSync(`/proc/${root}`)) walk(root);
  return tree;
}

/** The real, effective, saved and filesystem uids of a process. */
function uids(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+(.*)$/m)![1]!;
  return line.trim().split(/\s+/).map(Number);
}

/** Connects to the daemon's port 25 and returns the PIDs holding the server side of that connection. */
async function processesServing(port: number, candidates: number[]): Promise<number[]> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('data', () => resolve()); // the 220 greeting: the connection was accepted
  });
  try {
    const clientPort = socket.localPort!;
    // /proc/net/tcp: the server side's local address is :port and its remote one :clientPort.
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
    const inodes = new Set<string>();
    for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex(port)}`) && f[2]?.endsWith(`:${hex(clientPort)}`)) inodes.add(f[9]!);
    }
    assert.ok(inodes.size > 0, 'the server side of the test connection is in /proc/net/tcp');
    return candidates.filter((pid) =>
      listDir(`/proc/${pid}/fd`).some((fd) => {
        try {
          return [...inodes].some((inode) => readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`);
        } catch {
          return false;
        }
      }),
    );
  } finally {
    socket.destroy();
  }
}

/** Ends a process tree: SIGTERM, then SIGKILL for whatever is left once the main process exited. */
async function stopTree(mainPid: number): Promise<void> {
  const tree = processTree(mainPid);
  for (const pid of tree) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && tree.some((pid) => existsSync(`/proc/${pid}`)); i++) await new Promise((r) => setTimeout(r, 100));
  for (const pid of tree) if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
}

function passwdEntry(rootfs: string, user: string): { uid: number; gid: number } {
  const line = readFileSync(path.join(rootfs, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  assert.ok(line, `${user} exists in the installed system's /etc/passwd`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function findMessage(maildir: string, needle: string): Promise<string | undefined> {
  for (const sub of ['new', 'cur']) {
    for (const name of listDir(path.join(maildir, sub))) {
      const file = path.join(maildir, sub, name);
      if ((await readFile(file, 'utf8')).includes(needle)) return file;
    }
  }
  return undefined;
}

test('the README production checklist installs maild on a clean Debian 12 and mail flows', { timeout: 15 * 60_000 }, async () => {
  await assertPortsFree();
  const { stdout } = await run('bash', [path.join(REPO, 'scripts/release.sh'), '--no-build'], { cwd: REPO, maxBuffer: 64 << 20 });
  const tarball = stdout.trim().split('\n').pop()!;
  const rootfs = await freshRootfs();
  let mainPid: number | undefined;
  try {
    await copyFile(tarball, path.join(rootfs, 'root', path.basename(tarball)));
    await copyFile('/etc/resolv.conf', path.join(rootfs, 'etc/resolv.conf'));
    await writeFile(path.join(rootfs, 'usr/local/sbin/systemctl'), SYSTEMCTL_SHIM);
    await chmod(path.join(rootfs, 'usr/local/sbin/systemctl'), 0o755);

    const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
    const blocks = checklistBlocks(readme);
    assert.ok(blocks.length >= 5, `the checklist has its steps (found ${blocks.length} sh blocks)`);
    await writeFile(path.join(rootfs, 'root/checklist.sh'), blocks.join('\n'));

    const result = await runChrooted(rootfs, 'checklist.sh');
    const pidFile = path.join(rootfs, 'run/maild.mainpid');
    if (existsSync(pidFile)) mainPid = Number(readFileSync(pidFile, 'utf8'));
    const daemonLog = () => readFileSync(path.join(rootfs, 'var/log/maild.log'), 'utf8').slice(-4000);
    assert.equal(
      result.code,
      0,
      `the checklist ran to its end:\n${result.output.slice(-6000)}\n--- maild log:\n${existsSync(path.join(rootfs, 'var/log/maild.log')) ? daemonLog() : '(none)'}`,
    );
    assert.match(result.output, /Subject: maild works/, 'IMAP gave the message back');

    // The unit as systemd reads it, against the installed tree (ExecStart exists and is executable).
    const verify = await run('systemd-analyze', [`--root=${rootfs}`, 'verify', '/etc/systemd/system/maild.service']).catch(
      (err: { stderr?: string; message: string }) => ({ stdout: '', stderr: `FAILED ${err.stderr ?? err.message}` }),
    );
    assert.doesNotMatch(verify.stderr, /\S/, `systemd-analyze verify maild.service: ${verify.stderr}`);

    const vmail = passwdEntry(rootfs, 'vmail');
    const message = await findMessage(path.join(rootfs, 'var/mail/vhosts/example.com/postmaster'), 'Subject: maild works');
    assert.ok(message, `the message is in postmaster@example.com's Maildir under the mail root\n${daemonLog()}`);
    const owner = await stat(message);
    assert.deepEqual({ uid: owner.uid, gid: owner.gid }, vmail, 'the delivered message belongs to vmail');

    // Never serve a client as root: the process that accepted a connection on port 25 runs as vmail.
    assert.ok(mainPid && existsSync(`/proc/${mainPid}`), 'the daemon still runs');
    const serving = await processesServing(25, processTree(mainPid));
    assert.ok(serving.length > 0, 'a process of the unit holds the accepted connection');
    for (const pid of serving) assert.deepEqual(uids(pid), [vmail.uid, vmail.uid, vmail.uid, vmail.uid], `process ${pid} serves as vmail`);
  } finally {
    if (mainPid) await stopTree(mainPid);
    // The mounts lived in the chroot's own mount namespace, gone with its last process; never
    // delete through a mount that is still there.
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    if (!mounts.includes(` ${rootfs}/`)) await rm(rootfs, { recursive: true, force: true });
  }
});
