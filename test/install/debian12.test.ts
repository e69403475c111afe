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
 * test/helpers/rootfs.ts makes the tree and caches the pristine one (a modified tree is never reused).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  assertPortsFree,
  freshRootfs,
  listDir,
  passwdEntry,
  processesServing,
  processTree,
  removeRootfs,
  runChrooted,
  stopTree,
  uids,
} from '../helpers/rootfs.js';

const run = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIL_PORTS = [25, 110, 143, 465, 587, 993, 995];

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
  await assertPortsFree(MAIL_PORTS);
  const { stdout } = await run('bash', [path.join(REPO, 'scripts/release.sh'), '--no-build'], { cwd: REPO, maxBuffer: 64 << 20 });
  const tarball = stdout.trim().split('\n').pop()!;
  const rootfs = await freshRootfs();
  let mainPid: number | undefined;
  try {
    await copyFile(tarball, path.join(rootfs, 'root', path.basename(tarball)));
    await writeFile(path.join(rootfs, 'usr/local/sbin/systemctl'), SYSTEMCTL_SHIM);
    await chmod(path.join(rootfs, 'usr/local/sbin/systemctl'), 0o755);

    const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
    const blocks = checklistBlocks(readme);
    assert.ok(blocks.length >= 5, `the checklist has its steps (found ${blocks.length} sh blocks)`);
    await writeFile(path.join(rootfs, 'root/checklist.sh'), blocks.join('\n'));

    const result = await runChrooted(rootfs, ['/bin/bash', '-e', '-o', 'pipefail', '-x', 'checklist.sh'], {
      cwd: '/root',
      env: { HOME: '/root', DEBIAN_FRONTEND: 'noninteractive' },
    });
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
    await removeRootfs(rootfs);
  }
});
