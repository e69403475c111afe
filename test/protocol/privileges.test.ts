/**
 * Started as root, the daemon reads root-only keys and binds, then drops to `user:` before it
 * serves anyone; a privileged keeper re-reads the root-only configuration and keys on SIGHUP.
 * The suite runs as root (CI does); the account is the system's `nobody`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import net from 'node:net';
import { spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { runCliProcess } from '../helpers/cli.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
const NOGROUP = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());

/** Real, effective, saved and filesystem ids of a process, from /proc (Uid:/Gid: lines). */
async function ids(pid: number): Promise<{ uid: number[]; gid: number[] }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) =>
    status
      .match(new RegExp(`^${name}:\\s+(.*)$`, 'm'))![1]!
      .split(/\s+/)
      .map(Number);
  return { uid: field('Uid'), gid: field('Gid') };
}

function childrenOf(pid: number): number[] {
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).trim();
  return out ? out.split(/\s+/).map(Number) : [];
}

/** A port below 1024 that nothing listens on here (the test binds it for a moment to be sure). */
async function freePrivilegedPort(): Promise<number> {
  for (let port = 700 + Math.floor(Math.random() * 200); port < 1000; port++) {
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port below 1000');
}

function makeCertificate(dir: string, name: string): { cert: string; key: string } {
  const cert = path.join(dir, `${name}-cert.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', `/CN=${name}`, '-days', '2'],
    {
      stdio: 'ignore',
    },
  );
  return { cert, key };
}

/** The certificate the SMTP listener presents after STARTTLS. */
async function presentedCertificate(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let buffer = '';
  socket.setEncoding('latin1');
  const until = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (re.test(buffer) ? resolve() : undefined);
      socket.on('data', (d: string) => {
        buffer += d;
        check();
      });
      socket.once('error', reject);
      check();
    });
  await until(/^220 /m);
  socket.write('EHLO cert.test\r\n');
  await until(/^250 /m);
  buffer = '';
  socket.write('STARTTLS\r\n');
  await until(/^220 /m);
  socket.removeAllListeners('data');
  const secure = tls.connect({ socket, rejectUnauthorized: false, servername: 'localhost' });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', resolve);
    secure.once('error', reject);
  });
  const subject = secure.getPeerX509Certificate()!.subject;
  secure.destroy();
  return subject;
}

describe('privileges', { skip: !isRoot && 'needs root (CI runs as root)' }, () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-privileges-'));
    // The account must be able to reach its directories, as under /var.
    await chmod(dir, 0o755);
    await writeFile(path.join(dir, 'directory.yaml'), 'domains: [priv.example]\nusers:\n  u@priv.example: {password: "{PLAIN}x"}\n');
    await chmod(path.join(dir, 'directory.yaml'), 0o644);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to start as root without user:, naming the key', async () => {
    const file = path.join(dir, 'no-user.yaml');
    await writeFile(file, 'listeners:\n  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}\ndata_dir: data\nmail: {root: mail}\n');
    const d = spawnDaemon(['--config', file]);
    assert.equal((await d.exited).code, 1);
    assert.match(d.stderr(), /started as root without user: set user: \(e\.g\. vmail\)/);
  });

  it('refuses an unknown user before binding anything', async () => {
    const file = path.join(dir, 'unknown-user.yaml');
    await writeFile(
      file,
      'user: maild-no-such-user\nlisteners:\n  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}\ndata_dir: data\nmail: {root: mail}\n',
    );
    const d = spawnDaemon(['--config', file]);
    assert.equal((await d.exited).code, 1);
    assert.match(d.stderr(), /user: no such user maild-no-such-user/);
  });

  it('the CLI run as root writes the directory file and DKIM keys as the user, so the daemon can read them', async () => {
    const cfgDir = path.join(dir, 'cli');
    await mkdir(cfgDir, { mode: 0o755 });
    const file = path.join(cfgDir, 'maild.yaml');
    await writeFile(
      file,
      `user: nobody\nlisteners: [{protocol: smtp, address: 127.0.0.1, port: 0}]\ndata_dir: ${cfgDir}/data\nmail: {root: ${cfgDir}/mail}\ndirectory: {file: {path: ${cfgDir}/data/directory.yaml}}\n`,
      { mode: 0o600 },
    );
    const add = await runCliProcess(['--config', file, 'domain', 'add', 'cli.example']);
    assert.equal(add.code, 0, add.stderr);
    const directoryFile = await stat(path.join(cfgDir, 'data/directory.yaml'));
    assert.equal(directoryFile.uid, NOBODY);
    const dkim = await runCliProcess(['--config', file, 'dkim', 'generate', 'cli.example']);
    assert.equal(dkim.code, 0, dkim.stderr);
    const keys = await readdir(path.join(cfgDir, 'data/dkim'));
    assert.ok(keys.length > 0);
    for (const k of keys) assert.equal((await stat(path.join(cfgDir, 'data/dkim', k))).uid, NOBODY, k);
  });

  describe('dropped to nobody', () => {
    let d: Daemon;
    let keys: string;
    let config: string;
    let lowPort: number;

    before(async () => {
      // Keys as certbot leaves them: a root-only directory, a root-only key.
      keys = path.join(dir, 'keys');
      await mkdir(keys, { mode: 0o700 });
      const first = makeCertificate(keys, 'first.priv.example');
      await chmod(first.key, 0o600);
      config = path.join(dir, 'maild.yaml');
      lowPort = await freePrivilegedPort();
      await mkdir(path.join(dir, 'private'), { mode: 0o700 });
      await writeFile(
        config,
        [
          'hostname: mx.priv.example',
          'user: nobody',
          `data_dir: ${dir}/state/data`,
          `mail: {root: ${dir}/state/mail}`,
          `tls: {cert: ${keys}/current-cert.pem, key: ${keys}/current-key.pem}`,
          'listeners:',
          '  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0, tls: starttls}',
          // Root's alone: a port below 1024, and a socket in a directory like Postfix's private/.
          `  - {name: low, protocol: smtp, address: 127.0.0.1, port: ${lowPort}}`,
          `  - {name: sock, protocol: lmtp, path: ${dir}/private/maild-lmtp, socket_owner: daemon, socket_mode: "0600"}`,
          `directory: {file: {path: ${dir}/directory.yaml}}`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      await writeFile(path.join(keys, 'current-cert.pem'), await readFile(first.cert));
      await writeFile(path.join(keys, 'current-key.pem'), await readFile(first.key), { mode: 0o600 });
      d = spawnDaemon(['--config', config]);
      await d.waitLog((l) => l.msg === 'ready');
    });
    after(async () => {
      d?.kill('SIGKILL');
      await d?.exited;
    });

    it('serves as the user and its primary group, with no way back to root', async () => {
      const { uid, gid } = await ids(d.proc.pid!);
      assert.deepEqual(uid, [NOBODY, NOBODY, NOBODY, NOBODY]);
      assert.deepEqual(gid, [NOGROUP, NOGROUP, NOGROUP, NOGROUP]);
      const line = await d.waitLog((l) => l.msg === 'privileges dropped');
      assert.equal(line.user, 'nobody');
    });

    it('bound a port below 1024 and a socket in a root-only directory before the drop, and serves both', async () => {
      const low = await SmtpClient.connect(lowPort);
      assert.equal((await low.greeting()).code, 220);
      await low.quit();
      const sockPath = path.join(dir, 'private/maild-lmtp');
      const st = await stat(sockPath);
      assert.ok(st.isSocket());
      assert.equal(st.uid, Number(execFileSync('id', ['-u', 'daemon'], { encoding: 'utf8' }).trim()));
      assert.equal(st.mode & 0o777, 0o600);
      const lmtp = await SmtpClient.connect(sockPath);
      assert.match((await lmtp.greeting()).text, /LMTP/);
      await lmtp.quit();
    });

    it('read the root-only key before the drop: STARTTLS presents the configured certificate', async () => {
      assert.match(await presentedCertificate(d.port('mx')), /CN=first\.priv\.example/);
    });

    it('creates the missing data and mail directories for the user, and delivers as the user', async () => {
      for (const sub of ['state/data', 'state/mail']) {
        const st = await stat(path.join(dir, sub));
        assert.equal(st.uid, NOBODY, sub);
        assert.equal(st.gid, NOGROUP, sub);
      }
      const c = await SmtpClient.connect(d.port('mx'));
      await c.greeting();
      await c.command('EHLO client.test');
      const sent = await c.sendMail('someone@remote.example', ['u@priv.example'], simpleMessage('as nobody'));
      assert.equal(sent.final![0]!.code, 250);
      await c.quit();
      const newDir = path.join(dir, 'state/mail/priv.example/u/new');
      const [file] = await readdir(newDir);
      const st = await stat(path.join(newDir, file!));
      assert.equal(st.uid, NOBODY);
      assert.equal(st.gid, NOGROUP);
    });

    it('keeps a privileged keeper as root, and SIGHUP picks up a renewed root-only certificate through it', async () => {
      const keepers = childrenOf(d.proc.pid!);
      assert.equal(keepers.length, 1, `children: ${keepers.join(' ')}`);
      assert.deepEqual((await ids(keepers[0]!)).uid, [0, 0, 0, 0]);
      // The renewal, as certbot does it: new files, root-only; the configuration itself is root-only.
      const second = makeCertificate(keys, 'second.priv.example');
      await writeFile(path.join(keys, 'current-cert.pem'), await readFile(second.cert));
      await writeFile(path.join(keys, 'current-key.pem'), await readFile(second.key), { mode: 0o600 });
      assert.equal((await stat(config)).mode & 0o777, 0o600);
      const before = d.logs.length;
      d.kill('SIGHUP');
      await d.waitLog(
        (l) => d.logs.indexOf(l) >= before && (l.msg === 'configuration reloaded' || l.msg === 'reload failed, keeping what was running'),
      );
      assert.ok(
        d.logs.slice(before).some((l) => l.msg === 'configuration reloaded'),
        JSON.stringify(d.logs.slice(before)),
      );
      assert.match(await presentedCertificate(d.port('mx')), /CN=second\.priv\.example/);
      assert.equal(new X509Certificate(await readFile(second.cert)).subject, 'CN=second.priv.example');
    });

    it('a broken renewal (key that does not match) is refused and the running certificate kept', async () => {
      const third = makeCertificate(keys, 'third.priv.example');
      await writeFile(path.join(keys, 'current-cert.pem'), await readFile(third.cert));
      const before = d.logs.length;
      d.kill('SIGHUP');
      const line = await d.waitLog((l) => d.logs.indexOf(l) >= before && /reload refused|reload failed/.test(String(l.msg)));
      assert.match(String(line.err), /key does not belong to the certificate/);
      assert.match(await presentedCertificate(d.port('mx')), /CN=second\.priv\.example/);
    });

    it('the keeper leaves with the daemon', async () => {
      const [keeper] = childrenOf(d.proc.pid!);
      d.kill('SIGTERM');
      assert.equal((await d.exited).code, 0);
      for (
        let i = 0;
        i < 50 &&
        (await stat(`/proc/${keeper}`).then(
          () => true,
          () => false,
        ));
        i++
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(
        await stat(`/proc/${keeper}`).then(
          () => true,
          () => false,
        ),
        false,
        'the keeper is still running',
      );
    });
  });
});
