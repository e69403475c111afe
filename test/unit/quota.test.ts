/**
 * Maildir++ quota in the store (store/quota.ts): checking and recording through MaildirQuota,
 * the mailbox operations that use it (append, copy, move, expunge), how a damaged maildirsize is
 * treated (rebuilt from the message names, as Maildir++ says, or a STORAGE_ERROR when it cannot
 * be read), and failures that surface as typed errors or log lines instead of vanishing.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { UserRecord } from '../../src/directory/types.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { DirectorySyncer } from '../../src/store/dir-sync.js';
import { MailService, type Account } from '../../src/store/mail/service.js';
import { FLAG_SEEN } from '../../src/store/mail/types.js';
import { MaildirQuota, readUsage } from '../../src/store/quota.js';

const user = (email: string, quotaBytes: number): UserRecord => ({ email, password: 'x', quotaBytes, enabled: true });
const isCode = (code: string) => (err: Error & { code?: string }) => err.code === code;

/** A Maildir with cur/ new/ tmp/ and the given messages in cur/ (name, content). */
async function maildirWith(dir: string, files: Array<[string, string]> = []): Promise<string> {
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(dir, sub), { recursive: true });
  for (const [name, content] of files) await writeFile(path.join(dir, 'cur', name), content);
  return dir;
}

/** A logger whose lines land in `lines`. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('warn', sink), lines };
}

describe('MaildirQuota', () => {
  let root: string;
  let n = 0;
  const fresh = () => path.join(root, `m${++n}`);
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'maild-quota-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads usage from the S= names, checks against the limit and records changes as Maildir++ lines', async () => {
    const dir = await maildirWith(fresh(), [['1600000000.M1P2.host,S=600,W=620:2,S', 'x']]);
    const quota = new MaildirQuota(dir, 1000, 'q@example.test');
    assert.deepEqual(await quota.usage(), { bytes: 600, messages: 1 });
    await quota.check(400); // exactly at the limit is allowed
    await assert.rejects(quota.check(401), isCode('QUOTA_EXCEEDED'));
    await quota.checkRoom(400);
    await assert.rejects(quota.checkRoom(401), isCode('QUOTA_EXCEEDED'), 'a declared size that does not fit');
    await quota.record(400, 1);
    await assert.rejects(quota.checkRoom(), isCode('QUOTA_FULL'), 'at the limit: full');
    await quota.record(-600, -1);
    assert.equal(await readFile(path.join(dir, 'maildirsize'), 'latin1'), '1000S\n600 1\n400 1\n-600 -1\n');
    assert.deepEqual(await quota.usage(), { bytes: 400, messages: 1 });
  });

  it('neither reads nor writes maildirsize for an unlimited mailbox', async () => {
    const dir = await maildirWith(fresh(), [['1600000000.M1P2.host,S=600,W=620:2,S', 'x']]);
    const quota = new MaildirQuota(dir, 0, 'q@example.test');
    assert.deepEqual(await quota.usage(), { bytes: 0, messages: 0 });
    await quota.check(1 << 30);
    await quota.checkRoom(1 << 30);
    await quota.record(100, 1);
    assert.ok(!(await readdir(dir)).includes('maildirsize'));
  });

  it('rebuilds maildirsize when its limit line differs, when it grew past 5120 bytes, or when it is missing', async () => {
    const dir = await maildirWith(fresh(), [
      ['1600000000.M1P2.host,S=100,W=102:2,', 'x'],
      ['1600000001.M1P2.host,S=200,W=204:2,S', 'x'],
    ]);
    const file = path.join(dir, 'maildirsize');
    const quota = new MaildirQuota(dir, 5000, 'q@example.test');
    // Another limit (the directory changed it): the deltas below it no longer count.
    await writeFile(file, '9999S\n123456 7\n');
    assert.deepEqual(await quota.usage(), { bytes: 300, messages: 2 });
    assert.equal(await readFile(file, 'latin1'), '5000S\n300 2\n');
    // Too long: Maildir++ readers recalculate instead of adding up thousands of lines.
    await writeFile(file, `5000S\n${'1 0\n'.repeat(2000)}`);
    assert.deepEqual(await quota.usage(), { bytes: 300, messages: 2 });
    assert.equal(await readFile(file, 'latin1'), '5000S\n300 2\n');
    await rm(file);
    await quota.record(50, 1); // a record without a file rebuilds it from the names
    assert.equal(await readFile(file, 'latin1'), '5000S\n300 2\n');
  });

  it('skips lines it cannot parse and never reports less than nothing', async () => {
    const dir = await maildirWith(fresh());
    const file = path.join(dir, 'maildirsize');
    const quota = new MaildirQuota(dir, 5000, 'q@example.test');
    await writeFile(file, '5000S\n100 1\ngarbage\n 20  1 \n\n');
    assert.deepEqual(await quota.usage(), { bytes: 120, messages: 2 });
    await writeFile(file, '5000S\n100 1\n-500 -3\n');
    assert.deepEqual(await quota.usage(), { bytes: 0, messages: 0 });
  });

  it('turns a maildirsize it cannot read or write into STORAGE_ERROR', async () => {
    const dir = await maildirWith(fresh());
    // A directory in its place: reading and appending fail (EISDIR) whoever runs the test.
    await mkdir(path.join(dir, 'maildirsize'));
    const quota = new MaildirQuota(dir, 5000, 'q@example.test');
    await assert.rejects(
      quota.usage(),
      (err: Error & { code?: string }) => err.code === 'STORAGE_ERROR' && /q@example\.test: EISDIR/.test(err.message),
    );
    await assert.rejects(quota.check(1), isCode('STORAGE_ERROR'));
    await assert.rejects(quota.checkRoom(), isCode('STORAGE_ERROR'));
    await assert.rejects(quota.record(1, 1), isCode('STORAGE_ERROR'));
    // A rebuild that cannot write its file (tmp/ is not a directory) fails the same way.
    const badTmp = fresh();
    await mkdir(badTmp);
    await writeFile(path.join(badTmp, 'tmp'), '');
    await assert.rejects(new MaildirQuota(badTmp, 5000, 'q@example.test').usage(), isCode('STORAGE_ERROR'));
  });

  it('rebuilds maildirsize in a Maildir that has no tmp/ yet (a home with only Sieve scripts), creating it', async () => {
    const home = fresh();
    await mkdir(path.join(home, 'sieve'), { recursive: true });
    const quota = new MaildirQuota(home, 5000, 'q@example.test');
    assert.deepEqual(await quota.usage(), { bytes: 0, messages: 0 });
    await quota.checkRoom(100);
    assert.match(await readFile(path.join(home, 'maildirsize'), 'latin1'), /^5000S\n0 0\n$/);
  });

  it('logs a change it could not record once the change is on disk, and does not throw', async () => {
    const dir = await maildirWith(fresh());
    await mkdir(path.join(dir, 'maildirsize'));
    const { logger, lines } = capturingLogger();
    await new MaildirQuota(dir, 5000, 'q@example.test').recordDone(100, 1, logger);
    const warned = lines.find((l) => l.msg === 'could not update maildirsize');
    assert.ok(warned, 'a warning');
    assert.match(String(warned.err), /EISDIR/);
    assert.equal(warned.maildir, dir);
  });
});

describe('mailbox operations keep maildirsize', () => {
  let root: string;
  let service: MailService;
  const syncer = new DirectorySyncer();
  let account: Account;
  let maildir: string;
  const sizeFile = () => readFile(path.join(maildir, 'maildirsize'), 'latin1');
  /** Usage as maildirsize adds it up, and as a rebuild from the file names finds it. */
  const bothUsages = async () => {
    const kept = await readUsage(maildir, 10_000);
    await rm(path.join(maildir, 'maildirsize'));
    return { kept, rebuilt: await readUsage(maildir, 10_000) };
  };

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'maild-quota-ops-'));
    service = new MailService({ root, layout: '%d/%n', logger: silentLogger, syncer, specialFolders: {} });
    account = await service.account(user('q@example.test', 10_000));
    maildir = account.maildir;
    await account.with('INBOX', async () => undefined);
    await account.create('Archive');
  });
  after(async () => {
    await syncer.close();
    await rm(root, { recursive: true, force: true });
  });

  it('append records the stored size: what a rebuild from the names finds', async () => {
    // CRLF on the wire, LF on disk: 3 line ends fewer.
    const uid = await account.with('INBOX', (m) => m.append(Buffer.from('Subject: a\r\n\r\nbody\r\n'), FLAG_SEEN, []));
    assert.ok(uid > 0);
    assert.equal(await sizeFile(), '10000S\n0 0\n17 1\n');
    const { kept, rebuilt } = await bothUsages();
    assert.deepEqual(kept, rebuilt);
  });

  it('append over quota is QUOTA_EXCEEDED and leaves no file behind', async () => {
    const before = await readdir(path.join(maildir, 'cur'));
    await assert.rejects(
      account.with('INBOX', (m) => m.append(Buffer.alloc(10_000, 0x78), 0, [])),
      isCode('QUOTA_EXCEEDED'),
    );
    assert.deepEqual(await readdir(path.join(maildir, 'cur')), before);
    assert.deepEqual(await readdir(path.join(maildir, 'tmp')), []);
  });

  it('a copy is checked and counted, a move within the Maildir is not, an expunge takes off what it removed', async () => {
    const sizes = await account.with('INBOX', async (inbox) => {
      await inbox.append(Buffer.from('Subject: b\n\n' + 'y'.repeat(4000) + '\n'), 0, []);
      return inbox.uids.map((uid) => inbox.record(uid)!.size);
    });
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.deepEqual((await bothUsages()).kept, { bytes: total, messages: 2 });

    await account.with('INBOX', (inbox) =>
      account.with('Archive', async (archive) => {
        assert.equal((await inbox.transfer(archive, [...inbox.uids], false)).length, 2);
        assert.deepEqual(await readUsage(maildir, 10_000), { bytes: 2 * total, messages: 4 });
        await inbox.transfer(archive, [inbox.uids[0]!], true);
        assert.deepEqual(await readUsage(maildir, 10_000), { bytes: 2 * total, messages: 4 }, 'a move changes nothing');
        // Three more copies would not fit: refused before anything is copied.
        await assert.rejects(archive.transfer(inbox, [...archive.uids], false), isCode('QUOTA_EXCEEDED'));
        assert.equal(inbox.uids.length, 1);
        const doomed = [...archive.uids];
        assert.equal((await archive.expunge([...doomed, 999_999])).length, 3, 'an unknown UID is not counted');
      }),
    );
    const { kept, rebuilt } = await bothUsages();
    assert.deepEqual(kept, rebuilt);
    assert.equal(kept.messages, 1);
  });

  it('an unreadable maildirsize refuses the append as STORAGE_ERROR and stores nothing', async () => {
    await rm(path.join(maildir, 'maildirsize'), { force: true });
    await mkdir(path.join(maildir, 'maildirsize'));
    try {
      const before = await readdir(path.join(maildir, 'cur'));
      await assert.rejects(
        account.with('INBOX', (m) => m.append(Buffer.from('Subject: c\n\nc\n'), 0, [])),
        isCode('STORAGE_ERROR'),
      );
      assert.deepEqual(await readdir(path.join(maildir, 'cur')), before);
      await assert.rejects(account.quota(), isCode('STORAGE_ERROR'), 'GETQUOTA sees it too');
    } finally {
      await rm(path.join(maildir, 'maildirsize'), { recursive: true });
    }
  });
});
