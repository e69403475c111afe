/**
 * The Maildir store below the protocols: line ends and sizes, the delivery event, tmp/ cleanup,
 * Maildir++ quota read from a Dovecot-made Maildir, and group-committed directory fsyncs.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { UserRecord } from '../../src/directory/types.js';
import { silentLogger } from '../../src/log.js';
import { DirectorySyncer } from '../../src/store/dir-sync.js';
import { maildirPath, sizeFromName, uniqueBaseName } from '../../src/store/maildir.js';
import { compareMaildirNames } from '../../src/store/dovecot/filename.js';
import { readUsage } from '../../src/store/quota.js';
import { MaildirStore, type DeliveredEvent } from '../../src/store/delivery.js';

const user = (email: string, quotaBytes = 0): UserRecord => ({ email, password: 'x', quotaBytes, enabled: true });

describe('Maildir store', () => {
  let root: string;
  let store: MaildirStore;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'maild-store-'));
    store = new MaildirStore({ root, layout: '%d/%n', logger: silentLogger });
  });
  after(async () => {
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  const deliver = (chunks: Array<string | Buffer>, mailboxes: UserRecord[], maxBytes = 1 << 20) =>
    store.deliver(Readable.from(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c))), {
      queueId: 'QID1',
      sender: 'from@remote.example',
      received: 'Received: from test\n\tby test; Sun, 22 Nov 2026 00:00:00 +0000',
      mailboxes,
      maxBytes,
    });

  it('converts CRLF to LF across chunk boundaries, keeps bare CR and LF, and names the file with S= and W=', async () => {
    const events: DeliveredEvent[] = [];
    const listener = (e: DeliveredEvent) => events.push(e);
    store.events.on('delivered', listener);
    // The CRLF of line 1 is split across chunks; a bare CR and a bare LF stay as they are.
    const outcome = await deliver(['Subject: split\r', '\n\r\nline with bare CR\r here\r\nbare LF\nend\r\n'], [user('alice@example.test')]);
    store.events.off('delivered', listener);
    const result = outcome.results[0]!;
    assert.ok(result.ok);
    const text = await readFile(result.file, 'latin1');
    assert.equal(text.slice(text.indexOf('Subject:')), 'Subject: split\n\nline with bare CR\r here\nbare LF\nend\n');
    const size = Buffer.byteLength(text, 'latin1');
    const lineFeeds = text.split('\n').length - 1;
    assert.equal(sizeFromName(path.basename(result.file)), size);
    assert.match(path.basename(result.file), new RegExp(`,S=${size},W=${size + lineFeeds}$`));
    assert.equal(events.length, 1, 'one delivered event');
    assert.equal(events[0]!.mailbox, 'alice@example.test');
    assert.equal(events[0]!.folder, 'INBOX');
    assert.equal(path.join(events[0]!.maildir, 'new', events[0]!.file), result.file);
  });

  it('converts line ends exactly like a whole-message replace, however the input is chunked', async () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const alphabet = ['\r', '\n', '\r\n', 'a', 'b', '.', ' '];
    for (let round = 0; round < 40; round++) {
      const parts = Array.from({ length: 1 + Math.floor(random() * 300) }, () => alphabet[Math.floor(random() * alphabet.length)]!);
      const input = Buffer.from(`Subject: r${round}\r\n\r\n${parts.join('')}`, 'latin1');
      const chunks: Buffer[] = [];
      for (let at = 0; at < input.length;) {
        const size = 1 + Math.floor(random() * 7);
        chunks.push(input.subarray(at, at + size));
        at += size;
      }
      const outcome = await deliver(chunks, [user('erin@example.test')]);
      const result = outcome.results[0]!;
      assert.ok(result.ok);
      const stored = await readFile(result.file, 'latin1');
      const expected = input.toString('latin1').replaceAll('\r\n', '\n');
      assert.equal(stored.slice(stored.indexOf(`Subject: r${round}`)), expected, `round ${round}`);
      const size = Buffer.byteLength(stored, 'latin1');
      assert.match(path.basename(result.file), new RegExp(`,S=${size},W=${size + stored.split('\n').length - 1}$`));
    }
  });

  it('spools a large message to disk and copies it for every further mailbox with its own headers', async () => {
    const body = `${'b'.repeat(998)}\r\n`.repeat(400); // ~400 KB: past the in-memory limit
    const outcome = await deliver(
      ['Subject: big\r\n\r\n', body],
      [user('alice@example.test'), user('bob@example.test'), user('carol@example.test')],
    );
    for (const r of outcome.results) {
      assert.ok(r.ok, `${r.mailbox.email} delivered`);
      const text = await readFile(r.file, 'latin1');
      assert.ok(text.startsWith(`Return-Path: <from@remote.example>\nDelivered-To: ${r.mailbox.email}\n`));
      assert.ok(text.endsWith(`${'b'.repeat(998)}\n`));
      assert.equal(text.length, text.indexOf('Subject: big') + 'Subject: big\n\n'.length + 999 * 400);
    }
    for (const u of ['alice', 'bob', 'carol']) assert.deepEqual(await readdir(path.join(root, 'example.test', u, 'tmp')), []);
  });

  it('refuses a message over maxBytes and keeps nothing', async () => {
    const before = (await readdir(path.join(root, 'example.test/alice/new'))).length;
    await assert.rejects(deliver(['Subject: x\r\n\r\n', 'y'.repeat(5000)], [user('alice@example.test')], 1000), /more than 1000 bytes/);
    assert.equal((await readdir(path.join(root, 'example.test/alice/new'))).length, before);
  });

  it('is all or nothing when asked: one mailbox over quota stops every copy', async () => {
    const tiny = user('tiny@example.test', 100);
    const before = (await readdir(path.join(root, 'example.test/alice/new'))).length;
    await assert.rejects(
      store.deliver(Readable.from([Buffer.from('Subject: q\r\n\r\n' + 'z'.repeat(500) + '\r\n')]), {
        queueId: 'Q',
        sender: '',
        received: 'Received: x',
        mailboxes: [user('alice@example.test'), tiny],
        maxBytes: 1 << 20,
        atomic: true,
      }),
      (err: Error & { code?: string }) => err.code === 'QUOTA_EXCEEDED',
    );
    assert.equal((await readdir(path.join(root, 'example.test/alice/new'))).length, before);
    assert.deepEqual(await readdir(path.join(root, 'example.test/alice/tmp')), []);
  });

  it('removes files older than 36 hours from tmp/, and only those', async () => {
    const maildir = path.join(root, 'example.test/alice');
    const old = path.join(maildir, 'tmp', '1700000000.M1P1.host');
    const fresh = path.join(maildir, 'tmp', '1700000001.M1P1.host');
    await writeFile(old, 'left by a crash');
    await writeFile(fresh, 'being delivered');
    const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000);
    await utimes(old, hoursAgo(37), hoursAgo(37));
    await utimes(fresh, hoursAgo(35), hoursAgo(35));
    assert.equal(await store.cleanTmp(maildir), 1);
    assert.deepEqual(await readdir(path.join(maildir, 'tmp')), ['1700000001.M1P1.host']);
  });

  it("reads a Dovecot Maildir's usage from its S= names and keeps maildirsize current", async () => {
    // A Maildir as Dovecot leaves it: INBOX and a Maildir++ folder, sizes in the names.
    const maildir = path.join(root, 'example.test/dave');
    for (const sub of ['cur', 'new', 'tmp', '.Sent/cur', '.Sent/new', '.Sent/tmp'])
      await mkdir(path.join(maildir, sub), { recursive: true });
    await writeFile(path.join(maildir, 'cur', '1600000000.M1P2.host,S=1000,W=1020:2,S'), 'x');
    await writeFile(path.join(maildir, '.Sent/cur', '1600000001.M1P2.host,S=2500,W=2560:2,S'), 'x');
    await writeFile(path.join(maildir, 'new', 'no-size-in-name'), 'y'.repeat(300));
    assert.deepEqual(await readUsage(maildir, 10_000), { bytes: 3800, messages: 3 });
    assert.equal(await readFile(path.join(maildir, 'maildirsize'), 'latin1'), '10000S\n3800 3\n');

    const dave = user('dave@example.test', 10_000);
    await store.checkQuota(dave);
    const outcome = await deliver(['Subject: q\r\n\r\nbody\r\n'], [dave]);
    assert.ok(outcome.results[0]!.ok);
    const usage = await readUsage(maildir, 10_000);
    assert.equal(usage.messages, 4);
    assert.ok(usage.bytes > 3800);
    await assert.rejects(store.checkQuota(dave, 7000), (e: Error & { code?: string }) => e.code === 'QUOTA_EXCEEDED');
    await assert.rejects(store.checkQuota(user('dave@example.test', 3000)), (e: Error & { code?: string }) => e.code === 'QUOTA_FULL');
  });

  it('builds Maildir paths from the layout or the record, and never outside the root', () => {
    assert.equal(maildirPath('/var/mail/vhosts', '%d/%n', user('bob@example.com')), '/var/mail/vhosts/example.com/bob');
    assert.equal(maildirPath('/m', '%d/%u/Maildir', user('bob@example.com')), '/m/example.com/bob@example.com/Maildir');
    assert.equal(maildirPath('/m', '%d/%n', { ...user('bob@example.com'), maildir: 'example.com/bob/' }), '/m/example.com/bob');
    assert.throws(() => maildirPath('/m', '%d/%n', { ...user('bob@example.com'), maildir: '../etc' }), /outside the mail root/);
    assert.throws(() => maildirPath('/m', '%d/%n', user('../x@example.com')), /cannot be a path/);
  });
});

describe('directory fsync group commit', () => {
  it('covers concurrent callers for one directory with fewer fsyncs than callers', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-sync-'));
    const syncer = new DirectorySyncer();
    try {
      await Promise.all(Array.from({ length: 50 }, () => syncer.sync(dir)));
      assert.ok(syncer.syncCount >= 1 && syncer.syncCount <= 2, `50 concurrent callers took ${syncer.syncCount} fsyncs`);
      const before = syncer.syncCount;
      await syncer.sync(dir);
      assert.equal(syncer.syncCount, before + 1, 'a later caller gets its own fsync');
      await assert.rejects(syncer.sync(path.join(dir, 'missing')), /ENOENT/);
    } finally {
      await syncer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('unique names', () => {
  it("sort in the order they were made by Dovecot's rule (seconds, then microseconds), so UIDs follow delivery order", () => {
    const made: string[] = [];
    for (let i = 0; i < 5000; i++) made.push(uniqueBaseName());
    assert.equal(new Set(made).size, made.length, 'unique');
    assert.deepEqual([...made].sort(compareMaildirNames), made);
    for (const name of made) assert.match(name, /^\d+\.M\d{1,6}P\d+Q\d+\./);
  });
});
