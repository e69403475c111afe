/**
 * What the daemon and the CLI read (--config, $MAILD_CONFIG, /etc/maild/maild.yaml) and what
 * `check-config` opens before it says OK: the account, the directories it writes, the directory
 * file, the listeners' ports. Run as processes of the compiled CLI, as an operator runs them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { compiledEntry, ROOT } from '../helpers/daemon.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function maild(args: string[], env: NodeJS.ProcessEnv = {}, stdin = ''): Promise<Result> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [compiledEntry('src/cli/index.ts'), ...args], {
      cwd: os.tmpdir(),
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, MAILD_CONFIG: undefined, ...env },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.stdin.end(stdin);
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('configuration lookup', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-lookup-'));
    for (const name of ['a', 'b']) {
      await mkdir(path.join(dir, name));
      await writeFile(
        path.join(dir, name, 'maild.yaml'),
        `user: root\nlisteners: [{protocol: smtp, port: 0}]\nmail: {root: mail}\ndirectory: {file: {path: directory.yaml}}\n`,
      );
    }
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('$MAILD_CONFIG is used without --config, and a write command names the file it changes', async () => {
    const r = await maild(['domain', 'add', 'env.example'], { MAILD_CONFIG: path.join(dir, 'a/maild.yaml') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^maild: using ${path.join(dir, 'a/maild.yaml').replace(/[.]/g, '\\.')}$`, 'm'));
    assert.match(await readFile(path.join(dir, 'a/directory.yaml'), 'utf8'), /env\.example/);
    // Reading commands stay quiet about it (their output goes to scripts).
    const list = await maild(['domain', 'list'], { MAILD_CONFIG: path.join(dir, 'a/maild.yaml') });
    assert.equal(list.stdout.trim(), 'env.example');
    assert.doesNotMatch(list.stderr, /using/);
  });

  it('--config wins over $MAILD_CONFIG', async () => {
    const r = await maild(['--config', path.join(dir, 'b/maild.yaml'), 'domain', 'add', 'flag.example'], {
      MAILD_CONFIG: path.join(dir, 'a/maild.yaml'),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(await readFile(path.join(dir, 'b/directory.yaml'), 'utf8'), /flag\.example/);
    assert.doesNotMatch(await readFile(path.join(dir, 'a/directory.yaml'), 'utf8'), /flag\.example/);
  });

  it("without either, /etc/maild/maild.yaml, never the install directory's quick start", async (t) => {
    if (existsSync('/etc/maild/maild.yaml')) return t.skip('this machine has a real /etc/maild/maild.yaml');
    const before = await readFile(path.join(ROOT, 'config/quickstart.yaml'), 'utf8');
    const r = await maild(['domain', 'add', 'lost.example']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\/etc\/maild\/maild\.yaml: cannot read: ENOENT/);
    assert.match(r.stderr, /the configuration is --config PATH, else \$MAILD_CONFIG, else \/etc\/maild\/maild\.yaml/);
    assert.equal(await readFile(path.join(ROOT, 'config/quickstart.yaml'), 'utf8'), before);
    // The daemon looks in the same place.
    const serve = await maild(['serve']);
    assert.equal(serve.code, 1);
    assert.match(serve.stderr, /\/etc\/maild\/maild\.yaml: cannot read: ENOENT/);
  });

  it('npm run maild in the repository uses the quick start', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    for (const script of ['start', 'maild'])
      assert.match(pkg.scripts[script]!, /^MAILD_CONFIG=\$\{MAILD_CONFIG:-config\/quickstart\.yaml\} node /);
  });
});

describe('check-config opens what the start opens', () => {
  let dir: string;
  const config = () => path.join(dir, 'maild.yaml');
  const write = (extra: string, listeners = '[{name: mx, protocol: smtp, address: 127.0.0.1, port: 0}]') =>
    writeFile(config(), `hostname: check.example\nlisteners: ${listeners}\ndirectory: {file: {path: directory.yaml}}\n${extra}`);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-check-'));
    await chmod(dir, 0o755);
    await writeFile(path.join(dir, 'directory.yaml'), 'domains: []\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a configuration that can start is OK', async () => {
    await write(`user: root\ndata_dir: ${dir}/data\nmail: {root: ${dir}/mail}\n`);
    const r = await maild(['--config', config(), 'check-config']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /configuration OK/);
  });

  it(
    'started as root without user: it would refuse, so check-config does',
    { skip: process.getuid?.() !== 0 && 'needs root' },
    async () => {
      await write(`data_dir: ${dir}/data\nmail: {root: ${dir}/mail}\n`);
      const r = await maild(['--config', config(), 'check-config']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /config error: user: the start as root refuses to run without it/);
      assert.doesNotMatch(r.stderr, /configuration OK/);
    },
  );

  it('a mail root the user cannot write, and an unknown user, are named', { skip: process.getuid?.() !== 0 && 'needs root' }, async () => {
    await mkdir(path.join(dir, 'rootonly'), { mode: 0o700 });
    await write(`user: nobody\ndata_dir: ${dir}/nobody-data\nmail: {root: ${dir}/rootonly/mail}\n`);
    const r = await maild(['--config', config(), 'check-config']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`config error: mail\\.root: ${dir}/rootonly does not let nobody reach ${dir}/rootonly/mail`));
    // The missing data_dir is fine: the start creates it for the user.
    assert.doesNotMatch(r.stderr, /data_dir/);

    await write(`user: maild-no-such-user\ndata_dir: ${dir}/data\nmail: {root: ${dir}/mail}\n`);
    const unknown = await maild(['--config', config(), 'check-config']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /config error: user: no such user maild-no-such-user/);
  });

  it('a missing directory file without an initial one is named', async () => {
    await writeFile(
      config(),
      `hostname: check.example\nuser: root\nlisteners: [{protocol: smtp, address: 127.0.0.1, port: 0}]\ndata_dir: ${dir}/data\nmail: {root: ${dir}/mail}\ndirectory: {file: {path: missing.yaml}}\n`,
    );
    const r = await maild(['--config', config(), 'check-config']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config error: directory\.file\.path: .*missing\.yaml does not exist/);
  });

  it('a port another program holds is named; a free one passes', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      await write(
        `user: root\ndata_dir: ${dir}/data\nmail: {root: ${dir}/mail}\n`,
        `[{name: mx, protocol: smtp, address: 127.0.0.1, port: ${port}}]`,
      );
      const r = await maild(['--config', config(), 'check-config']);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(`config error: listeners\\[0\\] \\(mx\\): 127\\.0\\.0\\.1:${port}: already in use by another program`),
      );
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
    const free = await maild(['--config', config(), 'check-config']);
    assert.equal(free.code, 0, free.stderr);
  });

  it('an address this host does not have is named', async () => {
    await write(
      `user: root\ndata_dir: ${dir}/data\nmail: {root: ${dir}/mail}\n`,
      '[{name: mx, protocol: smtp, address: 192.0.2.1, port: 2525}]',
    );
    const r = await maild(['--config', config(), 'check-config']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config error: listeners\[0\] \(mx\): 192\.0\.2\.1:2525: no such address on this host/);
  });
});
