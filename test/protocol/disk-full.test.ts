/**
 * A full disk during DATA: the client gets 452 4.3.1, nothing is left in new/ or tmp/, and mail
 * flows again once there is space. The mail root is a real 1 MiB tmpfs, so the error is the
 * kernel's ENOSPC, not a simulation (mounting needs root, as CI runs).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { SmtpClient, dotStuff, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

describe('disk full during DATA', () => {
  let mount: string;
  let srv: TestServer;

  before(async () => {
    mount = await mkdtemp(path.join(os.tmpdir(), 'maild-tmpfs-'));
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
    } catch (err) {
      throw new Error(`this test mounts a small tmpfs and needs root (CI runs as root): ${(err as Error).message}`);
    }
    srv = await startTestServer({ mailRoot: path.join(mount, 'mail') });
    await mkdir(path.join(mount, 'mail'), { recursive: true });
  });

  after(async () => {
    await srv?.stop();
    await run('umount', [mount]).catch(() => undefined);
    await rmdir(mount).catch(() => rm(mount, { recursive: true, force: true }));
  });

  async function fill(leaveBytes: number): Promise<string> {
    const { stdout } = await run('df', ['--output=avail', '-B1', mount]);
    const avail = Number(stdout.trim().split('\n')[1]);
    const filler = path.join(mount, 'filler');
    await writeFile(filler, Buffer.alloc(Math.max(0, avail - leaveBytes)));
    return filler;
  }

  it('answers 452 4.3.1 for SMTP and LMTP and leaves nothing behind, then recovers', async () => {
    // Create the Maildirs while there is room, so the failure is the message write itself.
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO full.example');
    assert.equal(
      (await c.sendMail('s@remote.example', ['alice@example.test', 'bob@example.test'], simpleMessage('warm-up'))).final![0]!.code,
      250,
    );
    const filler = await fill(64 * 1024);

    // Larger than what is left, so the write fails in the middle of the message.
    const big = simpleMessage('too big for the disk', `${'d'.repeat(76)}\n`.repeat(4000));
    const res = await c.sendMail('s@remote.example', ['alice@example.test'], big);
    assert.equal(res.final![0]!.code, 452, res.final![0]!.lines.join(' | '));
    assert.equal(res.final![0]!.enhanced, '4.3.1');
    assert.equal((await c.command('NOOP')).code, 250, 'the session goes on');

    const l = await SmtpClient.connect(srv.lmtpPort);
    await l.greeting();
    await l.command('LHLO full.example');
    await l.command('MAIL FROM:<s@remote.example>');
    await l.command('RCPT TO:<alice@example.test>');
    await l.command('RCPT TO:<bob@example.test>');
    assert.equal((await l.command('DATA')).code, 354);
    l.write(`${dotStuff(big)}.\r\n`);
    const replies = [await l.reply(), await l.reply()];
    assert.deepEqual(
      replies.map((r) => [r.code, r.enhanced]),
      [
        [452, '4.3.1'],
        [452, '4.3.1'],
      ],
    );

    for (const user of ['alice', 'bob']) {
      assert.equal((await srv.messages(`example.test/${user}`)).length, 1, `${user}: only the warm-up message`);
      assert.deepEqual(await srv.tmpFiles(`example.test/${user}`), [], `${user}: tmp/ is clean`);
    }
    const failure = srv.logs.find((x) => x.msg === 'delivery failed' && x.status === 'deferred');
    assert.ok(failure, 'a maillog line with status deferred');

    await unlink(filler);
    const again = await c.sendMail('s@remote.example', ['alice@example.test'], big);
    assert.equal(again.final![0]!.code, 250);
    assert.equal((await srv.messages('example.test/alice')).length, 2);
    await c.quit();
    await l.quit();
  });

  it('answers 452 4.3.1 to a submission when the queue cannot write, leaves no spool file, then recovers', async () => {
    const c = await SmtpClient.connect(srv.submissionPort);
    await c.greeting();
    await c.command('EHLO full.example');
    assert.equal((await c.startTls()).code, 220);
    await c.command('EHLO full.example');
    assert.equal((await c.command(`AUTH PLAIN ${Buffer.from('\0alice@example.test\0alice-pw').toString('base64')}`)).code, 235);
    const filler = await fill(64 * 1024);
    const big = `From: alice@example.test\nTo: friend@remote.example\nSubject: too big for the spool\n\n${`${'q'.repeat(76)}\n`.repeat(4000)}`;
    const res = await c.sendMail('alice@example.test', ['friend@remote.example'], big);
    assert.deepEqual([res.final![0]!.code, res.final![0]!.enhanced], [452, '4.3.1'], res.final![0]!.lines.join(' | '));
    const spool = path.join(mount, 'mail', '.queue');
    for (const sub of ['msg', 'env', 'tmp']) assert.deepEqual(await readdir(path.join(spool, sub)), [], `.queue/${sub} is clean`);

    await unlink(filler);
    // The remote side does not exist here: the message waits in the queue, which is what a 250 promises.
    const again = await c.sendMail('alice@example.test', ['friend@remote.example'], big);
    assert.equal(again.final![0]!.code, 250);
    assert.equal((await readdir(path.join(spool, 'env'))).length, 1);
    await c.quit();
  });
});
