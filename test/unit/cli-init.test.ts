/**
 * `maild init`: a first configuration that validates, a user whose random password (printed once)
 * logs in, listeners on loopback unless an address is given, and never a file overwritten.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { PasswordService } from '../../src/directory/passwords/index.js';
import { silentLogger } from '../../src/log.js';
import { startServer } from '../../src/server.js';
import { runCliCaptured as maild } from '../helpers/cli.js';
import { ImapTestClient } from '../helpers/imap-client.js';

describe('maild init', () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-init-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A fresh place for one init: config path and the options that keep it inside the temp dir. */
  const place = () => {
    const base = path.join(dir, String(n++));
    return {
      base,
      config: path.join(base, 'etc', 'maild.yaml'),
      directory: path.join(base, 'state', 'directory.yaml'),
      args: (...extra: string[]) => [
        'init',
        '--config',
        path.join(base, 'etc', 'maild.yaml'),
        '--data-dir',
        path.join(base, 'state'),
        '--mail-root',
        path.join(base, 'mail'),
        ...extra,
      ],
    };
  };
  const printedPassword = (stdout: string) => {
    const m = /^password: +(\S+)$/m.exec(stdout);
    assert.ok(m, `no password line in ${stdout}`);
    return m[1]!;
  };

  it('writes a configuration that loads, files 0640/0600, and an ARGON2ID hash of the printed password', async () => {
    const p = place();
    const r = await maild(p.args('--hostname', 'mail.example.com', '--domain', 'Example.com'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^first user: postmaster@example\.com$/m);
    const password = printedPassword(r.stdout);
    assert.ok(password.length >= 16 && /^[A-Za-z0-9_-]+$/.test(password), password);

    const cfg = loadConfig(p.config, {});
    assert.equal(cfg.hostname, 'mail.example.com');
    // Started as root it serves as vmail, never as root.
    assert.equal(cfg.user, 'vmail');
    assert.equal(cfg.directory.backend, 'file');
    assert.equal(cfg.directory.file.path, p.directory);
    assert.equal(cfg.auth.cleartext, 'never');
    assert.equal((await stat(p.config)).mode & 0o777, 0o640);
    assert.equal((await stat(p.directory)).mode & 0o777, 0o600);

    const directory = parse(await readFile(p.directory, 'utf8')) as {
      domains: string[];
      users: Record<string, { password: string }>;
      aliases: Record<string, string>;
    };
    assert.deepEqual(directory.domains, ['example.com']);
    const hash = directory.users['postmaster@example.com']!.password;
    assert.match(hash, /^\{ARGON2ID\}\$argon2id\$/);
    assert.ok(!(await readFile(p.config, 'utf8')).includes(password) && !hash.includes(password));
    assert.equal(directory.aliases['abuse@example.com'], 'postmaster@example.com');
    const passwords = new PasswordService({ threads: 1, defaultScheme: 'CRYPT', newScheme: 'ARGON2ID' });
    try {
      assert.equal((await passwords.verify(hash, password)).ok, true);
    } finally {
      await passwords.close();
    }
  });

  it('makes a new password each time', async () => {
    const a = await maild(place().args('--hostname', 'mail.example.com', '--domain', 'example.com'));
    const b = await maild(place().args('--hostname', 'mail.example.com', '--domain', 'example.com'));
    assert.notEqual(printedPassword(a.stdout), printedPassword(b.stdout));
  });

  it('listens on loopback only by default, and writes no listener without TLS', async () => {
    const p = place();
    assert.equal((await maild(p.args('--hostname', 'mail.example.com', '--domain', 'example.com'))).code, 0);
    const cfg = loadConfig(p.config, {});
    assert.deepEqual(
      cfg.listeners.map((l) => [l.name, l.protocol, l.address.join(' '), l.port, l.tls]),
      [
        ['mx', 'smtp', '127.0.0.1', 25, 'starttls'],
        ['submissions', 'submission', '127.0.0.1', 465, 'implicit'],
        ['submission', 'submission', '127.0.0.1', 587, 'starttls'],
        ['imaps', 'imap', '127.0.0.1', 993, 'implicit'],
        ['imap', 'imap', '127.0.0.1', 143, 'starttls'],
        ['pop3s', 'pop3', '127.0.0.1', 995, 'implicit'],
        ['pop3', 'pop3', '127.0.0.1', 110, 'starttls'],
      ],
    );
  });

  it('--listen puts the MX and the TLS listeners on that address', async () => {
    const p = place();
    assert.equal((await maild(p.args('--hostname', 'mail.example.com', '--domain', 'example.com', '--listen', '::'))).code, 0);
    const cfg = loadConfig(p.config, {});
    assert.deepEqual(new Set(cfg.listeners.map((l) => l.address.join(' '))), new Set(['::']));
    assert.ok(cfg.listeners.every((l) => l.tls === 'starttls' || l.tls === 'implicit'));
  });

  it('--container: all interfaces, unprivileged ports', async () => {
    const p = place();
    const r = await maild(p.args('--hostname', 'mail.example.com', '--domain', 'example.com', '--container', '--user', 'Me@example.com'));
    assert.equal(r.code, 0, r.stderr);
    const cfg = loadConfig(p.config, {});
    assert.deepEqual(
      cfg.listeners.map((l) => `${l.name} ${l.address.join(' ')}:${l.port}`),
      [
        'mx 0.0.0.0:2525',
        'submissions 0.0.0.0:1465',
        'submission 0.0.0.0:1587',
        'imaps 0.0.0.0:1993',
        'imap 0.0.0.0:1143',
        'pop3s 0.0.0.0:1995',
        'pop3 0.0.0.0:1110',
      ],
    );
    const directory = parse(await readFile(p.directory, 'utf8')) as { users: object; aliases: Record<string, string> };
    assert.deepEqual(Object.keys(directory.users), ['me@example.com']);
    assert.equal(directory.aliases['postmaster@example.com'], 'me@example.com');
  });

  it('refuses with exit 1 when the configuration exists, leaving it untouched and writing nothing', async () => {
    const p = place();
    await mkdir(path.dirname(p.config), { recursive: true });
    await writeFile(p.config, '# mine\n', { mode: 0o644 });
    const r = await maild(p.args('--hostname', 'mail.example.com', '--domain', 'example.com'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /exists/);
    assert.doesNotMatch(r.stdout, /password/);
    assert.equal(await readFile(p.config, 'utf8'), '# mine\n');
    assert.equal((await stat(p.config)).mode & 0o777, 0o644);
    await assert.rejects(stat(p.directory), { code: 'ENOENT' });
  });

  it('refuses with exit 1 when the directory file exists (a kept state volume), writing no configuration', async () => {
    const p = place();
    await mkdir(path.dirname(p.directory), { recursive: true });
    await writeFile(p.directory, 'domains: [kept.example]\n');
    const r = await maild(p.args('--hostname', 'mail.example.com', '--domain', 'example.com'));
    assert.equal(r.code, 1);
    assert.equal(await readFile(p.directory, 'utf8'), 'domains: [kept.example]\n');
    await assert.rejects(stat(p.config), { code: 'ENOENT' });
  });

  it('refuses bad or missing options with exit 64 and writes nothing', async () => {
    for (const args of [
      ['--domain', 'example.com'],
      ['--hostname', 'mail.example.com'],
      ['--hostname', 'mail example', '--domain', 'example.com'],
      ['--hostname', 'mail.example.com', '--domain', '../etc'],
      ['--hostname', 'mail.example.com', '--domain', 'example.com', '--user', 'me@other.example'],
      ['--hostname', 'mail.example.com', '--domain', 'example.com', '--user', 'a/../b@example.com'],
      ['--hostname', 'mail.example.com', '--domain', 'example.com', '--listen', 'everywhere'],
    ]) {
      const p = place();
      const r = await maild(p.args(...args));
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      await assert.rejects(stat(p.base), { code: 'ENOENT' });
    }
  });

  it('the printed password logs in over IMAPS to a server started from the written configuration', async () => {
    const p = place();
    const r = await maild(p.args('--hostname', 'mail.example.com', '--domain', 'example.com'));
    const password = printedPassword(r.stdout);
    const cfg = loadConfig(p.config, {});
    // Ephemeral ports instead of 993 and friends; everything else as written.
    const runtime = await startServer({ ...cfg, listeners: cfg.listeners.map((l) => ({ ...l, port: 0 })) }, silentLogger);
    try {
      const client = await ImapTestClient.connect(runtime.portOf('imaps'), { implicitTls: true });
      await client.greeting();
      assert.equal((await client.login('postmaster@example.com', `${password}x`)).status, 'NO');
      assert.equal((await client.login('postmaster@example.com', password)).status, 'OK');
      await client.logout();
    } finally {
      await runtime.shutdown();
    }
  });
});
