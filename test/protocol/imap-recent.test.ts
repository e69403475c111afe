/**
 * \Recent over the wire, as RFC 3501 section 2.3.2 and Dovecot have it: a message is recent in
 * exactly one session, the first that SELECTs its mailbox (or has it selected when it arrives);
 * EXAMINE and STATUS look without claiming; RECENT never exceeds EXISTS; COPY, MOVE and APPEND
 * make recent messages for the next session; the claim survives a restart. And FETCH of
 * messages another session expunged (RFC 2180 section 4.1): answered OK from what is left.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn, type ImapTestClient } from '../helpers/imap-client.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const DIRECTORY = `
domains: [example.test]
users:
  rita@example.test: { password: "{PLAIN}pw" }
  ivan@example.test: { password: "{PLAIN}pw" }
  cora@example.test: { password: "{PLAIN}pw" }
  xena@example.test: { password: "{PLAIN}pw" }
  lena@example.test: { password: "{PLAIN}pw" }
  otto@example.test: { password: "{PLAIN}pw" }
  pete@example.test: { password: "{PLAIN}pw" }
`;

const session = (srv: TestServer, user: string) => loggedIn(srv, `${user}@example.test`, 'pw');

/** The number of an untagged `n NAME` line, e.g. count(sel, 'RECENT'). */
function count(untagged: string[], name: string): number | undefined {
  const line = untagged.find((l) => new RegExp(`^\\d+ ${name}$`).test(l));
  return line === undefined ? undefined : Number(line.split(' ')[0]);
}

/** FLAGS of each FETCH response, by sequence number. */
function flagsBySeq(untagged: string[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const l of untagged) {
    const m = /^(\d+) FETCH \(.*FLAGS \(([^)]*)\)/.exec(l);
    if (m) out.set(Number(m[1]), m[2]!);
  }
  return out;
}

async function deliver(srv: TestServer, to: string, subjects: string[]): Promise<void> {
  const smtp = await SmtpClient.connect(srv.smtpPort);
  await smtp.greeting();
  await smtp.command('EHLO recent.test');
  for (const s of subjects) assert.equal((await smtp.sendMail('sender@remote.example', [to], simpleMessage(s))).final![0]!.code, 250);
  await smtp.quit();
}

const MESSAGE = (subject: string) => `From: a@remote.example\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`;
const append = (c: ImapTestClient, box: string, subject: string, flags = '') =>
  c.cmd(`APPEND ${box} ${flags ? `(${flags}) ` : ''}{${MESSAGE(subject).length}+}\r\n${MESSAGE(subject)}`);

describe('IMAP \\Recent', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ directory: DIRECTORY });
  });
  after(async () => {
    await srv.stop();
  });

  it('gives delivered mail to the first SELECT; EXAMINE and STATUS only look; SEARCH RECENT, NEW and OLD follow', async () => {
    await deliver(srv, 'rita@example.test', ['one', 'two']);
    const a = await session(srv, 'rita');
    const st = await a.cmd('STATUS INBOX (MESSAGES RECENT UNSEEN)');
    assert.deepEqual(st.untagged, ['STATUS "INBOX" (MESSAGES 2 RECENT 2 UNSEEN 2)']);

    // EXAMINE shows them as recent and leaves them so (RFC 3501 section 6.3.2).
    const ex = await a.cmd('EXAMINE INBOX');
    assert.equal(count(ex.untagged, 'RECENT'), 2, ex.untagged.join('\n'));
    assert.deepEqual([...flagsBySeq((await a.cmd('FETCH 1:* FLAGS')).untagged).values()], ['\\Recent', '\\Recent']);
    assert.deepEqual((await a.cmd('SEARCH RECENT')).untagged, ['SEARCH 1 2']);
    assert.deepEqual((await a.cmd('STATUS INBOX (RECENT)')).untagged, ['STATUS "INBOX" (RECENT 2)']);

    // The first SELECT claims them.
    const b = await session(srv, 'rita');
    const sel = await b.cmd('SELECT INBOX');
    assert.equal(count(sel.untagged, 'EXISTS'), 2);
    assert.equal(count(sel.untagged, 'RECENT'), 2);
    assert.deepEqual([...flagsBySeq((await b.cmd('FETCH 1:* (FLAGS)')).untagged).values()], ['\\Recent', '\\Recent']);
    await b.cmd('STORE 1 +FLAGS.SILENT (\\Seen)');
    assert.deepEqual((await b.cmd('SEARCH RECENT')).untagged, ['SEARCH 1 2']);
    assert.deepEqual((await b.cmd('SEARCH NEW')).untagged, ['SEARCH 2'], 'NEW is RECENT UNSEEN');
    assert.deepEqual((await b.cmd('SEARCH OLD')).untagged, ['SEARCH']);
    assert.deepEqual(flagsBySeq((await b.cmd('STORE 2 +FLAGS (\\Flagged)')).untagged).get(2), '\\Flagged \\Recent');

    // Nobody else sees them as recent any more: not STATUS, not a later SELECT or EXAMINE (the
    // EXAMINE of before keeps showing them as recent, as its flag updates say).
    const later = await a.cmd('STATUS INBOX (RECENT)');
    assert.deepEqual(later.untagged, [
      'STATUS "INBOX" (RECENT 0)',
      '1 FETCH (FLAGS (\\Seen \\Recent))',
      '2 FETCH (FLAGS (\\Flagged \\Recent))',
    ]);
    const c = await session(srv, 'rita');
    const sel2 = await c.cmd('SELECT INBOX');
    assert.equal(count(sel2.untagged, 'RECENT'), 0);
    assert.deepEqual([...flagsBySeq((await c.cmd('FETCH 1:* FLAGS')).untagged).values()], ['\\Seen', '\\Flagged']);
    assert.deepEqual((await c.cmd('SEARCH RECENT')).untagged, ['SEARCH']);
    assert.deepEqual((await c.cmd('SEARCH NEW')).untagged, ['SEARCH']);
    assert.deepEqual((await c.cmd('SEARCH OLD')).untagged, ['SEARCH 1 2']);
    assert.equal(count((await c.cmd('EXAMINE INBOX')).untagged, 'RECENT'), 0);

    // Mail that arrives while sessions have the mailbox selected goes to the first that sees it;
    // a read-only view (A's EXAMINE) shows it as recent without taking it.
    await c.cmd('SELECT INBOX');
    await deliver(srv, 'rita@example.test', ['three']);
    const aNoop = await a.cmd('NOOP');
    assert.deepEqual([count(aNoop.untagged, 'EXISTS'), count(aNoop.untagged, 'RECENT')], [3, 3]);
    const noop = await c.cmd('NOOP');
    assert.deepEqual([count(noop.untagged, 'EXISTS'), count(noop.untagged, 'RECENT')], [3, 1], noop.untagged.join('\n'));
    const bNoop = await b.cmd('NOOP');
    assert.equal(count(bNoop.untagged, 'EXISTS'), 3);
    assert.equal(count(bNoop.untagged, 'RECENT'), undefined, 'still 2 for the session that claimed those');
    assert.equal(flagsBySeq((await b.cmd('FETCH 3 FLAGS')).untagged).get(3), '');
    for (const x of [a, b, c]) await x.logout();
  });

  it('never reports RECENT above EXISTS while another session appends, expunges and appends again', async () => {
    const watcher = await session(srv, 'ivan');
    const sel = await watcher.cmd('SELECT INBOX');
    assert.equal(count(sel.untagged, 'EXISTS'), 0);
    watcher.write('W1 IDLE\r\n');
    assert.equal(await watcher.line(), '+ idling');

    const other = await session(srv, 'ivan');
    for (const s of ['a', 'b', 'c']) assert.equal((await append(other, 'INBOX', s)).status, 'OK');
    // The watcher has them (and claimed them) before the other session selects the mailbox.
    const seen: string[] = [];
    while (!seen.includes('* 3 RECENT')) seen.push((await watcher.line())!);
    const osel = await other.cmd('SELECT INBOX');
    assert.equal(count(osel.untagged, 'RECENT'), 0);
    await other.cmd('STORE 1:* +FLAGS.SILENT (\\Deleted)');
    assert.equal((await other.cmd('EXPUNGE')).status, 'OK');
    await other.cmd('UNSELECT');
    assert.equal((await append(other, 'INBOX', 'd')).status, 'OK');

    watcher.write('DONE\r\n');
    const done = await watcher.result('W1');
    assert.equal(done.status, 'OK');
    // What a client keeps count of: every RECENT within EXISTS, and at the end one of each.
    let exists = 0;
    let recent = 0;
    for (const line of [...seen.map((l) => l.slice(2)), ...done.untagged]) {
      const m = /^(\d+) (EXISTS|RECENT|EXPUNGE)$/.exec(line);
      if (!m) continue;
      if (m[2] === 'EXISTS') exists = Number(m[1]);
      else if (m[2] === 'EXPUNGE') exists--;
      else {
        recent = Number(m[1]);
        assert.ok(recent <= exists, `RECENT ${recent} above EXISTS ${exists}: ${line}`);
      }
    }
    assert.deepEqual([exists, recent], [1, 1]);
    assert.deepEqual(done.untagged.slice(-2), ['1 EXISTS', '1 RECENT']);
    assert.deepEqual((await watcher.cmd('SEARCH RECENT')).untagged, ['SEARCH 1']);
    await watcher.logout();
    await other.logout();
  });

  it('makes what COPY, MOVE and APPEND put into a mailbox recent for the next session that selects it', async () => {
    const a = await session(srv, 'cora');
    await a.cmd('CREATE Kept');
    await a.cmd('CREATE Moved');
    for (const s of ['p', 'q', 'r']) await append(a, 'INBOX', s, '\\Seen');
    assert.equal(count((await a.cmd('SELECT INBOX')).untagged, 'RECENT'), 3);
    assert.equal((await a.cmd('COPY 1 Kept')).status, 'OK');
    assert.equal((await a.cmd('MOVE 2 Moved')).status, 'OK');
    assert.equal((await append(a, 'Kept', 's')).status, 'OK');
    assert.deepEqual((await a.cmd('STATUS Kept (MESSAGES RECENT)')).untagged, ['STATUS "Kept" (MESSAGES 2 RECENT 2)']);
    // A copy into the selected mailbox is recent for the session that has it selected.
    const self = await a.cmd('COPY 1 INBOX');
    assert.equal(count(self.untagged, 'EXISTS'), 3);
    assert.equal(count(self.untagged, 'RECENT'), 3, self.untagged.join('\n'));

    const b = await session(srv, 'cora');
    const kept = await b.cmd('SELECT Kept');
    assert.equal(count(kept.untagged, 'RECENT'), 2);
    assert.deepEqual([...flagsBySeq((await b.cmd('FETCH 1:* FLAGS')).untagged).values()], ['\\Seen \\Recent', '\\Recent']);
    assert.equal(count((await b.cmd('SELECT Moved')).untagged, 'RECENT'), 1);
    assert.deepEqual((await b.cmd('SEARCH RECENT')).untagged, ['SEARCH 1']);
    assert.equal(count((await b.cmd('SELECT Kept')).untagged, 'RECENT'), 0, 'claimed by the first SELECT');
    assert.deepEqual((await b.cmd('STATUS Moved (RECENT)')).untagged, ['STATUS "Moved" (RECENT 0)']);
    await a.logout();
    await b.logout();
  });

  it('answers FETCH of messages another session expunged with OK, from what is left (RFC 2180 section 4.1)', async () => {
    const a = await session(srv, 'xena');
    const b = await session(srv, 'xena');
    for (const s of ['first', 'second', 'third']) await append(a, 'INBOX', s);
    await a.cmd('SELECT INBOX');
    // ENVELOPE of the first is in the cache from now on.
    assert.match((await a.cmd('FETCH 1 ENVELOPE')).untagged[0]!, /"first"/);
    await b.cmd('SELECT INBOX');
    await b.cmd('STORE 1,3 +FLAGS.SILENT (\\Deleted)');
    assert.deepEqual((await b.cmd('EXPUNGE')).untagged, ['3 EXPUNGE', '1 EXPUNGE']);
    assert.equal((await srv.messages('example.test/xena')).length, 1, 'the files are gone');

    const all = await a.cmd('FETCH 1:* (FLAGS BODY.PEEK[])');
    assert.equal(all.status, 'OK', all.text);
    assert.equal(all.code, 'EXPUNGEISSUED');
    assert.ok(!all.untagged.some((l) => /EXPUNGE$/.test(l)), 'no EXPUNGE during FETCH');
    assert.deepEqual(all.untagged, [
      '1 FETCH (FLAGS (\\Deleted \\Recent) BODY[] NIL)',
      `2 FETCH (FLAGS (\\Recent) BODY[] {${MESSAGE('second').length}}\r\n${MESSAGE('second')})`,
      '3 FETCH (FLAGS (\\Deleted \\Recent) BODY[] NIL)',
    ]);
    // Only expunged ones: still OK; what the index and the cache kept is served.
    const gone = await a.cmd('UID FETCH 1,3 (FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER])');
    assert.equal(gone.status, 'OK', gone.text);
    assert.equal(gone.code, 'EXPUNGEISSUED');
    assert.match(
      gone.untagged[0]!,
      /^1 FETCH \(UID 1 FLAGS \(\\Deleted \\Recent\) RFC822\.SIZE \d+ ENVELOPE \(NIL "first" .*\) BODY\[HEADER\] NIL\)$/,
    );
    assert.match(
      gone.untagged[1]!,
      /^3 FETCH \(UID 3 FLAGS \(\\Deleted \\Recent\) RFC822\.SIZE \d+ ENVELOPE \(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL\) BODY\[HEADER\] NIL\)$/,
    );
    // UID FETCH may announce the expunges (RFC 3501 section 7.4.1); afterwards they are gone,
    // and so is their share of RECENT.
    assert.deepEqual(gone.untagged.slice(2), ['3 EXPUNGE', '1 EXPUNGE', '1 RECENT']);
    const after = await a.cmd('FETCH 1:* (UID FLAGS)');
    assert.deepEqual([after.status, after.code, after.untagged], ['OK', undefined, ['1 FETCH (UID 2 FLAGS (\\Recent))']]);
    await a.logout();
    await b.logout();
  });

  it('still streams a large message that another process renamed (a flag change), rather than NIL', async () => {
    const c = await session(srv, 'otto');
    // Over the size FETCH reads ahead whole (256 KiB): this one is streamed from its file.
    const big = `Subject: big\r\n\r\n${`${'x'.repeat(78)}\r\n`.repeat(4000)}`;
    assert.equal((await c.cmd(`APPEND INBOX {${big.length}+}\r\n${big}`)).status, 'OK');
    await c.cmd('SELECT INBOX');
    const cur = path.join(srv.mailRoot, 'example.test/otto/cur');
    const [file] = await readdir(cur);
    await rename(path.join(cur, file!), path.join(cur, `${file!.split(':')[0]}:2,F`));
    const f = await c.cmd('FETCH 1 BODY.PEEK[]');
    assert.deepEqual([f.status, f.code], ['OK', undefined], f.text);
    assert.ok(f.untagged[0]!.endsWith(`BODY[] {${big.length}}\r\n${big})`), f.untagged[0]!.slice(0, 80));
    await c.logout();
  });

  it('answers every FETCH OK, one response per message in view, while another session expunges one by one', async () => {
    const writer = await session(srv, 'lena');
    const total = 12;
    for (let i = 0; i < total; i++) await append(writer, 'INBOX', `load${i}`);
    await writer.cmd('SELECT INBOX');
    const readers = await Promise.all([0, 1, 2].map(() => session(srv, 'lena')));
    const read = async (c: ImapTestClient) => {
      // The session's view: EXISTS less the EXPUNGEs it was told of.
      let exists = 0;
      const track = (untagged: string[]) => {
        for (const l of untagged) {
          if (/^\d+ EXPUNGE$/.test(l)) exists--;
          else if (/^\d+ EXISTS$/.test(l)) exists = Number(l.split(' ')[0]);
        }
      };
      track((await c.cmd('SELECT INBOX')).untagged);
      while (exists > 0) {
        const f = await c.cmd('FETCH 1:* (FLAGS BODY.PEEK[])');
        assert.equal(f.status, 'OK', f.text);
        // (Flag updates from the other session's STORE come as FETCH FLAGS without BODY[].)
        assert.equal(f.untagged.filter((l) => / FETCH \(.* BODY\[\] /.test(l)).length, exists, 'every message the session still shows');
        track(f.untagged);
        track((await c.cmd('NOOP')).untagged);
      }
    };
    const expungeAll = async () => {
      for (let i = 0; i < total; i++) {
        await writer.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)');
        assert.equal((await writer.cmd('EXPUNGE')).status, 'OK');
      }
    };
    await Promise.all([expungeAll(), ...readers.map(read)]);
    for (const c of [writer, ...readers]) await c.logout();
  });

  it('keeps the claim across a restart (maild-index)', async () => {
    const mailRoot = await mkdtemp(path.join(os.tmpdir(), 'maild-recent-'));
    let s: TestServer | undefined;
    try {
      s = await startTestServer({ directory: DIRECTORY, mailRoot });
      await deliver(s, 'pete@example.test', ['kept']);
      let c = await session(s, 'pete');
      assert.equal(count((await c.cmd('SELECT INBOX')).untagged, 'RECENT'), 1);
      await c.logout();
      await s.stop();
      s = undefined;
      const index = await readFile(path.join(mailRoot, 'example.test/pete/maild-index'), 'utf8');
      assert.match(index, /^r 2$/m, 'the claim is in the index');
      assert.deepEqual(await readdir(path.join(mailRoot, 'example.test/pete/new')), [], 'moved to cur/');

      s = await startTestServer({ directory: DIRECTORY, mailRoot });
      c = await session(s, 'pete');
      assert.deepEqual((await c.cmd('STATUS INBOX (MESSAGES RECENT)')).untagged, ['STATUS "INBOX" (MESSAGES 1 RECENT 0)']);
      assert.equal(count((await c.cmd('SELECT INBOX')).untagged, 'RECENT'), 0);
      await c.logout();
    } finally {
      await s?.stop();
      await rm(mailRoot, { recursive: true, force: true });
    }
  });
});
