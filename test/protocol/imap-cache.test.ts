/**
 * The metadata cache over the wire: after a restart, FETCH ENVELOPE/BODY/BODYSTRUCTURE and SEARCH
 * on the usual header keys answer without opening a single message file, with the very answers
 * the first (parsing) run gave; a deleted or damaged maild-cache is rebuilt with identical
 * answers; other HEADER keys read only headers; COPY carries the cached metadata along.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { messageFileAccess } from '../../src/store/mail/mailbox.js';
import { loggedIn, type ImapTestClient } from '../helpers/imap-client.js';
import { MIME_MESSAGE_LINES } from '../helpers/messages.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const MESSAGES = [
  MIME_MESSAGE_LINES,
  [
    'From: Carol <carol@example.test>',
    'To: alice@example.test',
    'Cc: dave@example.org',
    'Subject: Quarterly report',
    'Date: Sat, 1 Mar 2025 12:00:00 +0000',
    'X-Mailer: maild-test 1.0',
    '',
    'Numbers.',
    '',
  ],
  [
    'From: bob@example.test',
    'To: alice@example.test',
    'Bcc: hidden@example.net',
    'Subject: Fwd: lunch',
    'Date: Mon, 10 Jun 2024 12:00:00 +0200',
    'In-Reply-To: <mime-1@remote.example>',
    'Content-Type: multipart/mixed; boundary=xx',
    '',
    '--xx',
    'Content-Type: message/rfc822',
    '',
    'From: chef@kitchen.example',
    'Subject: Menu',
    '',
    'Soup.',
    '--xx--',
    '',
  ],
  ['Subject: folded', ' across lines, Größe in raw UTF-8', 'X-Mailer: other', ''],
  ['Subject: (none)', 'Date: Sat, 1 Jan 2000 12:00:00 +0000', '', 'no sender'],
].map((lines) => lines.join('\r\n'));

const literal = (text: string) => `{${Buffer.byteLength(text)}}\r\n${text}`;

/** [command, expected untagged answer] */
const SEARCHES: Array<[string, string]> = [
  ['SEARCH FROM zoe', 'SEARCH 1'],
  ['SEARCH FROM "carol"', 'SEARCH 2'],
  ['SEARCH TO bob', 'SEARCH 1'],
  ['SEARCH CC dave', 'SEARCH 2'],
  ['SEARCH BCC hidden', 'SEARCH 3'],
  ['SEARCH SUBJECT report', 'SEARCH 2'],
  [`SEARCH CHARSET UTF-8 SUBJECT ${literal('grüße')}`, 'SEARCH 1'],
  [`SEARCH CHARSET UTF-8 SUBJECT ${literal('größe')}`, 'SEARCH 4'],
  ['SEARCH HEADER Message-ID mime-1', 'SEARCH 1'],
  ['SEARCH HEADER In-Reply-To mime-1', 'SEARCH 3'],
  ['SEARCH SENTSINCE 1-Jan-2026', 'SEARCH 1'],
  ['SEARCH SENTBEFORE 1-Jan-2026', 'SEARCH 2 3 5'],
  ['SEARCH SENTON 1-Mar-2025', 'SEARCH 2'],
  ['SEARCH OR FROM zoe SUBJECT lunch', 'SEARCH 1 3'],
  ['SEARCH NOT FROM zoe', 'SEARCH 2 3 4 5'],
  ['SEARCH UNSEEN SUBJECT report', 'SEARCH 2'],
  ['SEARCH FROM nobody', 'SEARCH'],
  ['UID SEARCH SUBJECT ""', 'SEARCH 1 2 3 4 5'],
];

const FETCH = 'FETCH 1:* (UID ENVELOPE BODY BODYSTRUCTURE)';

async function answers(c: ImapTestClient): Promise<{ fetch: string[]; searches: string[] }> {
  const fetch = await c.cmd(FETCH);
  assert.equal(fetch.status, 'OK', fetch.text);
  const searches: string[] = [];
  for (const [cmd] of SEARCHES) {
    const r = await c.cmd(cmd);
    assert.equal(r.status, 'OK', `${cmd}: ${r.text}`);
    searches.push(r.untagged.join('\n'));
  }
  return { fetch: fetch.untagged, searches };
}

describe('IMAP metadata cache', () => {
  let mailRoot: string;
  let srv: TestServer | undefined;
  const inbox = () => path.join(mailRoot, 'example.test/alice');
  const cacheFile = () => path.join(inbox(), 'maild-cache');
  let first: { fetch: string[]; searches: string[] };

  const stopServer = async () => {
    await srv?.stop();
    srv = undefined;
  };
  const restart = async () => {
    await srv?.stop();
    srv = await startTestServer({ mailRoot });
    const c = await loggedIn(srv);
    assert.equal((await c.cmd('SELECT INBOX')).status, 'OK');
    messageFileAccess.opens = 0;
    return c;
  };

  before(async () => {
    mailRoot = await mkdtemp(path.join(os.tmpdir(), 'maild-cache-wire-'));
  });
  after(async () => {
    await srv?.stop();
    await rm(mailRoot, { recursive: true, force: true });
  });

  it('parses once, answers from the cache after a restart without opening message files', async () => {
    srv = await startTestServer({ mailRoot });
    const c = await loggedIn(srv);
    for (const m of MESSAGES) {
      const r = await c.cmd(`APPEND INBOX {${Buffer.byteLength(m)}}\r\n${m}`);
      assert.equal(r.status, 'OK', r.text);
    }
    assert.equal((await c.cmd('SELECT INBOX')).status, 'OK');
    messageFileAccess.opens = 0;
    first = await answers(c);
    assert.equal(messageFileAccess.opens, MESSAGES.length, 'each message parsed once for everything');
    SEARCHES.forEach(([cmd, expected], i) => assert.equal(first.searches[i], expected, cmd));
    assert.equal(first.fetch.length, MESSAGES.length);
    // What FETCH always answered for it (test/protocol/imap-mailbox.test.ts), now from the cache.
    const utf8Literals = (text: string) =>
      text.replace(/"([^"]*ë[^"]*)"/g, (_m, t: string) => `{${Buffer.byteLength(t)}}\r\n${Buffer.from(t).toString('latin1')}`);
    assert.equal(
      first.fetch[0]!.replace(/UID \d+ /, ''),
      utf8Literals(
        '1 FETCH (ENVELOPE ("Sun, 22 Nov 2026 04:01:00 +0000" "=?UTF-8?B?R3LDvMOfZQ==?= from Zoë" (("Zoë Example" NIL "zoe" "remote.example")) ' +
          '(("Zoë Example" NIL "zoe" "remote.example")) (("Zoë Example" NIL "zoe" "remote.example")) ' +
          '((NIL NIL "alice" "example.test")("Bob B" NIL "bob" "example.test")) NIL NIL NIL "<mime-1@remote.example>") ' +
          'BODY (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 44 0)("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 12) "mixed") ' +
          'BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 44 0 NIL NIL NIL NIL)' +
          '("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 12 NIL ("attachment" ("filename" "data.bin")) NIL NIL) ' +
          '"mixed" ("boundary" "b1") NIL NIL NIL))',
      ),
    );
    // The same answers from memory, reading nothing.
    messageFileAccess.opens = 0;
    assert.deepEqual(await answers(c), first);
    assert.equal(messageFileAccess.opens, 0);
    assert.ok((await stat(cacheFile())).size > 0);
    await c.logout();

    const c2 = await restart();
    assert.deepEqual(await answers(c2), first);
    assert.equal(messageFileAccess.opens, 0, 'no message file opened after the restart');
    await c2.logout();
  });

  it('reads only the header for HEADER keys the cache does not hold', async () => {
    const c = await restart();
    const r = await c.cmd('SEARCH HEADER X-Mailer maild');
    assert.deepEqual(r.untagged, ['SEARCH 2']);
    assert.equal(messageFileAccess.opens, MESSAGES.length, 'one header read per message');
    // Index keys first: messages they rule out are not read at all.
    messageFileAccess.opens = 0;
    assert.deepEqual((await c.cmd('SEARCH UID 2 HEADER X-Mailer ""')).untagged, ['SEARCH 2']);
    assert.equal(messageFileAccess.opens, 1);
    // BODY and TEXT read the files, with the same answers as ever.
    assert.deepEqual((await c.cmd('SEARCH BODY numbers')).untagged, ['SEARCH 2']);
    assert.deepEqual((await c.cmd('SEARCH TEXT dave')).untagged, ['SEARCH 2']);
    await c.logout();
  });

  it('rebuilds a deleted cache with identical answers', async () => {
    await rm(cacheFile());
    const c = await restart();
    assert.deepEqual(await answers(c), first);
    assert.equal(messageFileAccess.opens, MESSAGES.length);
    await c.logout();
    const c2 = await restart();
    assert.deepEqual(await answers(c2), first);
    assert.equal(messageFileAccess.opens, 0);
    await c2.logout();
  });

  it('a SEARCH fills the cache for FETCH too', async () => {
    await rm(cacheFile());
    const c = await restart();
    assert.deepEqual((await c.cmd('SEARCH FROM zoe')).untagged, ['SEARCH 1']);
    assert.equal(messageFileAccess.opens, MESSAGES.length);
    messageFileAccess.opens = 0;
    assert.deepEqual(await answers(c), first);
    assert.equal(messageFileAccess.opens, 0);
    await c.logout();
  });

  it('rebuilds damaged records (a flipped byte, a torn tail, a foreign header) with identical answers', async () => {
    await stopServer();
    const buf = await readFile(cacheFile());
    // A flipped byte in the middle of the file, and the last record torn.
    const mid = Math.floor(buf.length / 2);
    buf[mid] = buf[mid]! ^ 0x55;
    await writeFile(cacheFile(), buf.subarray(0, buf.length - 20));
    let c = await restart();
    assert.deepEqual(await answers(c), first);
    assert.ok(messageFileAccess.opens >= 2 && messageFileAccess.opens < MESSAGES.length, `re-parsed ${messageFileAccess.opens}`);
    await c.logout();
    c = await restart();
    assert.deepEqual(await answers(c), first);
    assert.equal(messageFileAccess.opens, 0, 'repaired');
    await c.logout();
    // A file that is not a cache at all.
    await stopServer();
    await writeFile(cacheFile(), 'something else entirely\n');
    c = await restart();
    assert.deepEqual(await answers(c), first);
    assert.equal(messageFileAccess.opens, MESSAGES.length);
    assert.ok((await readFile(cacheFile(), 'latin1')).startsWith('maild-cache 1 '));
    await c.logout();
  });

  it('COPY takes the cached metadata along (when the source has it loaded)', async () => {
    const c = await restart();
    assert.equal((await c.cmd('CREATE Copied')).status, 'OK');
    // (As a client does, it has looked at the messages: the source's cache is loaded.)
    assert.equal((await c.cmd('FETCH 1:* ENVELOPE')).status, 'OK');
    assert.equal((await c.cmd('COPY 1:* Copied')).status, 'OK');
    assert.equal(messageFileAccess.opens, 0);
    await c.logout();
    const c2 = await restart();
    assert.equal((await c2.cmd('SELECT Copied')).status, 'OK');
    messageFileAccess.opens = 0;
    const copied = await answers(c2);
    assert.equal(messageFileAccess.opens, 0);
    assert.deepEqual(copied.searches, first.searches);
    const noUid = (lines: string[]) => lines.map((l) => l.replace(/UID \d+ /, ''));
    assert.deepEqual(noUid(copied.fetch), noUid(first.fetch));
    await c2.logout();
  });
});
