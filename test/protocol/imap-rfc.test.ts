/**
 * IMAP answers where the RFCs (and Dovecot, whose answers clients know) say exactly what to send:
 * SENT* dates as written, address searches without comments, new keywords announced before they
 * are used, MODSEQ of ESEARCH MIN/MAX, HIGHESTMODSEQ when CONDSTORE starts in a selected
 * mailbox, RECURSIVEMATCH, MOVE into the selected mailbox, and \Noselect parents for plain LIST.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loggedIn, type ImapTestClient } from '../helpers/imap-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const USERS = ['sent', 'addr', 'kw', 'esearch', 'condstore', 'recursive', 'move', 'noselect'];
const DIRECTORY = `
domains: [rfc.test]
users:
${USERS.map((u) => `  ${u}@rfc.test: { password: "{PLAIN}pw" }`).join('\n')}
`;

async function append(c: ImapTestClient, mailbox: string, message: string, flags = ''): Promise<void> {
  const r = await c.cmd(`APPEND ${mailbox} ${flags ? `(${flags}) ` : ''}{${Buffer.byteLength(message)}}\r\n${message}`);
  assert.equal(r.status, 'OK', r.text);
}

describe('IMAP answers as the RFCs define them', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ directory: DIRECTORY });
  });
  after(async () => {
    await srv.stop();
  });

  it('SENTON/SENTBEFORE/SENTSINCE use the date the Date header names, not its UTC day (RFC 3501 6.4.4)', async () => {
    const c = await loggedIn(srv, 'sent@rfc.test', 'pw');
    // 23:00 -0700 on the 25th is the 26th in UTC; 01:00 +0200 on the 26th is the 25th in UTC.
    await append(c, 'INBOX', 'From: a@rfc.test\r\nDate: 25 Mar 2007 23:00 -0700\r\nSubject: late\r\n\r\nx\r\n');
    await append(c, 'INBOX', 'From: a@rfc.test\r\nDate: Mon, 26 Mar 2007 01:00:00 +0200\r\nSubject: early\r\n\r\nx\r\n');
    await c.cmd('SELECT INBOX');
    const search = async (q: string) => (await c.cmd(`SEARCH ${q}`)).untagged.find((l) => l.startsWith('SEARCH'));
    // Twice: the first search reads the files and fills the metadata cache, the second answers from it.
    for (let round = 0; round < 2; round++) {
      assert.equal(await search('SENTON 25-Mar-2007'), 'SEARCH 1', `round ${round}`);
      assert.equal(await search('SENTON 26-Mar-2007'), 'SEARCH 2', `round ${round}`);
      assert.equal(await search('SENTBEFORE 26-Mar-2007'), 'SEARCH 1', `round ${round}`);
      assert.equal(await search('SENTSINCE 26-Mar-2007'), 'SEARCH 2', `round ${round}`);
    }
    await c.logout();
  });
  it('SEARCH FROM/TO/CC/BCC match the address without its comments, and the display name', async () => {
    const c = await loggedIn(srv, 'addr@rfc.test', 'pw');
    await append(
      c,
      'INBOX',
      'From: <user-from (comment)@ (comment) domain.org>\r\nTo: =?utf-8?q?Doe=2C_J=C3=B6rg?= <jd@rfc.test>\r\nSubject: one\r\n\r\nx\r\n',
    );
    await append(c, 'INBOX', 'From: other@domain.org (Other Person)\r\nCc: Jo (the boss) Smith <jo@rfc.test>\r\nSubject: two\r\n\r\nx\r\n');
    await c.cmd('SELECT INBOX');
    const search = async (q: string) => (await c.cmd(`SEARCH CHARSET UTF-8 ${q}`)).untagged.find((l) => l.startsWith('SEARCH'));
    for (let round = 0; round < 2; round++) {
      assert.equal(await search('FROM user-from@domain.org'), 'SEARCH 1', `round ${round}`);
      assert.equal(await search('FROM comment'), 'SEARCH', 'a comment is not part of the address');
      assert.equal(await search('HEADER FROM comment'), 'SEARCH 1', 'HEADER compares the field as it is');
      // Written out as Dovecot does: "Other Person" <other@domain.org>, a name with a space quoted.
      assert.equal(await search('FROM "Other Person"'), 'SEARCH 2', 'a trailing comment is the name');
      assert.equal(await search('FROM "<other@domain.org>"'), 'SEARCH 2');
      assert.equal(await search('FROM "Person <other"'), 'SEARCH');
      assert.equal(await search('TO "Doe, Jörg <jd@"'), 'SEARCH 1', 'an encoded comma stays in the name');
      assert.equal(await search('CC "Jo Smith"'), 'SEARCH 2');
      assert.equal(await search('CC "the boss"'), 'SEARCH');
      assert.equal(await search('BCC rfc.test'), 'SEARCH');
      assert.equal(await search('HEADER "address:from" domain'), 'SEARCH', 'no field name has a colon');
    }
    await c.logout();
  });
  it('announces a new keyword in FLAGS and PERMANENTFLAGS before any FETCH shows it (RFC 3501 7.2.6)', async () => {
    const a = await loggedIn(srv, 'kw@rfc.test', 'pw');
    const b = await loggedIn(srv, 'kw@rfc.test', 'pw');
    await append(a, 'INBOX', 'Subject: one\r\n\r\nx\r\n');
    await a.cmd('CREATE Other');
    await append(a, 'Other', 'Subject: two\r\n\r\nx\r\n', 'FromCopy');
    const flagsLine = (r: { untagged: string[] }, keyword: string) =>
      r.untagged.findIndex((l) => l.startsWith('FLAGS (') && l.includes(` ${keyword})`));
    const permanent = (r: { untagged: string[] }, keyword: string) =>
      r.untagged.some((l) => l.startsWith('OK [PERMANENTFLAGS (') && l.includes(` ${keyword} \\*)]`));
    const select = await a.cmd('SELECT INBOX');
    assert.equal(flagsLine(select, 'NewKw'), -1);
    await b.cmd('SELECT INBOX');

    // This session's STORE: FLAGS first, then the FETCH with the keyword.
    const store = await a.cmd('STORE 1 +FLAGS (NewKw)');
    const fetchAt = store.untagged.findIndex((l) => /^1 FETCH \(FLAGS \(\\Recent NewKw\)\)$/.test(l));
    assert.ok(fetchAt >= 0, store.untagged.join('\n'));
    assert.ok(flagsLine(store, 'NewKw') >= 0 && flagsLine(store, 'NewKw') < fetchAt, store.untagged.join('\n'));
    assert.ok(permanent(store, 'NewKw'), store.untagged.join('\n'));
    // Told once: the next STORE of the same keyword does not repeat FLAGS.
    assert.equal(flagsLine(await a.cmd('STORE 1 FLAGS (NewKw \\Seen)'), 'NewKw'), -1);

    // Another session's FETCH of that message, before any NOOP: FLAGS first.
    const fetch = await b.cmd('FETCH 1 FLAGS');
    const shown = fetch.untagged.findIndex((l) => /^1 FETCH \(FLAGS \(.*NewKw.*\)\)$/.test(l));
    assert.ok(shown >= 0, fetch.untagged.join('\n'));
    assert.ok(flagsLine(fetch, 'NewKw') >= 0 && flagsLine(fetch, 'NewKw') < shown, fetch.untagged.join('\n'));
    assert.ok(permanent(fetch, 'NewKw'));

    // APPEND into the selected mailbox with a new keyword: FLAGS before the EXISTS.
    const app = await a.cmd(`APPEND INBOX (Appended) {21}\r\nSubject: three\r\n\r\nx\r\n`);
    const existsAt = app.untagged.indexOf('2 EXISTS');
    assert.ok(flagsLine(app, 'Appended') >= 0 && flagsLine(app, 'Appended') < existsAt, app.untagged.join('\n'));

    // COPY by another session into this one's mailbox brings a keyword: told before the EXISTS.
    await b.cmd('SELECT Other');
    assert.equal((await b.cmd('COPY 1 INBOX')).status, 'OK');
    const noop = await a.cmd('NOOP');
    assert.ok(
      flagsLine(noop, 'FromCopy') >= 0 && flagsLine(noop, 'FromCopy') < noop.untagged.indexOf('3 EXISTS'),
      noop.untagged.join('\n'),
    );
    assert.ok(permanent(noop, 'FromCopy'));
    await a.logout();
    await b.logout();
  });
  it('SEARCH RETURN (MIN) / (MAX) with MODSEQ gives the MODSEQ of the message returned (RFC 7162 3.1.5)', async () => {
    const c = await loggedIn(srv, 'esearch@rfc.test', 'pw');
    for (let i = 1; i <= 3; i++) await append(c, 'INBOX', `Subject: m${i}\r\n\r\nx\r\n`);
    await c.cmd('SELECT INBOX');
    await c.cmd('STORE 2 +FLAGS.SILENT (\\Flagged)');
    const modseqs = (await c.cmd('FETCH 1:3 (MODSEQ)')).untagged
      .filter((l) => l.includes(' FETCH '))
      .map((l) => Number(/MODSEQ \((\d+)\)/.exec(l)![1]));
    assert.ok(modseqs[1]! > modseqs[0]! && modseqs[1]! > modseqs[2]!, `message 2 changed last: ${modseqs.join(' ')}`);
    const esearch = async (ret: string) => {
      const r = await c.cmd(`SEARCH RETURN (${ret}) MODSEQ 1`);
      return r.untagged[0]!.replace(`ESEARCH (TAG "${r.tag}") `, '');
    };
    assert.equal(await esearch('MIN'), `MIN 1 MODSEQ ${modseqs[0]}`);
    assert.equal(await esearch('MAX'), `MAX 3 MODSEQ ${modseqs[2]}`);
    assert.equal(await esearch('MIN MAX'), `MIN 1 MAX 3 MODSEQ ${Math.max(modseqs[0]!, modseqs[2]!)}`);
    assert.equal(await esearch('ALL'), `ALL 1:3 MODSEQ ${modseqs[1]}`);
    assert.equal(await esearch('COUNT'), `COUNT 3 MODSEQ ${modseqs[1]}`);
    await c.logout();
  });
  it('sends HIGHESTMODSEQ before the answer of the command that enables CONDSTORE in a selected mailbox (RFC 7162 3.1)', async () => {
    const setup = await loggedIn(srv, 'condstore@rfc.test', 'pw');
    await append(setup, 'INBOX', 'Subject: m\r\n\r\nx\r\n');
    await setup.logout();
    for (const command of [
      'FETCH 1 (MODSEQ)',
      'FETCH 1 (FLAGS) (CHANGEDSINCE 1)',
      'SEARCH MODSEQ 1',
      'STORE 1 (UNCHANGEDSINCE 99999999999999999) +FLAGS (\\Seen)',
      'STATUS INBOX (HIGHESTMODSEQ)',
    ]) {
      const c = await loggedIn(srv, 'condstore@rfc.test', 'pw');
      const select = await c.cmd('SELECT INBOX');
      const highest = select.untagged.find((l) => l.startsWith('OK [HIGHESTMODSEQ '))!;
      assert.ok(highest, select.untagged.join('\n'));
      const first = await c.cmd(command);
      assert.equal(first.status, 'OK', `${command}: ${first.text}`);
      assert.equal(first.untagged[0], highest.replace(/\] .*/, '] Highest'), `${command}: ${first.untagged.join('\n')}`);
      assert.ok(first.untagged.length > 1, `${command} answered after it`);
      const again = await c.cmd(command.replace('+FLAGS', '-FLAGS'));
      assert.ok(
        !again.untagged.some((l) => l.includes('HIGHESTMODSEQ ')) || command.startsWith('STATUS'),
        `${command} once: ${again.untagged.join('\n')}`,
      );
      await c.logout();
    }
    // SELECT (CONDSTORE) reports it with the SELECT already: nothing more after.
    const c = await loggedIn(srv, 'condstore@rfc.test', 'pw');
    await c.cmd('SELECT INBOX (CONDSTORE)');
    assert.ok(!(await c.cmd('FETCH 1 (MODSEQ)')).untagged.some((l) => l.startsWith('OK [HIGHESTMODSEQ')));
    await c.logout();
  });
  it('LIST (SUBSCRIBED RECURSIVEMATCH) leaves out a parent whose subscribed child is listed itself (RFC 5258 3.5)', async () => {
    const c = await loggedIn(srv, 'recursive@rfc.test', 'pw');
    for (const name of ['parent', 'parent/child', 'a/b']) assert.equal((await c.cmd(`CREATE "${name}"`)).status, 'OK');
    for (const name of ['parent/child', 'a/b']) assert.equal((await c.cmd(`SUBSCRIBE "${name}"`)).status, 'OK');
    const list = async (pattern: string) => (await c.cmd(`LIST (SUBSCRIBED RECURSIVEMATCH) "" ${pattern}`)).untagged;
    // What Dovecot 2.3 answers on the same folders.
    assert.deepEqual(await list('(parent parent/child)'), ['LIST (\\HasNoChildren \\Subscribed) "/" "parent/child"']);
    assert.deepEqual(await list('"parent*"'), ['LIST (\\HasNoChildren \\Subscribed) "/" "parent/child"']);
    assert.deepEqual(await list('"parent"'), ['LIST (\\HasChildren) "/" "parent" ("CHILDINFO" ("SUBSCRIBED"))']);
    assert.deepEqual(await list('"a"'), ['LIST (\\NonExistent \\HasChildren) "/" "a" ("CHILDINFO" ("SUBSCRIBED"))']);
    // A subscribed parent is listed as such, and tells of its subscribed child too.
    await c.cmd('SUBSCRIBE parent');
    assert.deepEqual(await list('(parent parent/child)'), [
      'LIST (\\HasChildren \\Subscribed) "/" "parent" ("CHILDINFO" ("SUBSCRIBED"))',
      'LIST (\\HasNoChildren \\Subscribed) "/" "parent/child"',
    ]);
    await c.logout();
  });
  it('MOVEs and COPYs into the selected mailbox itself: new UIDs, COPYUID, EXPUNGE of the old ones (RFC 6851)', async () => {
    const c = await loggedIn(srv, 'move@rfc.test', 'pw');
    const other = await loggedIn(srv, 'move@rfc.test', 'pw');
    await append(c, 'INBOX', 'Subject: one\r\n\r\nx\r\n', '\\Flagged Keep');
    await append(c, 'INBOX', 'Subject: two\r\n\r\nx\r\n');
    // (RECENT counts are not what this test is about.)
    const responses = (r: { untagged: string[] }) => r.untagged.filter((l) => !l.endsWith(' RECENT'));
    const select = await c.cmd('SELECT INBOX');
    const uidValidity = /UIDVALIDITY (\d+)/.exec(select.untagged.join('\n'))![1];
    await other.cmd('SELECT INBOX');

    const move = await c.cmd('MOVE 1 INBOX');
    assert.equal(move.status, 'OK', move.text);
    assert.deepEqual(responses(move), [`OK [COPYUID ${uidValidity} 1 3] Moved UIDs.`, '1 EXPUNGE', '2 EXISTS']);
    const fetch = await c.cmd('FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    assert.match(fetch.untagged[0]!, /^1 FETCH \(UID 2 FLAGS \(\\Recent\) BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: two/);
    assert.match(
      fetch.untagged[1]!,
      /^2 FETCH \(UID 3 FLAGS \(\\Flagged \\Recent Keep\) BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: one/,
    );
    // Another session on the mailbox sees the same: the old message gone, the new one there.
    const noop = await other.cmd('NOOP');
    assert.ok(noop.untagged.includes('1 EXPUNGE') && noop.untagged.includes('2 EXISTS'), noop.untagged.join('\n'));

    const copy = await c.cmd('UID COPY 3 INBOX');
    assert.deepEqual([copy.status, copy.code], ['OK', `COPYUID ${uidValidity} 3 4`]);
    assert.deepEqual(responses(copy), ['3 EXISTS']);
    const uidMove = await c.cmd('UID MOVE 2:3 INBOX');
    assert.deepEqual(responses(uidMove), [`OK [COPYUID ${uidValidity} 2,3 5,6] Moved UIDs.`, '2 EXPUNGE', '1 EXPUNGE', '3 EXISTS']);
    assert.deepEqual((await c.cmd('UID SEARCH ALL')).untagged, ['SEARCH 4 5 6']);
    assert.deepEqual(await srv.messages('rfc.test/move').then((m) => m.length), 3, 'one file per message');
    await c.logout();
    await other.logout();
  });
  it('lists a parent that does not exist as \\Noselect to plain LIST, \\NonExistent to extended LIST (as Dovecot)', async () => {
    const c = await loggedIn(srv, 'noselect@rfc.test', 'pw');
    assert.equal((await c.cmd('CREATE "a/b"')).status, 'OK');
    const parent = async (command: string) => (await c.cmd(command)).untagged.filter((l) => l.endsWith(' "a"'));
    assert.deepEqual(await parent('LIST "" "%"'), ['LIST (\\Noselect \\HasChildren) "/" "a"']);
    assert.deepEqual(await parent('LIST "" "a"'), ['LIST (\\Noselect \\HasChildren) "/" "a"']);
    assert.deepEqual(await parent('LIST "" "%" RETURN (CHILDREN)'), ['LIST (\\NonExistent \\HasChildren) "/" "a"']);
    assert.deepEqual(await parent('LIST () "" "%"'), ['LIST (\\NonExistent \\HasChildren) "/" "a"']);
    assert.deepEqual(await parent('LIST "" (a)'), ['LIST (\\NonExistent \\HasChildren) "/" "a"']);
    await c.logout();
  });
});
