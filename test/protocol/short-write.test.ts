/**
 * A write that the kernel completes only partly (the file size limit, or a disk that fills in
 * the middle of a write) must fail the delivery, never store a truncated message. The daemon
 * runs under RLIMIT_FSIZE, so every message file larger than the limit hits a short write.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';

const LIMIT = 60_000;

describe('short writes', () => {
  let dir: string;
  let d: Daemon;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-fsize-'));
    await writeFile(path.join(dir, 'directory.yaml'), 'domains: [example.test]\nusers:\n  alice@example.test: {password: "{PLAIN}x"}\n');
    await writeFile(
      path.join(dir, 'maild.yaml'),
      'hostname: fsize.test\nuser: root\ndata_dir: data\nmail: {root: mail}\nlisteners:\n  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}\ndirectory: {file: {path: directory.yaml}}\nlimits: {message_size: 2M}\n',
    );
    // prlimit (util-linux) sets RLIMIT_FSIZE for the daemon only; node ignores SIGXFSZ, so
    // writes past the limit are short, then fail with EFBIG.
    d = spawnDaemon(['--config', path.join(dir, 'maild.yaml')], { wrapper: ['prlimit', `--fsize=${LIMIT}`, '--'] });
    await d.waitLog((l) => l.msg === 'ready');
  });
  after(async () => {
    d?.kill('SIGTERM');
    await d?.exited;
    await rm(dir, { recursive: true, force: true });
  });

  for (const [name, bodyBytes] of [
    ['a message kept in memory (one write)', 90_000],
    ['a message spooled to disk (many writes)', 400_000],
  ] as const) {
    it(`refuses ${name} that cannot be written whole, and keeps nothing`, async () => {
      const c = await SmtpClient.connect(d.port('mx'));
      await c.greeting();
      await c.command('EHLO fsize.example');
      const res = await c.sendMail(
        's@remote.example',
        ['alice@example.test'],
        simpleMessage(`too big ${bodyBytes}`, `${'f'.repeat(75)}\n`.repeat(Math.ceil(bodyBytes / 76))),
      );
      assert.deepEqual([res.final![0]!.code, res.final![0]!.enhanced], [452, '4.3.1'], res.final![0]!.lines.join(' | '));
      // A message that fits is still delivered whole.
      const ok = await c.sendMail('s@remote.example', ['alice@example.test'], simpleMessage(`fits ${bodyBytes}`, 'small body\n'));
      assert.equal(ok.final![0]!.code, 250);
      await c.quit();
      const maildir = path.join(dir, 'mail/example.test/alice');
      const stored = await Promise.all(
        (await readdir(path.join(maildir, 'new'))).map((f) => readFile(path.join(maildir, 'new', f), 'latin1')),
      );
      assert.ok(!stored.some((m) => m.includes(`too big ${bodyBytes}`)), 'no truncated message in new/');
      assert.ok(stored.some((m) => m.includes(`fits ${bodyBytes}`) && m.endsWith('small body\n')));
      assert.deepEqual(await readdir(path.join(maildir, 'tmp')), [], 'tmp/ is clean');
    });
  }
});
