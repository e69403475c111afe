/**
 * maild's ManageSieve against Pigeonhole's own (Dovecot's managesieve, package
 * dovecot-managesieved, run preauthenticated through pipes on a throwaway configuration with
 * the same quotas): the same commands get the same statuses and response codes, the same
 * listings and script bodies, and leave the same files (HOME/sieve/NAME.sieve, the
 * .dovecot.sieve symlink). Only the human-readable texts differ. CI installs
 * dovecot-managesieved (.ci/run); without it the test fails and says so.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chownForDovecot, writeDovecotConfig } from '../helpers/dovecot.js';
import { manageSieveLoggedIn, parseResponses, type SieveResponse } from '../helpers/managesieve-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const DOVECOT_MANAGESIEVE = '/usr/lib/dovecot/managesieve';
const QUOTA = { max_scripts: 3, max_storage: 150, max_script_size: 100 };

const literal = (name: string, body: string) => `PUTSCRIPT "${name}" {${body.length}+}\r\n${body}\r\n`;
const hashes = (n: number) => `${'#'.repeat(n - 2)}\r\n`;

/** One command per entry; every quota and refusal code on the way. */
const COMMANDS = [
  literal('a', 'keep;\r\n'),
  'HAVESPACE "b" 101\r\n',
  'HAVESPACE "b" 50\r\n',
  'SETACTIVE "a"\r\n',
  'DELETESCRIPT "a"\r\n',
  'DELETESCRIPT "none"\r\n',
  'PUTSCRIPT "b" "keep;"\r\n',
  'RENAMESCRIPT "a" "b"\r\n',
  'RENAMESCRIPT "x" "y"\r\n',
  'RENAMESCRIPT "a" "c"\r\n',
  'LISTSCRIPTS\r\n',
  literal('d', hashes(90)),
  'PUTSCRIPT "e" "keep;"\r\n',
  literal('b', hashes(60)),
  literal('b', hashes(101)),
  'GETSCRIPT "c"\r\n',
  'GETSCRIPT "zz"\r\n',
  'CHECKSCRIPT "keep;"\r\n',
  'NOOP "tag"\r\n',
  'PUTSCRIPT "a/b" "keep;"\r\n',
  'SETACTIVE "d"\r\n',
  'LISTSCRIPTS\r\n',
  'SETACTIVE ""\r\n',
  'SETACTIVE ""\r\n',
  'SETACTIVE "c"\r\n',
  'LOGOUT\r\n',
];

/** What must be alike: status, code, the lines before it (listings in any order: Pigeonhole's is the directory's). */
const comparable = (r: SieveResponse) => ({ status: r.status, code: r.code, lines: [...r.lines].sort() });

/** The files a conversation left: scripts with their contents, and the active link. */
async function files(home: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await readdir(path.join(home, 'sieve'))).sort()) {
    if (f !== 'tmp') out[f] = await readFile(path.join(home, 'sieve', f), 'utf8');
  }
  const link = path.join(home, '.dovecot.sieve');
  if ((await lstat(link).catch(() => undefined))?.isSymbolicLink()) out['.dovecot.sieve ->'] = await readlink(link);
  return out;
}

describe('ManageSieve against Pigeonhole', () => {
  let srv: TestServer;
  let dir: string;
  before(async () => {
    srv = await startTestServer({ config: { managesieve: QUOTA } });
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-managesieve-dovecot-'));
  });
  after(async () => {
    await srv.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers every command with the status and code Pigeonhole gives, and leaves the same files', async () => {
    await access(DOVECOT_MANAGESIEVE).catch(() => {
      throw new Error(`${DOVECOT_MANAGESIEVE} is missing: apt-get install dovecot-managesieved (.ci/run installs it)`);
    });
    // Pigeonhole, preauthenticated, on a home of its own (handed to nobody as root: Dovecot refuses root).
    const home = path.join(dir, 'home');
    await mkdir(home);
    for (const d of [dir, home]) await chmod(d, 0o755);
    await chownForDovecot(home);
    const conf = await writeDovecotConfig(dir, home, [
      'plugin {',
      `  sieve = file:${home}/sieve;active=${home}/.dovecot.sieve`,
      `  sieve_quota_max_scripts = ${QUOTA.max_scripts}`,
      `  sieve_quota_max_storage = ${QUOTA.max_storage}`,
      `  sieve_max_script_size = ${QUOTA.max_script_size}`,
      '}',
    ]);
    const child = spawn('sh', ['-c', `cat | ${DOVECOT_MANAGESIEVE} -c "$0" | cat`, conf], {
      env: { ...process.env, USER: 'fixture', HOME: dir },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.end(COMMANDS.join(''));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    const theirs = parseResponses(stdout);

    const c = await manageSieveLoggedIn(srv.managesievePort, 'alice@example.test', 'alice-pw');
    c.send(COMMANDS.join(''));
    const ours: SieveResponse[] = [];
    for (let i = 0; i < COMMANDS.length; i++) ours.push(await c.response());
    await c.closedByServer();

    assert.equal(theirs.length, COMMANDS.length, stdout);
    for (let i = 0; i < COMMANDS.length; i++) {
      assert.deepEqual(
        comparable(ours[i]!),
        comparable(theirs[i]!),
        `${COMMANDS[i]!.split('\r\n')[0]}: maild ${ours[i]!.raw} Pigeonhole ${theirs[i]!.raw}`,
      );
    }
    assert.deepEqual(await files(path.join(srv.mailRoot, 'example.test/alice')), await files(home));
  });
});
