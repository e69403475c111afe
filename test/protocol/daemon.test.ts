/**
 * The daemon as a process: configuration errors, the quick start, graceful shutdown on SIGTERM
 * and reload on SIGHUP.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { Pop3TestClient } from '../helpers/pop3-client.js';
import { SmtpClient, dotStuff, simpleMessage } from '../helpers/smtp-client.js';

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'maild-daemon-'));
}

describe('configuration errors', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, string, RegExp]> = [
    ['a bad port', 'listeners:\n  - protocol: smtp\n    port: "abc"\n', /listeners\[0\]\.port/],
    ['an unknown key', 'listeners:\n  - protocol: smtp\n    port: 25\nlimits:\n  mesage_size: 10M\n', /limits\.mesage_size: unknown key/],
    [
      'a bad size',
      'listeners:\n  - protocol: smtp\n    port: 25\nlimits:\n  message_size: lots\n',
      /limits\.message_size: expected a size/,
    ],
    [
      'an unset variable',
      'listeners:\n  - protocol: smtp\n    port: 25\ndirectory:\n  backend: mysql\n  mysql:\n    password: ${MAILD_TEST_UNSET_SECRET}\n',
      /directory\.mysql\.password: environment variable MAILD_TEST_UNSET_SECRET is not set/,
    ],
    ['no listeners', 'hostname: x\n', /listeners: /],
    ['broken YAML', 'listeners: [\n', /not valid YAML/],
    [
      'mysql without its section',
      'listeners:\n  - protocol: smtp\n    port: 25\ndirectory:\n  backend: mysql\n',
      /directory\.mysql: backend mysql needs a mysql section/,
    ],
  ];
  for (const [name, yaml, expected] of cases) {
    it(`exits 1 naming the key for ${name}`, async () => {
      const file = path.join(dir, `${name.replace(/\W/g, '_')}.yaml`);
      await writeFile(file, yaml);
      const d = spawnDaemon(['--config', file], { env: { MAILD_TEST_UNSET_SECRET: undefined } });
      const { code } = await d.exited;
      assert.equal(code, 1);
      assert.match(d.stderr(), expected);
    });
  }

  it('substitutes ${VAR} from the environment', async () => {
    const file = path.join(dir, 'env.yaml');
    await writeFile(
      file,
      'user: root\nlisteners:\n  - protocol: smtp\n    port: ${MAILD_TEST_PORT}\n    address: 127.0.0.1\ndata_dir: data\nmail: {root: mail}\ndirectory: {file: {path: d.yaml}}\n',
    );
    await writeFile(path.join(dir, 'd.yaml'), 'domains: [a.example]\n');
    const d = spawnDaemon(['--config', file], { env: { MAILD_TEST_PORT: '0' } });
    await d.waitLog((l) => l.msg === 'ready');
    assert.equal(typeof d.port('smtp:0'), 'number');
    d.kill('SIGTERM');
    assert.equal((await d.exited).code, 0);
  });
});

/** A copy of the quick-start configuration in a temporary project-like tree, on ephemeral ports. */
async function quickstartCopy(): Promise<{ dir: string; config: string }> {
  const dir = await tempDir();
  await mkdir(path.join(dir, 'config'));
  const text = (await readFile(path.join(ROOT, 'config/quickstart.yaml'), 'utf8')).replace(/port: \d+/g, 'port: 0');
  const config = path.join(dir, 'config/quickstart.yaml');
  await writeFile(config, text);
  await copyFile(path.join(ROOT, 'config/quickstart-directory.yaml'), path.join(dir, 'config/quickstart-directory.yaml'));
  return { dir, config };
}

describe('quick start', () => {
  it('runs from the compiled output: seeds the directory, generates a certificate, delivers to demo@example.test', async () => {
    await stat(path.join(ROOT, 'dist/src/main.js')).catch(() => assert.fail('dist/ is missing: npm test builds it first (npm run build)'));
    const { dir, config } = await quickstartCopy();
    const d = spawnDaemon(['--config', config], { compiled: true });
    try {
      await d.waitLog((l) => l.msg === 'ready');
      assert.ok((await stat(path.join(dir, 'data/tls/selfsigned-cert.pem'))).isFile());
      assert.match(await readFile(path.join(dir, 'data/directory.yaml'), 'utf8'), /demo@example\.test/);
      const c = await SmtpClient.connect(d.port('mx'));
      await c.greeting();
      await c.command('EHLO quickstart.test');
      assert.equal((await c.startTls()).code, 220);
      await c.command('EHLO quickstart.test');
      const res = await c.sendMail('someone@remote.example', ['demo@example.test'], simpleMessage('hello demo'));
      assert.equal(res.final![0]!.code, 250);
      await c.quit();
      const files = await readdir(path.join(dir, 'data/mail/example.test/demo/new'));
      assert.equal(files.length, 1);
      const logLine = await d.waitLog((l) => l.msg === 'delivered');
      assert.equal(logLine.to, 'demo@example.test');
      // ... and demo reads it over IMAPS, as the README shows.
      const imap = await ImapTestClient.connect(d.port('imaps'), { implicitTls: true });
      await imap.greeting();
      assert.equal((await imap.login('demo@example.test', 'maild-demo')).status, 'OK');
      assert.ok((await imap.cmd('SELECT INBOX')).untagged.includes('1 EXISTS'));
      const fetched = await imap.cmd('UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
      assert.match(fetched.untagged.join('\n'), /Subject: hello demo/);
      await imap.logout();
      // ... and over POP3S (port 1995 in the quick start), which keeps it.
      const pop = await Pop3TestClient.connect(d.port('pop3s'), { implicitTls: true });
      await pop.greeting();
      assert.equal((await pop.login('demo@example.test', 'maild-demo')).line, '+OK Logged in.');
      assert.match((await pop.multi('RETR 1')).lines.join('\n'), /Subject: hello demo/);
      assert.equal((await pop.quit())?.line, '+OK Logging out.');
      // ... and demo sends one as a mail client does: submission, STARTTLS, AUTH (the README's swaks line).
      const sub = await SmtpClient.connect(d.port('submission'));
      await sub.greeting();
      await sub.command('EHLO quickstart.test');
      assert.equal((await sub.startTls()).code, 220);
      assert.match((await sub.command('EHLO quickstart.test')).lines.join('\n'), /AUTH PLAIN LOGIN/);
      assert.equal((await sub.command(`AUTH PLAIN ${Buffer.from('\0demo@example.test\0maild-demo').toString('base64')}`)).code, 235);
      const sent = await sub.sendMail(
        'demo@example.test',
        ['demo@example.test'],
        'From: demo@example.test\nTo: demo@example.test\nSubject: sent by demo\n\nHi.\n',
      );
      assert.match(sent.final![0]!.lines.join(' '), /^250 2\.0\.0 Ok: queued as [0-9A-F]{12}$/);
      await sub.quit();
      await d.waitLog((l) => l.msg === 'delivered' && l.relay === 'local');
      assert.equal(
        (await readdir(path.join(dir, 'data/mail/example.test/demo/new'))).length +
          (await readdir(path.join(dir, 'data/mail/example.test/demo/cur'))).length,
        2,
      );
    } finally {
      d.kill('SIGTERM');
      await d.exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('signals', () => {
  let dir: string;
  let config: string;
  let d: Daemon;

  before(async () => {
    ({ dir, config } = await quickstartCopy());
  });
  after(async () => {
    d?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('SIGHUP reloads the configuration and the directory; a broken config is refused and the old one kept', async () => {
    d = spawnDaemon(['--config', config]);
    await d.waitLog((l) => l.msg === 'ready');
    const port = d.port('mx');
    const sizeOf = async () => {
      const c = await SmtpClient.connect(port);
      await c.greeting();
      const ehlo = await c.command('EHLO x.example');
      await c.quit();
      return ehlo.lines.find((l) => l.includes('SIZE'))!.slice(4);
    };
    assert.equal(await sizeOf(), 'SIZE 26214400');

    const text = await readFile(config, 'utf8');
    await writeFile(config, `${text}\nlimits:\n  message_size: 10M\n`);
    d.kill('SIGHUP');
    await d.waitLog((l) => l.msg === 'configuration reloaded');
    assert.equal(await sizeOf(), 'SIZE 10485760');

    await writeFile(config, `${text}\nlimits:\n  message_size: huge\n`);
    d.kill('SIGHUP');
    const refused = await d.waitLog((l) => String(l.msg).startsWith('reload refused'));
    assert.match(String(refused.err), /limits\.message_size/);
    assert.equal(await sizeOf(), 'SIZE 10485760', 'the running configuration stays');
  });

  it('SIGTERM stops accepting, lets a session finish its message, then exits 0', async () => {
    const port = d.port('mx');
    const c = await SmtpClient.connect(port);
    await c.greeting();
    await c.command('EHLO x.example');
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    assert.equal((await c.command('RCPT TO:<demo@example.test>')).code, 250);
    d.kill('SIGTERM');
    await d.waitLog((l) => String(l.msg).startsWith('shutting down'));
    // New connections are refused...
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(undefined);
        });
        s.once('error', reject);
      }),
      /ECONNREFUSED/,
    );
    // ...while the open session still delivers.
    assert.equal((await c.command('DATA')).code, 354);
    c.write(`${dotStuff(simpleMessage('during shutdown'))}.\r\n`);
    assert.equal((await c.reply()).code, 250);
    await c.quit();
    const { code } = await d.exited;
    assert.equal(code, 0);
    const files = await readdir(path.join(dir, 'data/mail/example.test/demo/new'));
    assert.equal(files.length, 1);
  });
});
