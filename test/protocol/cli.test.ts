/**
 * The maild command line, run as a process against both backends, and a running daemon picking
 * up its changes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { PasswordService } from '../../src/directory/passwords/index.js';
import { compiledEntry } from '../helpers/daemon.js';
import { createTestDatabase, type TestDatabase } from '../helpers/mysql.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor } from '../helpers/server.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function maild(config: string, args: string[], stdin = '', env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [compiledEntry('src/cli/index.ts'), '--config', config, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.stdin.end(stdin);
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function ok(config: string, args: string[], stdin = ''): Promise<string> {
  const r = await maild(config, args, stdin);
  assert.equal(r.code, 0, `maild ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

function cliSuite(name: string, setup: () => Promise<{ config: string; cleanup: () => Promise<void> }>) {
  describe(`maild CLI on the ${name} backend`, () => {
    let config: string;
    let cleanup: () => Promise<void>;
    const passwords = new PasswordService({ threads: 1 });
    before(async () => {
      ({ config, cleanup } = await setup());
    });
    after(async () => {
      await passwords.close();
      await cleanup();
    });

    it('administers domains, users and aliases', async () => {
      await ok(config, ['domain', 'add', 'Example.COM']);
      await ok(config, ['domain', 'add', 'example.net', '--alias-for', 'example.com']);
      assert.deepEqual((await ok(config, ['domain', 'list'])).trim().split('\n'), ['example.com', 'example.net\talias of example.com']);
      const dup = await maild(config, ['domain', 'add', 'example.com']);
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /exists/);

      await ok(config, ['user', 'add', 'Alice@Example.com', '--quota', '1G'], 'first secret\n');
      await ok(config, ['user', 'add', 'bob@example.com', '--scheme', 'SHA512-CRYPT'], 'bob secret\n');
      assert.deepEqual((await ok(config, ['user', 'list'])).trim().split('\n'), [
        'alice@example.com\tenabled\tquota=1073741824',
        'bob@example.com\tenabled\tquota=unlimited',
      ]);
      await ok(config, ['user', 'passwd', 'alice@example.com'], 'second secret\n');
      await ok(config, ['user', 'disable', 'bob@example.com']);
      assert.match(await ok(config, ['user', 'list', 'example.com']), /bob@example\.com\tdisabled/);
      await ok(config, ['user', 'enable', 'bob@example.com']);
      await ok(config, ['user', 'quota', 'bob@example.com', '500M']);
      assert.match(await ok(config, ['user', 'list']), /bob@example\.com\tenabled\tquota=524288000/);

      await ok(config, ['alias', 'add', 'all@example.com', 'alice@example.com', 'bob@example.com']);
      await ok(config, ['alias', 'add', '@example.com', 'alice@example.com']);
      assert.deepEqual((await ok(config, ['alias', 'list'])).trim().split('\n').sort(), [
        '@example.com\talice@example.com',
        'all@example.com\talice@example.com',
        'all@example.com\tbob@example.com',
      ]);

      const lookup = await ok(config, ['lookup', 'all@example.net']);
      assert.match(lookup, /^alice@example\.com\tmailbox\t.*example\.com\/alice\tquota=1073741824$/m);
      assert.match(lookup, /^bob@example\.com\tmailbox\t/m);
      const unknownDomain = await maild(config, ['lookup', 'x@elsewhere.example']);
      assert.equal(unknownDomain.code, 1);

      await ok(config, ['alias', 'del', 'all@example.com', 'bob@example.com']);
      await ok(config, ['alias', 'del', '@example.com']);
      const lookup2 = await maild(config, ['lookup', 'nobody@example.com']);
      assert.equal(lookup2.code, 1);
      assert.match(lookup2.stderr, /no mailbox or alias/);

      const refused = await maild(config, ['domain', 'del', 'example.com']);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /still has 2 users/);
      await ok(config, ['user', 'del', 'bob@example.com']);
      await ok(config, ['domain', 'del', 'example.com', '--force']);
      assert.equal((await ok(config, ['domain', 'list'])).trim(), '');
    });

    it('hashes like doveadm pw, and the hashes verify', async () => {
      const sha = (await ok(config, ['pw', '-s', 'SHA512-CRYPT', '-p', 'pw test'])).trim();
      assert.match(sha, /^\{SHA512-CRYPT\}\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$/);
      assert.equal((await passwords.verify(sha, 'pw test')).ok, true);
      const argon = (await ok(config, ['pw'], 'from stdin\n')).trim();
      assert.match(argon, /^\{ARGON2ID\}\$argon2id\$/);
      assert.equal((await passwords.verify(argon, 'from stdin')).ok, true);
      const bad = await maild(config, ['pw', '-s', 'ROT13', '-p', 'x']);
      assert.equal(bad.code, 64);
    });

    it('prints the effective configuration without secrets', async () => {
      const r = await maild(config, ['check-config'], '', { MAILD_CLI_DB_PASSWORD: 'cli-secret-password' });
      assert.match(r.stdout, /listeners:/);
      if (name === 'mysql') {
        assert.match(r.stdout, /password: "\*\*\*\*\*\*\*\*"|password: '\*\*\*\*\*\*\*\*'/);
        assert.ok(!r.stdout.includes('cli-secret-password'));
        // That is not the database's password: the queries cannot be run (75, EX_TEMPFAIL).
        assert.equal(r.code, 75, r.stderr);
        assert.match(r.stderr, /the MySQL queries could not be checked: cannot connect to MySQL as .*Access denied/);
        assert.ok(!r.stderr.includes('cli-secret-password'));
        const good = await maild(config, ['check-config']);
        assert.equal(good.code, 0, good.stderr);
        assert.match(good.stderr, /queries\.user \(default\): SELECT email, password, quota, `enable` FROM virtual_users/);
        assert.match(good.stderr, /configuration OK/);
      } else {
        assert.equal(r.code, 0);
        assert.match(r.stderr, /configuration OK/);
      }
    });

    it('refuses unknown commands with usage and exit 64', async () => {
      const r = await maild(config, ['frobnicate']);
      assert.equal(r.code, 64);
      assert.match(r.stderr, /usage: maild/);
    });
  });
}

cliSuite('file', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-cli-'));
  const config = path.join(dir, 'maild.yaml');
  await writeFile(
    config,
    'user: root\nlisteners: [{protocol: smtp, port: 0}]\ndirectory: {file: {path: directory.yaml}}\nmail: {root: mail}\n',
  );
  return { config, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

let db: TestDatabase | undefined;
cliSuite('mysql', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-cli-'));
  db = await createTestDatabase({ migrate: false });
  const config = path.join(dir, 'maild.yaml');
  const { host, port, user, database } = db.config;
  await writeFile(
    config,
    `user: root\nlisteners: [{protocol: smtp, port: 0}]\nmail: {root: mail}\ndirectory:\n  backend: mysql\n  mysql: {host: "${host}", port: ${port}, user: "${user}", password: "\${MAILD_CLI_DB_PASSWORD:-}", database: "${database}"}\n`,
  );
  // migrate on an empty database creates the schema, and is idempotent.
  assert.match(await ok(config, ['migrate']), /^applied: /);
  assert.equal((await ok(config, ['migrate'])).trim(), 'schema is up to date');
  return {
    config,
    cleanup: async () => {
      await db?.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('a running daemon and the CLI', () => {
  it('accepts mail for a user the CLI just added to the file directory, without a restart', async () => {
    const srv = await startTestServer();
    try {
      const config = srv.runtime.config.configPath;
      const c = await SmtpClient.connect(srv.smtpPort);
      await c.greeting();
      await c.command('EHLO x.example');
      await c.command('MAIL FROM:<s@remote.example>');
      assert.equal((await c.command('RCPT TO:<newcomer@example.test>')).code, 550);
      await ok(config, ['user', 'add', 'newcomer@example.test'], 'welcome\n');
      await waitFor(async () => (await c.command('RCPT TO:<newcomer@example.test>')).code === 250, 5000, 'the daemon sees the new user');
      await c.quit();
      assert.match(await readFile(path.join(srv.dir, 'directory.yaml'), 'utf8'), /newcomer@example\.test/);
    } finally {
      await srv.stop();
    }
  });
});

describe('check-config and the TLS certificate', () => {
  it('reads the configured certificate and key as the start does: missing or mismatched is exit 1 naming it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-cli-tls-'));
    try {
      const pair = async () => generate([{ name: 'commonName', value: 'mail.example.test' }], { keySize: 2048, algorithm: 'sha256' });
      const [a, b] = await Promise.all([pair(), pair()]);
      await writeFile(path.join(dir, 'cert.pem'), a.cert);
      await writeFile(path.join(dir, 'key.pem'), a.private);
      await writeFile(path.join(dir, 'other-key.pem'), b.private);
      await writeFile(path.join(dir, 'directory.yaml'), 'domains: []\n');
      const config = path.join(dir, 'maild.yaml');
      const write = (cert: string, key: string) =>
        writeFile(config, `user: root\nlisteners: [{protocol: smtp, port: 0}]\nmail: {root: mail}\ntls: {cert: ${cert}, key: ${key}}\n`);

      await write('cert.pem', 'key.pem');
      const good = await maild(config, ['check-config']);
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stderr, /tls\.cert: CN=mail\.example\.test, valid until .*: OK/);

      await write('missing.pem', 'key.pem');
      const missing = await maild(config, ['check-config']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /tls\.cert: cannot read .*missing\.pem: ENOENT/);
      assert.doesNotMatch(missing.stderr, /configuration OK/);

      await write('cert.pem', 'other-key.pem');
      const mismatched = await maild(config, ['check-config']);
      assert.equal(mismatched.code, 1);
      assert.match(mismatched.stderr, /the key does not belong to the certificate/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
