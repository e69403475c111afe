/**
 * The container's entrypoint (config/docker-entrypoint, /opt/maild/bin/docker-entrypoint in the
 * image), run here with sh against a temporary /etc/maild and volumes: it refuses to start
 * without a configuration, writes one with `maild init` when MAILD_HOSTNAME and MAILD_DOMAIN are
 * set (the printed password logs in), and runs a mounted one as it is.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compiledEntry, ROOT, spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { createDatabaseUser, createTestDatabase, testServer } from '../helpers/mysql.js';

const ENTRYPOINT = path.join(ROOT, 'config', 'docker-entrypoint');

/**
 * The image runs as vmail, never as root: so does the entrypoint here, as nobody when the suite
 * runs as root (it does in CI), keeping only the right to read and search files, so the checkout
 * and node_modules stay reachable wherever they are.
 */
const AS_IMAGE_USER =
  process.getuid?.() === 0
    ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search']
    : [];
const NOBODY = { uid: 65534, gid: 65534 };

describe('container entrypoint', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-entrypoint-'));
    // The container's filesystem belongs to its user.
    if (AS_IMAGE_USER.length) await chown(dir, NOBODY.uid, NOBODY.gid);
    // `maild` on PATH, as /opt/maild/bin/maild is in the image.
    const bin = path.join(dir, 'bin');
    await mkdir(bin);
    await writeFile(path.join(bin, 'maild'), `#!/bin/sh\nexec '${process.execPath}' '${compiledEntry('src/cli/index.ts')}' "$@"\n`);
    await chmod(path.join(bin, 'maild'), 0o755);
    env = { PATH: `${bin}:${process.env.PATH}`, MAILD_CONFIG: undefined, MAILD_HOSTNAME: undefined, MAILD_DOMAIN: undefined };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A fresh container: its /etc/maild, state and mail volumes. */
  const container = () => {
    const root = path.join(dir, `c${n++}`);
    return {
      config: path.join(root, 'etc', 'maild', 'maild.yaml'),
      env: {
        ...env,
        MAILD_CONFIG: path.join(root, 'etc', 'maild', 'maild.yaml'),
        MAILD_DATA_DIR: path.join(root, 'var/lib/maild'),
        MAILD_MAIL_ROOT: path.join(root, 'var/mail/vhosts'),
      },
      root,
    };
  };
  const run = (args: string[], runEnv: NodeJS.ProcessEnv) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const [command, ...rest] = [...AS_IMAGE_USER, 'sh', ENTRYPOINT, ...args];
      const proc = spawn(command!, rest, { env: { ...process.env, ...runEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      proc.stdout.on('data', (d) => (stdout += d));
      proc.stderr.on('data', (d) => (stderr += d));
      proc.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  const start = (runEnv: NodeJS.ProcessEnv): Daemon => spawnDaemon([], { command: [...AS_IMAGE_USER, 'sh', ENTRYPOINT], env: runEnv });
  const stop = async (daemon: Daemon) => {
    daemon.kill('SIGTERM');
    return daemon.exited;
  };

  it('refuses to start without a configuration, saying how to mount or generate one', async () => {
    for (const extra of [{}, { MAILD_HOSTNAME: 'mail.example.com' }, { MAILD_DOMAIN: 'example.com' }]) {
      const c = container();
      const r = await run([], { ...c.env, ...extra });
      assert.equal(r.code, 78, r.stderr);
      assert.match(r.stderr, /no configuration at .*maild\.yaml; refusing to start/);
      assert.match(r.stderr, /docker run -v \S+:\S+maild\.yaml:ro/);
      assert.match(r.stderr, /-e MAILD_HOSTNAME=mail\.example\.com -e MAILD_DOMAIN=example\.com/);
      assert.doesNotMatch(r.stdout, /password/);
      await assert.rejects(stat(c.root), { code: 'ENOENT' });
    }
  });

  it('runs a mounted configuration as it is; SIGTERM reaches the daemon; other arguments are maild commands', async () => {
    const c = container();
    await mkdir(path.dirname(c.config), { recursive: true });
    await writeFile(path.join(c.root, 'directory.yaml'), 'domains: [example.test]\n');
    if (AS_IMAGE_USER.length) {
      for (const d of [c.root, path.join(c.root, 'etc'), path.dirname(c.config)]) await chown(d, NOBODY.uid, NOBODY.gid);
    }
    await writeFile(
      c.config,
      'data_dir: state\nmail: {root: mail}\nlisteners: [{name: mx, protocol: smtp, address: 127.0.0.1, port: 0}]\n' +
        `directory: {file: {path: ${path.join(c.root, 'directory.yaml')}}}\nshutdown_timeout: 1s\n`,
    );
    const daemon = start({ ...c.env, MAILD_HOSTNAME: 'mail.example.com', MAILD_DOMAIN: 'example.com' });
    try {
      await daemon.waitLog((l) => l.msg === 'ready');
      assert.ok(!daemon.logs.some((l) => typeof l.raw === 'string' && /password/.test(l.raw)), 'no init over a mounted config');
      const health = await run(['health'], c.env);
      assert.equal(health.code, 0, health.stderr);
      assert.match(health.stdout, /maild is running/);
    } finally {
      const exit = await stop(daemon);
      assert.deepEqual(exit, { code: 0, signal: null });
    }
    assert.equal((await run(['health'], c.env)).code, 1);
  });

  it('with MAILD_HOSTNAME and MAILD_DOMAIN writes a configuration, prints the password once, and starts; the password logs in', async () => {
    const c = container();
    // The ports are the container's (1993 is IMAPS), on an address of 127/8 of this run's own
    // rather than the image's 0.0.0.0, so the quick start on 127.0.0.1 may run meanwhile.
    const address = `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
    const runEnv = { ...c.env, MAILD_HOSTNAME: 'mail.example.com', MAILD_DOMAIN: 'example.com', MAILD_LISTEN: address };
    const first = start(runEnv);
    let password: string;
    try {
      const line = await first.waitLog((l) => typeof l.raw === 'string' && l.raw.startsWith('password:'));
      password = String(line.raw).split(/\s+/)[1]!;
      assert.ok(password.length >= 16);
      await first.waitLog((l) => l.msg === 'ready');
      assert.equal((await stat(c.config)).mode & 0o777, 0o640);
      const imap = await ImapTestClient.connect(1993, { implicitTls: true, host: address });
      await imap.greeting();
      assert.equal((await imap.login('postmaster@example.com', password)).status, 'OK');
      await imap.logout();
    } finally {
      assert.deepEqual(await stop(first), { code: 0, signal: null });
    }

    // The next start finds the configuration: no new password, same user.
    const second = start(runEnv);
    try {
      await second.waitLog((l) => l.msg === 'ready');
      assert.ok(!second.logs.some((l) => typeof l.raw === 'string' && l.raw.startsWith('password:')));
      const imap = await ImapTestClient.connect(1993, { implicitTls: true, host: address });
      await imap.greeting();
      assert.equal((await imap.login('postmaster@example.com', password)).status, 'OK');
      await imap.logout();
    } finally {
      await stop(second);
    }
  });

  it("compose.yaml's maild configuration: migrate, then check-config and the CLI against MariaDB, the password from the environment", async () => {
    // What compose.yaml's mariadb service makes: a database and mailuser with ALL on it.
    const db = await createTestDatabase({ migrate: false });
    const user = await createDatabaseUser(db, 'ALL PRIVILEGES');
    try {
      const composeEnv = {
        ...env,
        MAILD_CONFIG: path.join(ROOT, 'config', 'compose', 'maild.yaml'),
        MAILD_HOSTNAME: 'mail.example.com',
        MAILD_DB_HOST: testServer.host,
        MAILD_DB_USER: user.user,
        MAILD_DB_PASSWORD: user.password,
        MAILD_DB_NAME: db.name,
        MAILD_DATA_DIR: path.join(dir, 'compose', 'data'),
        MAILD_MAIL_ROOT: path.join(dir, 'compose', 'mail'),
      };
      const migrate = await run(['migrate'], composeEnv);
      assert.equal(migrate.code, 0, migrate.stderr);
      assert.match(migrate.stdout, /^applied: /);
      const check = await run(['check-config'], composeEnv);
      assert.equal(check.code, 0, check.stderr);
      assert.match(check.stderr, /directory\.mysql\.queries\.user .*: OK/);
      assert.match(check.stderr, /configuration OK/);
      assert.ok(!check.stdout.includes(user.password), 'the password is masked');
      assert.equal((await run(['domain', 'add', 'example.com'], composeEnv)).code, 0);
      assert.equal((await run(['domain', 'list'], composeEnv)).stdout, 'example.com\n');
      // Without the password in the environment it does not start.
      const missing = await run(['check-config'], { ...composeEnv, MAILD_DB_PASSWORD: undefined });
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /directory\.mysql\.password: environment variable MAILD_DB_PASSWORD is not set/);
    } finally {
      await user.drop();
      await db.drop();
    }
  });
});
