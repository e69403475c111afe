/**
 * The mailbox's disk work. When a folder's cur/ and new/ are listed again
 * (src/store/mail/folder-scan.ts): not while their mtimes stay as recorded, once more after the
 * slack when the last listing was close to a change, not for changes the mailbox made itself, and
 * always for another process's change. Reading a small message whole (fsio.readExpected,
 * Mailbox.readSmall), and the fallback to streaming when the file is larger than its name says.
 * Appending to dovecot-uidlist without reading it again, unless another process changed it.
 * Making the Maildir once per process for LIST; FETCH FLAGS text from its table.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/log.js';
import { DirectorySyncer } from '../../src/store/dir-sync.js';
import { readExpected, readExpectedNow } from '../../src/store/fsio.js';
import { FolderScanner } from '../../src/store/mail/folder-scan.js';
import { FolderUids } from '../../src/store/mail/folder-uids.js';
import { Mailbox } from '../../src/store/mail/mailbox.js';
import { FLAG_SEEN, SYSTEM_FLAGS, type MessageRecord } from '../../src/store/mail/types.js';
import { MailService } from '../../src/store/mail/service.js';
import { flagList } from '../../src/imap/selected.js';

const SLACK = 80;
let root: string;
let counter = 0;

async function folder(): Promise<string> {
  const dir = path.join(root, `f${counter++}`);
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(dir, sub), { recursive: true });
  return dir;
}

const external = (dir: string, name: string) => writeFile(path.join(dir, 'cur', name), 'Subject: x\n\nbody\n');

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'maild-scan-'));
});
after(() => rm(root, { recursive: true, force: true }));

describe('FolderScanner', () => {
  it('lists once, then again only after the slack when the listing was close to a change', async () => {
    const dir = await folder();
    const scanner = new FolderScanner(dir, 'INBOX', { slackMs: SLACK });
    assert.ok(await scanner.scan(false));
    assert.equal(await scanner.scan(false), null, 'unchanged and within the slack: trusted');
    assert.equal(scanner.listings, 1);
    await sleep(SLACK + 20);
    assert.ok(await scanner.scan(false), 'the delayed check lists once');
    assert.equal(await scanner.scan(false), null, 'no longer close to a change');
    await sleep(SLACK + 20);
    assert.equal(await scanner.scan(false), null, 'and no further delayed check is due');
    assert.equal(scanner.listings, 2);
    assert.ok(await scanner.scan(true), 'force lists');
  });

  it("lists after another process's change, at once", async () => {
    const dir = await folder();
    const scanner = new FolderScanner(dir, 'INBOX', { slackMs: SLACK });
    await scanner.scan(false);
    await external(dir, '1.M1P1.host:2,');
    const found = await scanner.scan(false);
    assert.ok(found?.has('1.M1P1.host'));
  });

  it('adopts the mtimes its own changes leave, and checks them once after the slack', async () => {
    const dir = await folder();
    const scanner = new FolderScanner(dir, 'INBOX', { slackMs: SLACK });
    await scanner.scan(false);
    await sleep(SLACK + 20);
    await scanner.scan(false);
    const listed = scanner.listings;
    await scanner.own(['cur'], () => external(dir, '2.M2P2.host:2,'));
    assert.equal(await scanner.scan(false), null, 'own change: no listing');
    assert.equal(scanner.listings, listed);
    await sleep(SLACK + 20);
    assert.ok((await scanner.scan(false))?.has('2.M2P2.host'), 'the delayed check after an own change');
  });

  it("does not adopt an own change's mtime when another process changed the folder first", async () => {
    const dir = await folder();
    const scanner = new FolderScanner(dir, 'INBOX', { slackMs: 10_000 });
    await scanner.scan(false);
    await external(dir, '3.M3P3.host:2,');
    await scanner.own(['cur'], () => external(dir, '4.M4P4.host:2,'));
    const found = await scanner.scan(false);
    assert.ok(found?.has('3.M3P3.host') && found.has('4.M4P4.host'));
  });

  it('lists after an own change that failed half way', async () => {
    const dir = await folder();
    const scanner = new FolderScanner(dir, 'INBOX', { slackMs: 10_000 });
    await scanner.scan(false);
    await assert.rejects(
      scanner.own(['cur'], async () => {
        await external(dir, '5.M5P5.host:2,');
        throw new Error('disk full');
      }),
    );
    assert.ok((await scanner.scan(false))?.has('5.M5P5.host'));
  });

  it('MAILBOX_NOT_FOUND once the folder is gone', async () => {
    const dir = await folder();
    const scanner = new FolderScanner(dir, 'Gone', { slackMs: SLACK });
    await scanner.scan(false);
    await rm(dir, { recursive: true });
    await assert.rejects(scanner.scan(false), { code: 'MAILBOX_NOT_FOUND' });
  });
});

describe('Mailbox sync after its own changes', () => {
  it('append, store and expunge need no listing; a rename by another process shows at the next sync', async () => {
    const dir = await folder();
    const syncer = new DirectorySyncer();
    const mailbox = await Mailbox.open(dir, 'INBOX', { logger: silentLogger, syncer, root: dir, blockingReads: true }, true);
    const listed = mailbox.listings;
    const uids: number[] = [];
    for (let i = 0; i < 5; i++) uids.push(await mailbox.append(Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`), 0, []));
    assert.equal(await mailbox.sync(), null);
    await mailbox.store(uids.slice(0, 2), 'add', FLAG_SEEN, []);
    assert.equal(await mailbox.sync(), null);
    assert.deepEqual(await mailbox.expunge([uids[4]!]), [uids[4]]);
    assert.equal(await mailbox.sync(), null);
    assert.equal(mailbox.listings, listed, 'no listing for changes the mailbox made itself');
    assert.equal(mailbox.count, 4);

    // Another process sets \Seen on the third message (Maildir info "S").
    const file = (await readdir(path.join(dir, 'cur'))).find((n) => n.startsWith(mailbox.record(uids[2]!)!.base))!;
    await rename(path.join(dir, 'cur', file), path.join(dir, 'cur', `${file.split(':')[0]}:2,S`));
    const change = await mailbox.sync();
    assert.deepEqual(change?.flagged, [uids[2]]);
    assert.ok(mailbox.record(uids[2]!)!.flags & FLAG_SEEN);
    // And removes the fourth.
    const fourth = (await readdir(path.join(dir, 'cur'))).find((n) => n.startsWith(mailbox.record(uids[3]!)!.base))!;
    await rm(path.join(dir, 'cur', fourth));
    assert.deepEqual((await mailbox.sync())?.expunged, [uids[3]]);
  });
});

for (const [label, read, blockingReads] of [
  ['through the thread pool', readExpected, false],
  ['with blocking calls', readExpectedNow, true],
] as const) {
  describe(`reading a small message whole, ${label}`, () => {
    it('reads a file of the expected size whole, a shorter one as it is, and refuses a longer one', async () => {
      const dir = await folder();
      const file = path.join(dir, 'tmp', 'm');
      await writeFile(file, 'x'.repeat(1000));
      assert.equal((await read(file, 1000))?.toString(), 'x'.repeat(1000));
      assert.equal((await read(file, 1500))?.length, 1000);
      assert.equal(await read(file, 999), null);
      await writeFile(file, '');
      assert.equal((await read(file, 0))?.length, 0);
      await assert.rejects(read(path.join(dir, 'tmp', 'none'), 10), { code: 'ENOENT' });
    });

    it('gives null for a message larger than its S= says or than the limit, so the caller streams it', async () => {
      const dir = await folder();
      const body = 'Subject: lies\n\n' + 'y'.repeat(500) + '\n';
      await writeFile(path.join(dir, 'cur', `1700000000.M1P1.host,S=20,W=22:2,`), body);
      await writeFile(path.join(dir, 'cur', `1700000001.M2P1.host,S=${body.length}:2,`), body);
      const mailbox = await Mailbox.open(dir, 'INBOX', { logger: silentLogger, syncer: new DirectorySyncer(), root: dir, blockingReads });
      const [lying, honest] = mailbox.uids;
      assert.equal(await mailbox.readSmall(lying!, 4096), null);
      assert.equal((await mailbox.read(lying!)).toString(), body, 'read() falls back to reading the whole file');
      assert.equal((await mailbox.readSmall(honest!, 4096))?.toString(), body);
      assert.equal(await mailbox.readSmall(honest!, 100), null);
      await rm(path.join(dir, 'cur', `1700000001.M2P1.host,S=${body.length}:2,`));
      await assert.rejects(mailbox.readSmall(honest!, 4096), { code: 'EXPUNGED' });
    });
  });
}

describe('FolderUids: appending to dovecot-uidlist without reading it again', () => {
  const logger = silentLogger;
  const uidlistOf = (dir: string) => readFile(path.join(dir, 'dovecot-uidlist'), 'utf8');

  it('numbers on after its own appends, and sees records another process appended or a file it rewrote', async () => {
    const dir = await folder();
    const uids = new FolderUids(dir, { root: dir, logger });
    await uids.assign(['1700000001.M1P1.a', '1700000002.M2P1.a']);
    await uids.assign(['1700000003.M3P1.a']); // appended at the end of what it wrote
    assert.deepEqual(
      ['1700000001.M1P1.a', '1700000002.M2P1.a', '1700000003.M3P1.a'].map((b) => uids.uidOf(b)),
      [1, 2, 3],
    );
    // Another process (Dovecot) appends UID 4 under the lock: same inode, another size.
    await appendFile(path.join(dir, 'dovecot-uidlist'), '4 :1700000004.M4P1.dovecot\n');
    await uids.assign(['1700000005.M5P1.a']);
    assert.equal(uids.uidOf('1700000004.M4P1.dovecot'), 4, "the other process's record is read");
    assert.equal(uids.uidOf('1700000005.M5P1.a'), 5);
    // Another process rewrites the file to the same size (a new inode): read again too.
    const text = await uidlistOf(dir);
    const rewritten = text.replace(':1700000001.M1P1.a', ':1700000001.M1P1.b');
    assert.equal(rewritten.length, text.length);
    await writeFile(path.join(dir, 'dovecot-uidlist.tmp'), rewritten);
    await rename(path.join(dir, 'dovecot-uidlist.tmp'), path.join(dir, 'dovecot-uidlist'));
    await uids.assign(['1700000006.M6P1.a']);
    assert.equal(uids.uidOf('1700000001.M1P1.b'), 1);
    assert.equal(uids.uidOf('1700000006.M6P1.a'), 6);
    // What Dovecot reads: every record once, in order, after the header it wrote.
    const lines = (await uidlistOf(dir)).trimEnd().split('\n');
    assert.match(lines[0]!, /^3 V\d+ N\d+ G[0-9a-f]{32}$/);
    assert.deepEqual(
      lines.slice(1).map((l) => Number(l.split(' ')[0])),
      [1, 2, 3, 4, 5, 6],
    );
  });

  it('a partial last line (a writer that crashed) is cut off before the next append', async () => {
    const dir = await folder();
    const uids = new FolderUids(dir, { root: dir, logger });
    await uids.assign(['1700000001.M1P1.a']);
    await appendFile(path.join(dir, 'dovecot-uidlist'), '2 :17000000');
    await uids.assign(['1700000003.M3P1.a']);
    const lines = (await uidlistOf(dir)).trimEnd().split('\n');
    assert.deepEqual(lines.slice(1), ['1 :1700000001.M1P1.a', '2 :1700000003.M3P1.a']);
  });
});

describe('Account.list', () => {
  it('makes the Maildir once, and again when it was removed while the process ran', async () => {
    const root = await folder();
    const service = new MailService({ root, layout: '%d/%n', logger: silentLogger, syncer: new DirectorySyncer(), specialFolders: {} });
    const account = await service.account({ email: 'l@example.test', password: 'x', quotaBytes: 0, enabled: true });
    assert.deepEqual(
      (await account.list()).map((f) => f.name),
      ['INBOX'],
    );
    assert.ok((await stat(path.join(account.maildir, 'cur'))).isDirectory());
    await rm(account.maildir, { recursive: true });
    assert.deepEqual(
      (await account.list()).map((f) => f.name),
      ['INBOX'],
    );
    for (const sub of ['cur', 'new', 'tmp']) assert.ok((await stat(path.join(account.maildir, sub))).isDirectory(), sub);
  });
});

describe('flagList', () => {
  it('gives the same text from its table as built flag by flag', () => {
    for (let flags = 0; flags < 32; flags++) {
      const expected = `(${SYSTEM_FLAGS.filter(([bit]) => flags & bit)
        .map(([, name]) => name)
        .join(' ')})`;
      const rec = { flags, keywords: [] as string[] } as unknown as MessageRecord;
      assert.equal(flagList(rec), expected);
      assert.equal(flagList(rec), expected, 'again, from the table');
      assert.equal(flagList(rec, true), expected === '()' ? '(\\Recent)' : `${expected.slice(0, -1)} \\Recent)`);
      assert.equal(flagList({ ...rec, keywords: ['$Junk'] }), expected === '()' ? '($Junk)' : `${expected.slice(0, -1)} $Junk)`);
    }
  });
});
