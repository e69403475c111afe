/**
 * When a folder's cur/ and new/ are listed again (src/store/mail/folder-scan.ts): not while their
 * mtimes stay as recorded, once more after the slack when the last listing was close to a change,
 * not for changes the mailbox made itself, and always for another process's change.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/log.js';
import { DirectorySyncer } from '../../src/store/dir-sync.js';
import { FolderScanner } from '../../src/store/mail/folder-scan.js';
import { Mailbox } from '../../src/store/mail/mailbox.js';
import { FLAG_SEEN } from '../../src/store/mail/types.js';

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
    const mailbox = await Mailbox.open(dir, 'INBOX', { logger: silentLogger, syncer, root: dir }, true);
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
