/**
 * A clean Debian 12 root filesystem for the install tests: debootstrap (minbase, plus systemd and
 * procps as a Debian 12 server has them) from this machine's mirror, cached as a tarball under
 * /var/cache/maild-test keyed by date, mirror and package list. Each test unpacks a fresh copy; a
 * modified tree is never reused. Commands run chrooted into it with proc and dev mounted in a
 * private mount namespace, which disappears with its last process (nothing to unmount here).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CACHE_DIR = '/var/cache/maild-test';
const SUITE = 'bookworm';
const INCLUDE = ['systemd', 'procps'];
const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

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
  throw new Error('no Debian bookworm mirror in /etc/apt/sources.list or /etc/apt/sources.list.d: debootstrap needs one');
}

/** A fresh copy of the pristine Debian 12 tree in a new directory, with the host's resolv.conf. */
export async function freshRootfs(): Promise<string> {
  const mirror = debianMirror();
  const key = createHash('sha256')
    .update(JSON.stringify([new Date().toISOString().slice(0, 10), SUITE, mirror, INCLUDE]))
    .digest('hex')
    .slice(0, 16);
  const cached = path.join(CACHE_DIR, `debian12-minbase-${key}.tar`);
  const rootfs = await mkdtemp(path.join(os.tmpdir(), 'maild-debian12-'));
  if (!existsSync(cached)) {
    await run('debootstrap', ['--variant=minbase', `--include=${INCLUDE.join(',')}`, SUITE, rootfs, mirror], { maxBuffer: 64 << 20 });
    await mkdir(CACHE_DIR, { recursive: true });
    // Yesterday's trees go; two tests making today's at once each write a whole one aside.
    for (const old of await readdir(CACHE_DIR))
      if (old.startsWith('debian12-minbase-') && !old.includes(key)) await rm(path.join(CACHE_DIR, old), { force: true });
    await run('tar', ['--numeric-owner', '-cf', `${cached}.${process.pid}`, '-C', rootfs, '.']);
    await rename(`${cached}.${process.pid}`, cached);
  } else {
    await run('tar', ['--numeric-owner', '-xpf', cached, '-C', rootfs]);
  }
  await chmod(rootfs, 0o755); // a root directory (mkdtemp makes it 0700: no user but root could enter)
  await run('cp', ['/etc/resolv.conf', path.join(rootfs, 'etc/resolv.conf')]);
  return rootfs;
}

/** Removes a tree made by freshRootfs, never through a mount that is still there. */
export async function removeRootfs(rootfs: string): Promise<void> {
  if (!readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${rootfs}/`)) await rm(rootfs, { recursive: true, force: true });
}

export interface ChrootOptions {
  /** Numeric "uid:gid" to run as (chroot --userspec); root when unset. */
  user?: string;
  /** The whole environment (as `env -i`); PATH defaults to root's. */
  env?: Record<string, string>;
  cwd?: string;
}

/** Starts argv chrooted into rootfs (proc and dev mounted in a private mount namespace); its PID becomes argv's. */
export function spawnChrooted(rootfs: string, argv: string[], options: ChrootOptions = {}): ChildProcess {
  const env = { PATH: ROOT_PATH, LANG: 'C.UTF-8', ...options.env };
  const inner = `set -e
mount -t proc proc "$1/proc"
mount --rbind /dev "$1/dev"
root="$1"; shift
exec chroot $USERSPEC "$root" "$@"`;
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const command = ['/usr/bin/env', '-i', ...envArgs, '/bin/sh', '-c', 'cd "$0" && exec "$@"', options.cwd ?? '/', ...argv];
  return spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', inner, 'sh', rootfs, ...command], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? ROOT_PATH, USERSPEC: options.user ? `--userspec=${options.user}` : '' },
  });
}

/** Runs argv chrooted into rootfs to its end: the exit code and stdout and stderr interleaved. */
export function runChrooted(rootfs: string, argv: string[], options: ChrootOptions = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnChrooted(rootfs, argv, options);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** Fails unless every port is free on this machine (the chroot shares its network). */
export async function assertPortsFree(ports: number[]): Promise<void> {
  for (const port of ports) {
    await new Promise<void>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (err) => reject(new Error(`port ${port} is taken on this machine (${String(err)}): the test binds it`)));
      server.listen(port, '0.0.0.0', () => server.close(() => resolve()));
    });
  }
}

/** The PIDs of a process and all its descendants. */
export function processTree(root: number): number[] {
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

/** Ends a process tree: SIGTERM, then SIGKILL for whatever is left after 10 seconds. */
export async function stopTree(mainPid: number): Promise<void> {
  const tree = processTree(mainPid);
  for (const pid of tree) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && tree.some((pid) => existsSync(`/proc/${pid}`)); i++) await new Promise((r) => setTimeout(r, 100));
  for (const pid of tree) if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
}

/** The real, effective, saved and filesystem uids of a process. */
export function uids(pid: number): number[] {
  const line = /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
  return line.trim().split(/\s+/).map(Number);
}

/** Connects to 127.0.0.1:port, waits for the greeting, and returns which of candidates hold the server side of that connection. */
export async function processesServing(port: number, candidates: number[]): Promise<number[]> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('data', () => resolve()); // the greeting: the connection was accepted
  });
  try {
    // /proc/net/tcp: the server side's local address is :port and its remote one the client's port.
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
    const inodes = new Set<string>();
    for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex(port)}`) && f[2]?.endsWith(`:${hex(socket.localPort!)}`)) inodes.add(`socket:[${f[9]}]`);
    }
    assert.ok(inodes.size > 0, 'the server side of the test connection is in /proc/net/tcp');
    const holds = (pid: number, fd: string) => {
      try {
        return inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        return false;
      }
    };
    return candidates.filter((pid) => listDir(`/proc/${pid}/fd`).some((fd) => holds(pid, fd)));
  } finally {
    socket.destroy();
  }
}

/** A user's uid and gid in the tree's /etc/passwd. */
export function passwdEntry(rootfs: string, user: string): { uid: number; gid: number } {
  const line = readFileSync(path.join(rootfs, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  assert.ok(line, `${user} exists in the tree's /etc/passwd`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
