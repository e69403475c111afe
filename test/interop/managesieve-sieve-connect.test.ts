/**
 * Real ManageSieve clients against the ManageSieve listener: Debian's sieve-connect (STARTTLS,
 * SASL PLAIN, certificate check off for the test's self-signed certificate) uploads, lists,
 * activates, downloads, deactivates and deletes a script; a client on Python's standard library
 * does the same by hand. After each upload and activation the files must be exactly
 * Pigeonhole's layout: HOME/sieve/NAME.sieve and the symlink HOME/.dovecot.sieve; and
 * Pigeonhole itself (doveadm sieve, package dovecot-sieve) must list and read what maild stored,
 * while maild lists and serves what doveadm stored and activated. CI installs sieve-connect and
 * dovecot-sieve (.ci/run); without them the tests fail and say so.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, lstat, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chownForDovecot, requireDoveadm, writeDovecotConfig } from '../helpers/dovecot.js';
import { manageSieveLoggedIn } from '../helpers/managesieve-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** Runs a program to its end (asynchronously: the server runs in this process); the password goes on stdin. */
function run(cmd: string, args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // A program that exits without reading its input must not fail the test with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** The script files and the active link of a user's home, as Pigeonhole lays them out. */
async function layout(home: string): Promise<{ scripts: string[]; active: string | undefined }> {
  const scripts = (await readdir(path.join(home, 'sieve'))).filter((f) => f !== 'tmp').sort();
  const link = path.join(home, '.dovecot.sieve');
  const st = await lstat(link).catch(() => undefined);
  if (st) assert.ok(st.isSymbolicLink(), '.dovecot.sieve is a symlink');
  return { scripts, active: st ? await readlink(link) : undefined };
}

describe('ManageSieve interop', () => {
  let srv: TestServer;
  let dir: string;
  before(async () => {
    srv = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-sieve-connect-'));
  });
  after(async () => {
    await srv.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('sieve-connect uploads, lists, activates, downloads, deactivates and deletes a script', async () => {
    const which = await run('sh', ['-c', 'command -v sieve-connect']);
    assert.equal(which.code, 0, 'sieve-connect is not installed (apt-get install sieve-connect)');
    const common = ['--server', '127.0.0.1', '--port', String(srv.managesievePort), '--user', 'alice@example.test'];
    const connect = (...args: string[]) => run('sieve-connect', [...common, '--passwordfd', '0', '--notlsverify', ...args], 'alice-pw\n');
    const script = 'require ["fileinto"];\nif header :contains "subject" "[list]" {\n  fileinto "Lists";\n}\n';
    const local = path.join(dir, 'lists.sieve');
    await writeFile(local, script);
    const home = path.join(srv.mailRoot, 'example.test/alice');

    const upload = await connect('--localsieve', local, '--remotesieve', 'lists', '--upload');
    assert.equal(upload.code, 0, upload.stderr);
    assert.deepEqual(await layout(home), { scripts: ['lists.sieve'], active: undefined });
    assert.equal(await readFile(path.join(home, 'sieve/lists.sieve'), 'utf8'), script);
    assert.equal((await connect('--list')).stdout, '"lists"\n');

    const activate = await connect('--remotesieve', 'lists', '--activate');
    assert.equal(activate.code, 0, activate.stderr);
    assert.deepEqual(await layout(home), { scripts: ['lists.sieve'], active: 'sieve/lists.sieve' });
    assert.equal((await connect('--list')).stdout, '"lists" ACTIVE\n');

    const downloaded = path.join(dir, 'downloaded.sieve');
    const download = await connect('--remotesieve', 'lists', '--localsieve', downloaded, '--download');
    assert.equal(download.code, 0, download.stderr);
    assert.equal(await readFile(downloaded, 'utf8'), script);

    const refused = await connect('--remotesieve', 'lists', '--delete');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /NO \(ACTIVE\)/);

    const deactivate = await connect('--deactivate');
    assert.equal(deactivate.code, 0, deactivate.stderr);
    assert.deepEqual(await layout(home), { scripts: ['lists.sieve'], active: undefined });
    const del = await connect('--remotesieve', 'lists', '--delete');
    assert.equal(del.code, 0, del.stderr);
    assert.deepEqual(await layout(home), { scripts: [], active: undefined });
    assert.equal((await connect('--list')).stdout, '');
  });

  it("a client on Python's socket and ssl modules stores and activates a script over STARTTLS", async () => {
    const script = 'require "vacation";\r\nvacation :days 3 "Away until Monday.";\r\n';
    const local = path.join(dir, 'vacation.sieve');
    await writeFile(local, script);
    const helper = path.join(import.meta.dirname, 'scripts/managesieve_session.py');
    const r = await run('python3', [helper, String(srv.managesievePort), 'bob@example.test', 'bob-pw', 'vacation', local]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal((out.greeting as Record<string, string>).SASL, '');
    assert.equal((out.greeting as Record<string, string>).STARTTLS, '');
    assert.equal((out.tls_caps as Record<string, string>).SASL, 'PLAIN LOGIN');
    for (const step of ['starttls', 'auth', 'put', 'setactive', 'list_status', 'get_status', 'logout']) {
      assert.match(out[step] as string, /^OK\b/, step);
    }
    assert.deepEqual(out.list, ['"vacation" ACTIVE']);
    assert.equal(out.get, script);
    assert.deepEqual(await layout(path.join(srv.mailRoot, 'example.test/bob')), {
      scripts: ['vacation.sieve'],
      active: 'sieve/vacation.sieve',
    });
  });

  it("Pigeonhole's doveadm sieve reads the scripts maild stored, and maild those doveadm stored", async () => {
    const doveadm = requireDoveadm();
    const home = path.join(srv.mailRoot, 'example.test/carol');
    const c = await manageSieveLoggedIn(srv.managesievePort, 'carol@example.test', 'carol-pw');
    const script = 'require "fileinto";\r\nfileinto "Archive";\r\n';
    assert.equal((await c.command(Buffer.from(`PUTSCRIPT "archive" {${script.length}+}\r\n${script}\r\n`))).status, 'OK');
    assert.equal((await c.command('PUTSCRIPT "spare" "keep;"')).status, 'OK');
    assert.equal((await c.command('SETACTIVE "archive"')).status, 'OK');

    const work = await mkdtemp(path.join(dir, 'dovecot-'));
    // Dovecot's user (nobody, when the tests run as root) must reach the home.
    for (const d of [work, dir, srv.dir, srv.mailRoot, path.dirname(home)]) await chmod(d, 0o755);
    const conf = await writeDovecotConfig(work, home, [
      'plugin {',
      // Absolute paths: doveadm without -u takes ~ from $HOME, which is not the user's home here.
      `  sieve = file:${home}/sieve;active=${home}/.dovecot.sieve`,
      '}',
    ]);
    const env = { ...process.env, USER: 'fixture', HOME: work };
    const dove = async (args: string[], input = '') => {
      await chownForDovecot(home);
      const child = spawn(doveadm, ['-c', conf, ...args], { env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      return { code, stdout, stderr };
    };
    const list = await dove(['-f', 'json', 'sieve', 'list']);
    assert.equal(list.code, 0, list.stderr);
    const listed = (JSON.parse(list.stdout) as Array<{ script: string }>).sort((a, b) => a.script.localeCompare(b.script));
    assert.deepEqual(listed, [
      { script: 'archive', active: 'ACTIVE' },
      { script: 'spare', active: '' },
    ]);
    const got = await dove(['-f', 'flow', 'sieve', 'get', 'archive']);
    assert.equal(got.code, 0, got.stderr);
    assert.ok(got.stdout.includes(script), got.stdout);

    // doveadm stores and activates a script of its own; maild sees it active and serves it.
    const put = await dove(['sieve', 'put', '-a', 'from-dovecot'], 'discard;\n');
    assert.deepEqual(await layout(home), {
      scripts: ['archive.sieve', 'from-dovecot.sieve', 'spare.sieve'],
      active: 'sieve/from-dovecot.sieve',
    });
    assert.equal(await readFile(path.join(home, 'sieve/from-dovecot.sieve'), 'utf8'), 'discard;\n', put.stderr);
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, ['"archive"', '"from-dovecot" ACTIVE', '"spare"']);
    assert.equal((await c.command('GETSCRIPT "from-dovecot"')).lines[0], '{9}\r\ndiscard;\n');
    c.close();
  });
});
