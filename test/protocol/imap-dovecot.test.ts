/**
 * maild and Dovecot on the same Maildir, over IMAP on one side and Dovecot's own doveadm on the
 * other (in-memory indexes: only the Maildir files can have told it anything).
 *
 * (a) The Dovecot-made fixture (test/fixtures/dovecot-maildir) as a user's Maildir: LIST, LSUB,
 *     SELECT and UID FETCH show the folders, subscriptions, UIDVALIDITY/UIDNEXT, UIDs, flags and
 *     keywords that doveadm reported when it made it (dovecot.json).
 * (b) The reverse: after maild changed things over IMAP (APPEND, STORE of flags and keywords,
 *     EXPUNGE, CREATE, RENAME, DELETE, MOVE, SUBSCRIBE), doveadm reports the same folders,
 *     subscriptions, UIDVALIDITY/UIDNEXT, UIDs, flags and keywords as maild does.
 * (c) A new account: the UIDVALIDITY maild announces for its INBOX is the one Dovecot finds.
 *
 * doveadm comes with the dovecot-core package (.ci/run installs it); without it these tests fail.
 */
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { decodeMUtf7, encodeMUtf7 } from '../../src/store/dovecot/index.js';
import { doveadmOn, requireDoveadm } from '../helpers/dovecot.js';
import { loggedIn, type ImapTestClient } from '../helpers/imap-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtureDir = path.join(here, '..', 'fixtures', 'dovecot-maildir');

interface DovecotReport {
  list: string[];
  subscribed: string[];
  status: Array<{ mailbox: string; messages: string; uidnext: string; uidvalidity: string }>;
  messages: Array<Record<string, string>>;
}
const report: DovecotReport = JSON.parse(await readFile(path.join(fixtureDir, 'dovecot.json'), 'utf8'));

/** What a server says about an account, folder names in UTF-8, flags sorted without \Recent. */
interface View {
  folders: string[];
  subscribed: string[];
  status: Record<string, { messages: number; uidnext: number; uidvalidity: number }>;
  messages: Record<string, Array<{ uid: number; flags: string[] }>>;
}

const normalFlags = (text: string) =>
  text
    .split(' ')
    .filter((f) => f !== '' && f !== '\\Recent')
    .sort();

/**
 * The folders maild creates at the first login that the fixture lacks: none, since a Maildir
 * that has folders already is left as it is (imap.auto_special_folders: new_maildir).
 */
const MADE_AT_LOGIN: string[] = [];

/** A copy of the fixture's Maildir at `dest`, with the empty folders git does not keep. */
async function copyFixture(dest: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  await cp(path.join(fixtureDir, 'Maildir'), dest, { recursive: true });
  const empty = (await readFile(path.join(fixtureDir, 'empty-dirs.txt'), 'utf8')).split('\n').filter(Boolean);
  for (const d of empty) await mkdir(path.join(dest, d), { recursive: true });
}

/** A mailbox name as LIST/LSUB send it: quoted string or atom (literals are not expected here). */
function listedName(text: string): string {
  const quoted = /^"((?:[^"\\]|\\.)*)"$/.exec(text);
  return decodeMUtf7(quoted ? quoted[1]!.replace(/\\(.)/g, '$1') : text);
}

function parseList(lines: string[], kind: 'LIST' | 'LSUB'): Array<{ name: string; attributes: string[] }> {
  return lines
    .filter((l) => l.startsWith(`${kind} `))
    .map((l) => {
      const m = new RegExp(`^${kind} \\(([^)]*)\\) "/" (.+)$`).exec(l);
      assert.ok(m, `unexpected ${kind} line ${l}`);
      return { name: listedName(m[2]!), attributes: m[1]!.split(' ').filter(Boolean) };
    });
}

const quoteName = (utf8: string) => `"${encodeMUtf7(utf8).replace(/[\\"]/g, '\\$&')}"`;

/** maild's view of the account, over IMAP. */
async function imapView(c: ImapTestClient): Promise<View> {
  const list = await c.cmd('LIST "" "*"');
  assert.equal(list.status, 'OK', list.text);
  const folders = parseList(list.untagged, 'LIST')
    .filter((f) => !f.attributes.some((a) => /^\\(Noselect|NonExistent)$/i.test(a)))
    .map((f) => f.name)
    .sort();
  const lsub = await c.cmd('LSUB "" "*"');
  assert.equal(lsub.status, 'OK', lsub.text);
  const subscribed = parseList(lsub.untagged, 'LSUB')
    .map((f) => f.name)
    .sort();
  const view: View = { folders, subscribed, status: {}, messages: {} };
  for (const name of folders) {
    const sel = await c.cmd(`SELECT ${quoteName(name)}`);
    assert.equal(sel.status, 'OK', `SELECT ${name}: ${sel.text}`);
    const num = (re: RegExp) => Number(sel.untagged.map((l) => re.exec(l)?.[1]).find((v) => v !== undefined));
    view.status[name] = {
      messages: num(/^(\d+) EXISTS$/),
      uidnext: num(/^OK \[UIDNEXT (\d+)\]/),
      uidvalidity: num(/^OK \[UIDVALIDITY (\d+)\]/),
    };
    const fetch = await c.cmd('UID FETCH 1:* (UID FLAGS)');
    assert.equal(fetch.status, 'OK', `UID FETCH in ${name}: ${fetch.text}`);
    view.messages[name] = fetch.untagged
      .filter((l) => / FETCH \(/.test(l))
      .map((l) => {
        const uid = /[( ]UID (\d+)/.exec(l);
        const flags = /[( ]FLAGS \(([^)]*)\)/.exec(l);
        assert.ok(uid && flags, `FETCH line ${l}`);
        return { uid: Number(uid[1]), flags: normalFlags(flags[1]!) };
      })
      .sort((a, b) => a.uid - b.uid);
  }
  assert.equal((await c.cmd('UNSELECT')).status, 'OK');
  return view;
}

/** Dovecot's view of the Maildir, from doveadm. */
async function dovecotView(maildir: string, work: string): Promise<View> {
  const da = await doveadmOn(maildir, work);
  const folders = (await da.json('mailbox', 'list')).map((m) => m.mailbox!).sort();
  const subscribed = (await da.json('mailbox', 'list', '-s')).map((m) => m.mailbox!).sort();
  const view: View = { folders, subscribed, status: {}, messages: {} };
  for (const s of await da.json('mailbox', 'status', 'messages uidnext uidvalidity', '*')) {
    view.status[s.mailbox!] = { messages: Number(s.messages), uidnext: Number(s.uidnext), uidvalidity: Number(s.uidvalidity) };
    view.messages[s.mailbox!] = [];
  }
  for (const m of await da.json('fetch', 'mailbox uid flags', 'all')) {
    view.messages[m.mailbox!]!.push({ uid: Number(m.uid), flags: normalFlags(m.flags!) });
  }
  for (const list of Object.values(view.messages)) list.sort((a, b) => a.uid - b.uid);
  return view;
}

/** doveadm runs as nobody: the directories above the Maildir must let it through. */
async function openUpTo(srv: TestServer, maildir: string): Promise<void> {
  for (let d = path.dirname(maildir); d.startsWith(srv.dir); d = path.dirname(d)) await chmod(d, 0o755);
}

const message = (subject: string) =>
  `From: maild <m@example.test>\r\nTo: bob@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.test>\r\n\r\nText of ${subject}.\r\n`;

describe('maild and Dovecot on the same Maildir', () => {
  let srv: TestServer;
  const temps: string[] = [];
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv?.stop();
    for (const t of temps) await rm(t, { recursive: true, force: true });
  });
  const workDir = async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), 'maild-doveadm-'));
    temps.push(d);
    return d;
  };

  it('(a) shows the folders, subscriptions, UIDVALIDITY/UIDNEXT, UIDs, flags and keywords Dovecot made', async () => {
    const maildir = path.join(srv.mailRoot, 'example.test', 'alice');
    await copyFixture(maildir);
    const c = await loggedIn(srv);
    const view = await imapView(c);
    await c.logout();

    assert.deepEqual(view.folders, [...report.list, ...MADE_AT_LOGIN].sort());
    assert.deepEqual(view.subscribed, [...report.subscribed, ...MADE_AT_LOGIN].sort());
    for (const s of report.status) {
      assert.deepEqual(
        view.status[s.mailbox],
        { messages: Number(s.messages), uidnext: Number(s.uidnext), uidvalidity: Number(s.uidvalidity) },
        s.mailbox,
      );
      const theirs = report.messages
        .filter((m) => m.mailbox === s.mailbox)
        .map((m) => ({ uid: Number(m.uid), flags: normalFlags(m.flags!) }));
      assert.deepEqual(view.messages[s.mailbox], theirs, s.mailbox);
    }
    // The parent that exists only as a prefix of Work/Projects is listed, but not selectable.
    const again = await loggedIn(srv);
    const work = parseList((await again.cmd('LIST "" Work')).untagged, 'LIST');
    assert.equal(work.length, 1);
    assert.ok(
      work[0]!.attributes.some((a) => /^\\(Noselect|NonExistent)$/i.test(a)),
      JSON.stringify(work),
    );
    await again.logout();
  });

  it('(b) makes changes over IMAP that Dovecot then reports the same way', async () => {
    requireDoveadm(); // fails (rather than skips) without doveadm, naming the package
    const maildir = path.join(srv.mailRoot, 'example.test', 'bob');
    await copyFixture(maildir);
    const c = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    const ok = async (command: string) => {
      const r = await c.cmd(command);
      assert.equal(r.status, 'OK', `${command.split('\r\n')[0]}: ${r.text}`);
      return r;
    };
    const append = async (mailbox: string, flags: string, subject: string) => {
      const body = message(subject);
      const r = await ok(`APPEND ${quoteName(mailbox)} (${flags}) {${Buffer.byteLength(body)}+}\r\n${body}`);
      return /^APPENDUID (\d+) (\d+)$/
        .exec(r.code ?? '')!
        .slice(1)
        .map(Number) as [number, number];
    };
    const fixtureInbox = report.status.find((s) => s.mailbox === 'INBOX')!;

    await ok('SELECT INBOX');
    assert.deepEqual(await append('INBOX', '\\Flagged $Label7', 'appended by maild'), [Number(fixtureInbox.uidvalidity), 11]);
    await ok('UID STORE 1 +FLAGS (\\Flagged Neues-Wort)');
    await ok('UID STORE 3 -FLAGS ($Forwarded)');
    await ok('UID STORE 6 FLAGS (\\Answered Projekt-X)');
    await ok('UID STORE 2 +FLAGS.SILENT (\\Deleted)');
    // 4 and 9 came from Dovecot with \Deleted already.
    const expunged = await ok('EXPUNGE');
    assert.equal(expunged.untagged.filter((l) => / EXPUNGE$/.test(l)).length, 3);
    await ok(`CREATE ${quoteName('Projekte/Übersicht')}`);
    await ok(`SUBSCRIBE ${quoteName('Projekte/Übersicht')}`);
    await ok(`UID MOVE 8 ${quoteName('Projekte/Übersicht')}`);
    await append('Projekte/Übersicht', '\\Draft Eigenes', 'draft in a new folder');
    await ok('RENAME "Work/Projects" "Work/Done"');
    await ok('RENAME "Archive/2024" "Archive/2025"');
    await ok(`DELETE ${quoteName('R&D')}`);
    await ok('SELECT Sent');
    await ok('UID STORE 1 -FLAGS (\\Seen)');
    await ok('UID STORE 2 +FLAGS ($Label1 \\Flagged)');
    await ok('UNSELECT');
    await c.logout();

    const fresh = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    const ours = await imapView(fresh);
    await fresh.logout();
    // What the changes must have done, as maild sees it.
    assert.deepEqual(
      ours.messages.INBOX!.map((m) => m.uid),
      [1, 3, 5, 6, 10, 11],
    );
    assert.deepEqual(ours.messages.INBOX!.find((m) => m.uid === 1)!.flags, ['Neues-Wort', '\\Flagged', '\\Seen']);
    assert.deepEqual(ours.messages.INBOX!.find((m) => m.uid === 6)!.flags, ['Projekt-X', '\\Answered']);
    assert.deepEqual(ours.messages.INBOX!.find((m) => m.uid === 11)!.flags, ['$Label7', '\\Flagged']);
    assert.equal(ours.status.INBOX!.uidnext, 12);
    assert.deepEqual(ours.messages['Projekte/Übersicht'], [
      { uid: 1, flags: ['$Forwarded', 'Junk', 'NonJunk', '\\Seen'] },
      { uid: 2, flags: ['Eigenes', '\\Draft'] },
    ]);
    assert.deepEqual(
      ours.messages['Work/Done']!.map((m) => m.flags),
      [[], ['Urgent']],
    );
    for (const gone of ['Work/Projects', 'Archive/2024', 'R&D']) assert.ok(!ours.folders.includes(gone), gone);
    assert.ok(ours.subscribed.includes('Work/Done') && !ours.subscribed.includes('Work/Projects'), JSON.stringify(ours.subscribed));

    await openUpTo(srv, maildir);
    const theirs = await dovecotView(maildir, await workDir());
    assert.deepEqual(theirs, ours);

    // And maild still agrees after Dovecot has been through the Maildir.
    const later = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    assert.deepEqual(await imapView(later), ours);
    await later.logout();
  });

  it('(c) gives a new account an INBOX UIDVALIDITY that Dovecot finds too', async () => {
    requireDoveadm();
    const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
    const ours = await imapView(c);
    await c.logout();
    // RFC 3501 section 9: uniqueid = nz-number.
    assert.ok(ours.status.INBOX!.uidvalidity > 0, `SELECT INBOX of a new account announced UIDVALIDITY ${ours.status.INBOX!.uidvalidity}`);
    assert.deepEqual(ours.messages.INBOX, []);
    const maildir = path.join(srv.mailRoot, 'example.test', 'carol');
    await openUpTo(srv, maildir);
    const theirs = await dovecotView(maildir, await workDir());
    assert.deepEqual(theirs, ours);
  });
});
