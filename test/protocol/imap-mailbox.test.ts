/**
 * IMAP mailbox commands over the wire: folders, SELECT, APPEND, FETCH, STORE, SEARCH, COPY,
 * MOVE, EXPUNGE, CONDSTORE/QRESYNC, two sessions on one mailbox, and IDLE seeing an SMTP
 * delivery.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn } from '../helpers/imap-client.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { MIME_MESSAGE } from '../helpers/messages.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('IMAP mailboxes', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  it('creates the special-use folders at first login and lists them with their attributes', async () => {
    const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
    const list = await c.cmd('LIST "" "*"');
    assert.deepEqual(list.untagged.sort(), [
      'LIST (\\HasNoChildren \\Archive) "/" "Archive"',
      'LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
      'LIST (\\HasNoChildren \\Junk) "/" "Junk"',
      'LIST (\\HasNoChildren \\Sent) "/" "Sent"',
      'LIST (\\HasNoChildren \\Trash) "/" "Trash"',
      'LIST (\\HasNoChildren) "/" "INBOX"',
    ]);
    const lsub = await c.cmd('LSUB "" "*"');
    assert.equal(lsub.untagged.length, 5, 'the special folders are subscribed');
    assert.deepEqual((await c.cmd('LIST "" ""')).untagged, ['LIST (\\Noselect) "/" ""']);
    const special = await c.cmd('LIST (SPECIAL-USE) "" "*"');
    assert.equal(special.untagged.length, 5);
    // They are Maildir++ folders on disk.
    const entries = await readdir(path.join(srv.mailRoot, 'example.test/carol'));
    for (const f of ['.Sent', '.Drafts', '.Trash', '.Junk', '.Archive']) assert.ok(entries.includes(f), f);
    await c.logout();
  });

  it('creates, renames, deletes and subscribes folders, with hierarchy and CHILDREN', async () => {
    const c = await loggedIn(srv);
    assert.equal((await c.cmd('CREATE "Work/Projects"')).status, 'OK');
    assert.equal((await c.cmd('CREATE "Work/Projects"')).code, 'ALREADYEXISTS');
    assert.equal((await c.cmd('CREATE "Entw&APw-rfe"')).status, 'OK');
    assert.equal((await c.cmd('CREATE Notes (USE (\\Flagged))')).status, 'OK');
    const list = await c.cmd('LIST "" "%"');
    assert.ok(list.untagged.includes('LIST (\\Noselect \\HasChildren) "/" "Work"'), list.untagged.join('\n'));
    assert.ok(list.untagged.includes('LIST (\\HasNoChildren) "/" "Entw&APw-rfe"'));
    assert.ok(list.untagged.includes('LIST (\\HasNoChildren \\Flagged) "/" "Notes"'));
    const deep = await c.cmd('LIST "Work/" "%"');
    assert.deepEqual(deep.untagged, ['LIST (\\HasNoChildren) "/" "Work/Projects"']);
    assert.equal((await c.cmd('RENAME "Work/Projects" "Work/Done"')).status, 'OK');
    assert.equal((await c.cmd('SUBSCRIBE "Work/Done"')).status, 'OK');
    const sub = await c.cmd('LIST (SUBSCRIBED) "" "Work/*" RETURN (CHILDREN)');
    assert.deepEqual(sub.untagged, ['LIST (\\HasNoChildren \\Subscribed) "/" "Work/Done"']);
    assert.equal((await c.cmd('RENAME "Work/Done" "Archive"')).code, 'ALREADYEXISTS');
    assert.equal((await c.cmd('RENAME "Nope" "Elsewhere"')).code, 'NONEXISTENT');
    assert.equal((await c.cmd('DELETE "Work/Done"')).status, 'OK');
    assert.equal((await c.cmd('DELETE "Work/Done"')).code, 'NONEXISTENT');
    assert.equal((await c.cmd('DELETE INBOX')).status, 'NO');
    const status = await c.cmd('LIST "" "Notes" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))');
    assert.deepEqual(status.untagged.slice(1), ['STATUS "Notes" (MESSAGES 0 UNSEEN 0 UIDNEXT 1)']);
    await c.logout();
  });

  it('refuses mailbox names that could escape the Maildir, with NO [CANNOT]', async () => {
    const c = await loggedIn(srv);
    for (const bad of ['"../escape"', '"a/../b"', '"/root"', '"~x"', '"cur"', '"x/new"', '"bad&name"', '"dot.ted"', '"a//b"']) {
      const r = await c.cmd(`CREATE ${bad}`);
      assert.equal(r.status === 'NO' ? r.code : r.status, r.status === 'NO' ? 'CANNOT' : 'NO', `CREATE ${bad}: ${r.status} ${r.text}`);
    }
    const eightBit = await c.cmd('CREATE "Entwürfe"');
    assert.equal(eightBit.code, 'CANNOT', 'raw UTF-8 is not modified UTF-7');
    assert.equal((await c.cmd('SELECT "../x"')).code, 'CANNOT');
    // The outbound queue's spool (.queue) is the only other entry of the mail root.
    const entries = (await readdir(srv.mailRoot)).filter((e) => e !== '.queue').sort();
    assert.deepEqual(entries, ['example.test'], 'nothing created outside the Maildirs');
    await c.logout();
  });

  it('SELECTs with the responses RFC 3501 and CONDSTORE require; EXAMINE is read-only', async () => {
    const c = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    assert.equal((await c.cmd('APPEND INBOX (\\Seen) {12}\r\nSubject: a\r\n\r\n')).status, 'OK');
    const sel = await c.cmd('SELECT INBOX');
    assert.equal(sel.code, 'READ-WRITE');
    const u = sel.untagged;
    assert.ok(u.includes('FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)'), u.join('\n'));
    assert.ok(u.some((l) => /^OK \[PERMANENTFLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\\*\)\]/.test(l)));
    assert.ok(u.some((l) => /^\d+ EXISTS$/.test(l)));
    assert.ok(u.includes('1 RECENT'), 'the appended message is recent for the first SELECT');
    assert.ok(u.some((l) => /^OK \[UIDVALIDITY \d+\]/.test(l)));
    assert.ok(u.some((l) => /^OK \[UIDNEXT \d+\]/.test(l)));
    assert.ok(u.some((l) => /^OK \[HIGHESTMODSEQ \d+\]/.test(l)));
    const ex = await c.cmd('EXAMINE INBOX');
    assert.equal(ex.code, 'READ-ONLY');
    assert.ok(ex.untagged.includes('OK [PERMANENTFLAGS ()] Read-only mailbox.'));
    assert.ok(ex.untagged.includes('0 RECENT'), 'the SELECT claimed it');
    assert.equal((await c.cmd('STORE 1 +FLAGS (\\Flagged)')).code, 'READ-ONLY');
    assert.equal((await c.cmd('SELECT Nonexistent')).code, 'NONEXISTENT');
    assert.equal((await c.cmd('FETCH 1 FLAGS')).status, 'BAD', 'a failed SELECT leaves no mailbox selected');
    await c.logout();
  });

  it('APPENDs with flags, keywords and date, and FETCHes what it stored', async () => {
    const c = await loggedIn(srv);
    const app = await c.cmd(
      `APPEND Notes (\\Flagged $Forwarded Project-X) "05-Nov-2026 13:14:15 +0100" {${Buffer.byteLength(MIME_MESSAGE)}}\r\n${MIME_MESSAGE}`,
    );
    assert.equal(app.status, 'OK', app.text);
    const m = /^APPENDUID (\d+) (\d+)$/.exec(app.code!);
    assert.ok(m, app.code);
    assert.equal((await c.cmd('APPEND Missing {3}\r\nabc')).code, 'TRYCREATE');
    await c.cmd('SELECT Notes');
    const f = await c.cmd('UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE)');
    assert.equal(f.untagged.length, 1);
    assert.match(
      f.untagged[0]!,
      /^1 FETCH \(UID 1 FLAGS \(\\Flagged \\Recent \$Forwarded Project-X\) INTERNALDATE "05-Nov-2026 \d\d:14:15 [+-]\d{4}" RFC822\.SIZE (\d+)\)$/,
    );
    const size = Number(/RFC822\.SIZE (\d+)/.exec(f.untagged[0]!)![1]);
    assert.equal(size, Buffer.byteLength(MIME_MESSAGE), 'RFC822.SIZE counts CRLF');
    const whole = await c.cmd('FETCH 1 BODY.PEEK[]');
    assert.ok(
      whole.untagged[0]!.endsWith(`BODY[] {${size}}\r\n${Buffer.from(MIME_MESSAGE).toString('latin1')})`),
      'the whole message, byte for byte',
    );
    // Stored with LF line ends, Dovecot-style name with S= and W=.
    const files = await readdir(path.join(srv.mailRoot, 'example.test/alice/.Notes/cur'));
    assert.equal(files.length, 1);
    assert.match(files[0]!, new RegExp(`,S=${size - 19},W=${size}:2,Fab$`));
    const keywords = await readFile(path.join(srv.mailRoot, 'example.test/alice/.Notes/dovecot-keywords'), 'utf8');
    assert.equal(keywords, '0 $Forwarded\n1 Project-X\n');
    await c.logout();
  });

  it('FETCHes ENVELOPE, BODYSTRUCTURE and sections with partials; BODY[] sets \\Seen, PEEK does not', async () => {
    const c = await loggedIn(srv);
    await c.cmd('SELECT Notes');
    const env = await c.cmd('FETCH 1 (ENVELOPE)');
    assert.equal(env.untagged.length, 1, JSON.stringify(env));
    assert.equal(
      env.untagged[0],
      '1 FETCH (ENVELOPE ("Sun, 22 Nov 2026 04:01:00 +0000" "=?UTF-8?B?R3LDvMOfZQ==?= from Zoë" (("Zoë Example" NIL "zoe" "remote.example")) (("Zoë Example" NIL "zoe" "remote.example")) (("Zoë Example" NIL "zoe" "remote.example")) ((NIL NIL "alice" "example.test")("Bob B" NIL "bob" "example.test")) NIL NIL NIL "<mime-1@remote.example>"))'.replace(
        /"([^"]*ë[^"]*)"/g,
        (_m, s: string) => `{${Buffer.byteLength(s)}}\r\n${Buffer.from(s).toString('latin1')}`,
      ),
    );
    const bs = await c.cmd('FETCH 1 (BODYSTRUCTURE)');
    assert.match(
      bs.untagged[0]!,
      /^1 FETCH \(BODYSTRUCTURE \(\("text" "plain" \("charset" "utf-8"\) NIL NIL "7bit" 44 0 NIL NIL NIL NIL\)\("application" "octet-stream" \("name" "data\.bin"\) NIL NIL "base64" 12 NIL \("attachment" \("filename" "data\.bin"\)\) NIL NIL\) "mixed" \("boundary" "b1"\) NIL NIL NIL\)\)$/,
    );
    const part = await c.cmd('FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[1]<4.5> BODY.PEEK[9])');
    const text = part.untagged[0]!;
    // The CRLF before a boundary belongs to the boundary (RFC 2046 section 5.1.1).
    assert.ok(text.includes('BODY[1] {44}\r\nThe quick brown fox jumps over the lazy dog. '), text);
    assert.ok(text.includes('BODY[2.MIME] {'));
    assert.ok(text.includes('BODY[HEADER.FIELDS (Subject)] {'));
    assert.ok(text.includes('BODY[1]<4> {5}\r\nquick'));
    assert.ok(text.includes('BODY[9] {0}\r\n'));
    assert.ok(!/\\Seen/.test((await c.cmd('FETCH 1 FLAGS')).untagged[0]!), 'PEEK does not set \\Seen');
    const read = await c.cmd('FETCH 1 BODY[TEXT]');
    assert.match(read.untagged[0]!, /FLAGS \([^)]*\\Seen/, 'the FETCH reports the \\Seen it set');
    assert.match((await c.cmd('FETCH 1 FLAGS')).untagged[0]!, /\\Seen/);
    const fast = await c.cmd('FETCH 1 FAST');
    assert.match(fast.untagged[0]!, /^1 FETCH \(FLAGS \(.*\) INTERNALDATE ".*" RFC822\.SIZE \d+\)$/);
    assert.equal((await c.cmd('FETCH 1 (BODY[1.2.3.HEADER.BOGUS])')).status, 'BAD');
    assert.equal((await c.cmd('FETCH 1 (NOTANITEM)')).status, 'BAD');
    assert.equal((await c.cmd('FETCH 0 FLAGS')).status, 'BAD');
    await c.logout();
  });

  it('STOREs flags and keywords, reports MODSEQ, and honours UNCHANGEDSINCE', async () => {
    const c = await loggedIn(srv);
    await c.cmd('SELECT Notes');
    const s1 = await c.cmd('STORE 1 +FLAGS (\\Answered Urgent)');
    // Urgent is new: FLAGS and PERMANENTFLAGS announce it first (RFC 3501 section 7.2.6).
    assert.match(s1.untagged[0]!, /^FLAGS \(.* Urgent\)$/);
    assert.match(s1.untagged[2]!, /^1 FETCH \(FLAGS \(\\Seen \\Answered \\Flagged \$Forwarded Project-X Urgent\)\)$/);
    assert.deepEqual((await c.cmd('STORE 1 -FLAGS.SILENT (Project-X)')).untagged, []);
    const s2 = await c.cmd('UID STORE 1 FLAGS (\\Seen)');
    assert.equal(s2.untagged[0], '1 FETCH (UID 1 FLAGS (\\Seen))');
    const modseq = Number(/MODSEQ \((\d+)\)/.exec((await c.cmd('FETCH 1 (MODSEQ)')).untagged.find((l) => l.startsWith('1 FETCH'))!)![1]);
    const ok = await c.cmd(`STORE 1 (UNCHANGEDSINCE ${modseq}) +FLAGS (\\Flagged)`);
    assert.equal(ok.status, 'OK');
    assert.match(ok.untagged[0]!, new RegExp(`MODSEQ \\((\\d+)\\)`));
    const failed = await c.cmd(`STORE 1 (UNCHANGEDSINCE ${modseq}) -FLAGS (\\Flagged)`);
    assert.equal(failed.code, 'MODIFIED 1');
    assert.equal((await c.cmd('STORE 1 +FLAGS (\\Recent)')).status, 'OK', '\\Recent is ignored');
    assert.equal((await c.cmd('STORE 1 +FLAGS (\\Bogus)')).status, 'BAD');
    // The flags are in the file name, as Dovecot reads them.
    const files = await readdir(path.join(srv.mailRoot, 'example.test/alice/.Notes/cur'));
    assert.match(files[0]!, /:2,FS$/);
    await c.logout();
  });

  it('SEARCHes by flags, headers, body, dates, sizes and UIDs, with ESEARCH results', async () => {
    const c = await loggedIn(srv, 'erin@example.org', 'x');
    for (const [i, body] of ['alpha text', 'beta TEXT', 'gamma'].entries()) {
      const msg = `From: sender${i}@remote.example\r\nTo: erin@example.org\r\nSubject: Message ${i} ${i === 1 ? 'Grüße' : ''}\r\nDate: Mon, ${10 + i} Nov 2025 10:00:00 +0000\r\n\r\n${body}\r\n`;
      await c.cmd(`APPEND INBOX ${i === 2 ? '(\\Seen \\Flagged)' : '()'} {${Buffer.byteLength(msg)}}\r\n${msg}`);
    }
    await c.cmd('SELECT INBOX');
    const search = async (q: string) => (await c.cmd(`SEARCH ${q}`)).untagged.find((l) => l.startsWith('SEARCH'));
    assert.equal(await search('ALL'), 'SEARCH 1 2 3');
    assert.equal(await search('UNSEEN'), 'SEARCH 1 2');
    assert.equal(await search('FLAGGED SEEN'), 'SEARCH 3');
    assert.equal(await search('BODY text'), 'SEARCH 1 2', 'case-insensitive body search');
    assert.equal(await search('SUBJECT "message 1"'), 'SEARCH 2');
    assert.equal(await search('FROM sender2'), 'SEARCH 3');
    assert.equal(await search('CHARSET UTF-8 SUBJECT grüße'), 'SEARCH 2', 'UTF-8 and case folding');
    assert.equal(await search('OR FROM sender0 FROM sender2'), 'SEARCH 1 3');
    assert.equal(await search('NOT (OR SEEN BODY beta)'), 'SEARCH 1');
    assert.equal(await search('SENTBEFORE 11-Nov-2025'), 'SEARCH 1');
    assert.equal(await search('SENTSINCE 11-Nov-2025'), 'SEARCH 2 3');
    assert.equal(await search('2:*'), 'SEARCH 2 3');
    assert.equal(await search('SMALLER 10'), 'SEARCH');
    assert.equal(await search('LARGER 10'), 'SEARCH 1 2 3');
    assert.equal(await search('HEADER To erin'), 'SEARCH 1 2 3');
    assert.equal(await search('HEADER X-Missing ""'), 'SEARCH');
    assert.equal(
      await search(
        `SINCE ${new Date().getDate()}-${['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][new Date().getMonth()]}-${new Date().getFullYear()}`,
      ),
      'SEARCH 1 2 3',
    );
    assert.equal((await c.cmd('UID SEARCH UID 2:*')).untagged[0], 'SEARCH 2 3');
    const esearch = await c.cmd('SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN');
    assert.equal(esearch.untagged[0], `ESEARCH (TAG "${esearch.tag}") MIN 1 MAX 2 ALL 1:2 COUNT 2`);
    assert.equal((await c.cmd('SEARCH CHARSET KOI8-R ALL')).code, 'BADCHARSET (UTF-8 US-ASCII)');
    assert.equal((await c.cmd('SEARCH BOGUSKEY')).status, 'BAD');
    const modseq = (await c.cmd('SEARCH MODSEQ 1')).untagged.find((l) => l.startsWith('SEARCH'))!;
    assert.match(modseq, /^SEARCH 1 2 3 \(MODSEQ \d+\)$/);
    await c.logout();
  });

  it('COPYs and MOVEs with COPYUID, EXPUNGEs only \\Deleted, and CLOSE expunges silently', async () => {
    const c = await loggedIn(srv, 'erin@example.org', 'x');
    await c.cmd('SELECT INBOX');
    const copy = await c.cmd('COPY 1:2 Archive');
    assert.match(copy.code!, /^COPYUID \d+ 1,2 1,2$/);
    const move = await c.cmd('UID MOVE 3 Archive');
    assert.match(move.untagged[0]!, /^OK \[COPYUID \d+ 3 3\]/);
    assert.ok(move.untagged.includes('3 EXPUNGE'), move.untagged.join('\n'));
    assert.equal((await c.cmd('COPY 1 NoSuchFolder')).code, 'TRYCREATE');
    await c.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)');
    const exp = await c.cmd('EXPUNGE');
    assert.deepEqual(exp.untagged, ['1 EXPUNGE']);
    assert.match((await c.cmd('STATUS Archive (MESSAGES UIDNEXT)')).untagged[0]!, /^STATUS "Archive" \(MESSAGES 3 UIDNEXT 4\)$/);
    await c.cmd('SELECT Archive');
    await c.cmd('STORE 1:2 +FLAGS.SILENT (\\Deleted)');
    const close = await c.cmd('CLOSE');
    assert.deepEqual(close.untagged, [], 'CLOSE sends no EXPUNGE');
    assert.match((await c.cmd('STATUS Archive (MESSAGES)')).untagged[0]!, /MESSAGES 1\)/);
    // UID EXPUNGE removes only the given \Deleted messages (UIDPLUS).
    await c.cmd('SELECT Archive');
    await c.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)');
    assert.deepEqual((await c.cmd('UID EXPUNGE 1:2')).untagged, [], 'UID 3 is not in 1:2');
    assert.deepEqual((await c.cmd('UID EXPUNGE 3')).untagged, ['1 EXPUNGE']);
    await c.logout();
  });

  it('shows one session the changes of another, never EXPUNGE during FETCH, and VANISHED under QRESYNC', async () => {
    const a = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    const b = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    for (let i = 0; i < 3; i++) await a.cmd(`APPEND INBOX {16}\r\nSubject: conc${i}\r\n\r\n`);
    await a.cmd('SELECT INBOX');
    await b.cmd('ENABLE QRESYNC');
    const bsel = await b.cmd('SELECT INBOX');
    const exists = Number(/^(\d+) EXISTS$/m.exec(bsel.untagged.join('\n'))![1]);
    // A sets a flag: B hears about it at its next command.
    await a.cmd(`STORE ${exists} +FLAGS (\\Flagged)`);
    const noop = await b.cmd('NOOP');
    assert.ok(
      noop.untagged.some((l) => new RegExp(`^${exists} FETCH \\(UID \\d+ FLAGS \\(\\\\Flagged\\) MODSEQ \\(\\d+\\)\\)$`).test(l)),
      noop.untagged.join('\n'),
    );
    // A expunges: B must not be told during FETCH, but at the next NOOP (as VANISHED).
    await a.cmd(`STORE ${exists} +FLAGS.SILENT (\\Deleted)`);
    // The three appended messages are recent for A (it selected first), none for B.
    assert.ok(bsel.untagged.includes('0 RECENT'), bsel.untagged.join('\n'));
    assert.deepEqual((await a.cmd('EXPUNGE')).untagged, [`${exists} EXPUNGE`, '2 RECENT']);
    const fetch = await b.cmd('FETCH 1:* (FLAGS)');
    assert.ok(!fetch.untagged.some((l) => /EXPUNGE|VANISHED/.test(l)), 'no EXPUNGE during FETCH');
    const later = await b.cmd('NOOP');
    assert.ok(
      later.untagged.some((l) => /^VANISHED \d+$/.test(l)),
      later.untagged.join('\n'),
    );
    // A new message from A: B sees EXISTS.
    await a.cmd('APPEND INBOX {16}\r\nSubject: conc9\r\n\r\n');
    const seen = await b.cmd('NOOP');
    assert.ok(seen.untagged.includes(`${exists} EXISTS`), seen.untagged.join('\n'));
    await a.logout();
    await b.logout();
  });

  it('resynchronises with QRESYNC: VANISHED (EARLIER) and the changed flags since a MODSEQ', async () => {
    const c = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    await c.cmd('ENABLE QRESYNC');
    const sel = await c.cmd('SELECT INBOX');
    const uidValidity = /UIDVALIDITY (\d+)/.exec(sel.untagged.join('\n'))![1];
    const modseq = Number(/HIGHESTMODSEQ (\d+)/.exec(sel.untagged.join('\n'))![1]);
    await c.cmd('STORE 1 +FLAGS (\\Answered)');
    await c.cmd('STORE 2 +FLAGS.SILENT (\\Deleted)');
    const expunged = await c.cmd('EXPUNGE');
    const vanishedUid = /^VANISHED (\d+)$/.exec(expunged.untagged[0]!)![1];
    await c.cmd('UNSELECT');
    const re = await c.cmd(`SELECT INBOX (QRESYNC (${uidValidity} ${modseq}))`);
    assert.ok(re.untagged.includes(`VANISHED (EARLIER) ${vanishedUid}`), re.untagged.join('\n'));
    assert.ok(
      re.untagged.some((l) => /^1 FETCH \(UID \d+ FLAGS \([^)]*\\Answered[^)]*\) MODSEQ \(\d+\)\)$/.test(l)),
      re.untagged.join('\n'),
    );
    const changed = await c.cmd(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`);
    assert.ok(changed.untagged.includes(`VANISHED (EARLIER) ${vanishedUid}`));
    assert.ok(changed.untagged.some((l) => /\\Answered/.test(l) && /MODSEQ/.test(l)));
    await c.logout();
  });

  it('pushes a message delivered over SMTP to an IDLE session at once', async () => {
    const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
    const sel = await c.cmd('SELECT INBOX');
    const before = Number(/^(\d+) EXISTS$/m.exec(sel.untagged.join('\n'))![1]);
    c.write('I1 IDLE\r\n');
    assert.equal(await c.line(), '+ idling');
    const smtp = await SmtpClient.connect(srv.smtpPort);
    await smtp.greeting();
    await smtp.command('EHLO idle.test');
    const res = await smtp.sendMail('sender@remote.example', ['carol@example.test'], simpleMessage('while idling'));
    assert.equal(res.final![0]!.code, 250);
    await smtp.quit();
    assert.equal(await c.line(), `* ${before + 1} EXISTS`);
    c.write('DONE\r\n');
    const done = await c.result('I1');
    assert.equal(done.status, 'OK');
    const subject = await c.cmd(`FETCH ${before + 1} BODY.PEEK[HEADER.FIELDS (SUBJECT)]`);
    assert.match(subject.untagged[0]!, /Subject: while idling/);
    await c.logout();
  });

  it('reports the quota of the user', async () => {
    const c = await loggedIn(srv, 'small@example.test', 'x');
    const r = await c.cmd('GETQUOTAROOT INBOX');
    assert.deepEqual(r.untagged, ['QUOTAROOT "INBOX" ""', 'QUOTA "" (STORAGE 0 1)']);
    const over = await c.cmd('APPEND INBOX {3000}\r\n' + 'x'.repeat(3000));
    assert.equal(over.code, 'OVERQUOTA');
    assert.equal((await c.cmd('SETQUOTA "" (STORAGE 10)')).code, 'NOPERM');
    const none = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    assert.deepEqual((await none.cmd('GETQUOTAROOT INBOX')).untagged, ['QUOTAROOT "INBOX"']);
    await none.logout();
    await c.logout();
  });

  it('answers NO [UNAVAILABLE] and stores nothing when the quota cannot be read', async () => {
    const maildir = path.join(srv.mailRoot, 'example.test/small');
    const c = await loggedIn(srv, 'small@example.test', 'x');
    assert.equal((await c.cmd('SELECT INBOX')).status, 'OK');
    const before = await readdir(path.join(maildir, 'cur'));
    // A directory where maildirsize belongs: reading it fails (EISDIR), as a damaged disk would.
    await rm(path.join(maildir, 'maildirsize'), { force: true });
    await mkdir(path.join(maildir, 'maildirsize'));
    try {
      const append = await c.cmd('APPEND INBOX {5}\r\nhello');
      assert.deepEqual([append.status, append.code], ['NO', 'UNAVAILABLE']);
      const quota = await c.cmd('GETQUOTA ""');
      assert.deepEqual([quota.status, quota.code], ['NO', 'UNAVAILABLE']);
      assert.deepEqual(await readdir(path.join(maildir, 'cur')), before);
    } finally {
      await rm(path.join(maildir, 'maildirsize'), { recursive: true });
    }
    assert.equal((await c.cmd('APPEND INBOX {5}\r\nhello')).status, 'OK', 'rebuilt once it can be');
    await c.logout();
  });
});

describe('IMAP with the default hierarchy separator "." (Dovecot\'s for Maildir++)', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { imap: { hierarchy_separator: '.' } } });
  });
  after(async () => {
    await srv.stop();
  });

  it('announces ".", maps Work.Projects onto .Work.Projects, and matches % up to a dot', async () => {
    const c = await loggedIn(srv);
    assert.deepEqual((await c.cmd('NAMESPACE')).untagged, ['NAMESPACE (("" ".")) NIL NIL']);
    assert.deepEqual((await c.cmd('LIST "" ""')).untagged, ['LIST (\\Noselect) "." ""']);
    assert.equal((await c.cmd('CREATE Work.Projects')).status, 'OK');
    const dirs = await readdir(path.join(srv.mailRoot, 'example.test/alice'));
    assert.ok(dirs.includes('.Work.Projects'), dirs.join(' '));
    assert.deepEqual((await c.cmd('LIST "Work." "%"')).untagged, ['LIST (\\HasNoChildren) "." "Work.Projects"']);
    assert.ok((await c.cmd('LIST "" "%"')).untagged.includes('LIST (\\Noselect \\HasChildren) "." "Work"'));
    assert.equal((await c.cmd('RENAME Work.Projects Work.Done')).status, 'OK');
    assert.equal((await c.cmd('SELECT Work.Done')).status, 'OK');
    assert.equal((await c.cmd('SUBSCRIBE Work.Done')).status, 'OK');
    assert.deepEqual((await c.cmd('LSUB "" "Work.*"')).untagged, ['LSUB () "." "Work.Done"']);
    // The subscriptions file keeps levels, not separators: what Dovecot wrote reads either way.
    assert.match(await readFile(path.join(srv.mailRoot, 'example.test/alice/subscriptions'), 'utf8'), /Work\tDone/);
    await c.logout();
  });
});
