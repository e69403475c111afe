/**
 * isync's mbsync against the implicit-TLS IMAP listener: a mailbox with several messages is
 * synced down into a local Maildir with the right flags; flags changed on both sides meet in the
 * middle; a message made locally is pushed up; a message deleted locally is expunged on the
 * server (Expunge Both). mbsync runs with a timeout, so it can never hang the suite.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { loggedIn, type ImapTestClient } from '../helpers/imap-client.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

/** Messages put on the server before the first sync, with the flags they get there. */
const SEEDED: Array<{ subject: string; flags: string; maildir: string }> = [
  { subject: 'one seen', flags: '\\Seen', maildir: 'S' },
  { subject: 'two flagged', flags: '\\Flagged', maildir: 'F' },
  { subject: 'three plain', flags: '', maildir: '' },
  { subject: 'four answered', flags: '\\Answered \\Seen', maildir: 'RS' },
  { subject: 'five draft', flags: '\\Draft', maildir: 'D' },
];

const message = (subject: string, body = `Body of ${subject}.`) =>
  `From: sender@remote.example\r\nTo: bob@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '-')}@remote.example>\r\nDate: Sun, 22 Nov 2026 04:01:00 +0000\r\n\r\n${body}\r\n`;

/** The keyword isync uses for the TLS mode: SSLType up to 1.4, TLSType from 1.5 on. */
async function tlsKeyword(): Promise<string> {
  const { stdout } = await run('mbsync', ['--version'], { timeout: 10_000 });
  const m = /isync (\d+)\.(\d+)/.exec(stdout);
  assert.ok(m, `mbsync --version: ${stdout}`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  assert.ok(major > 1 || minor >= 4, `isync 1.4 or newer is needed (Far/Near), found ${stdout.trim()}`);
  return major > 1 || minor >= 5 ? 'TLSType' : 'SSLType';
}

describe('interop with mbsync (isync)', () => {
  let srv: TestServer;
  let home: string;
  let local: string;
  let config: string;
  let imap: ImapTestClient;

  before(async () => {
    srv = await startTestServer();
    ({ home, local, config } = await writeConfig('bob', 'bob-pw', 'Patterns INBOX Project'));

    // The far side: messages with flags in INBOX, one more delivered over SMTP (it sits in
    // new/ until a session syncs), and a second folder.
    imap = await loggedIn(srv, 'bob@example.test', 'bob-pw');
    for (const m of SEEDED) {
      const text = message(m.subject);
      const r = await imap.cmd(`APPEND INBOX (${m.flags}) {${Buffer.byteLength(text)}+}\r\n${text}`);
      assert.equal(r.status, 'OK', r.text);
    }
    const smtp = await SmtpClient.connect(srv.smtpPort);
    await smtp.greeting();
    await smtp.command('EHLO mbsync.test');
    const sent = await smtp.sendMail('sender@remote.example', ['bob@example.test'], message('six delivered'));
    assert.equal(sent.final![0]!.code, 250);
    await smtp.command('QUIT');
    assert.equal((await imap.cmd('CREATE Project')).status, 'OK');
    const p = message('project plan');
    assert.equal((await imap.cmd(`APPEND Project (\\Seen) {${Buffer.byteLength(p)}+}\r\n${p}`)).status, 'OK');
  });

  after(async () => {
    await imap?.logout();
    await srv.stop();
  });

  /** An .mbsyncrc for one user of example.test in its own HOME, with a channel named sync. */
  async function writeConfig(user: string, password: string, patterns: string): Promise<{ home: string; local: string; config: string }> {
    const home = path.join(srv.dir, `mbsync-${user}`);
    const local = path.join(home, 'Mail');
    await mkdir(local, { recursive: true });
    const config = path.join(home, '.mbsyncrc');
    await writeFile(
      config,
      [
        'IMAPAccount maild',
        'Host 127.0.0.1',
        `Port ${srv.imapsPort}`,
        `User ${user}@example.test`,
        `Pass ${password}`,
        `${await tlsKeyword()} IMAPS`,
        // The self-signed certificate the test server made: trusted as a host certificate.
        'SystemCertificates no',
        `CertificateFile ${path.join(srv.dir, 'data', 'tls', 'selfsigned-cert.pem')}`,
        'Timeout 20',
        '',
        'IMAPStore remote',
        'Account maild',
        '',
        'MaildirStore local',
        `Path ${local}/`,
        `Inbox ${local}/INBOX`,
        'SubFolders Verbatim',
        '',
        'Channel sync',
        'Far :remote:',
        'Near :local:',
        patterns,
        'Create Both',
        'Expunge Both',
        'SyncState *',
        'Sync All',
        'CopyArrivalDate yes',
        '',
      ].join('\n'),
    );
    return { home, local, config };
  }

  /** Runs mbsync on the channel (bob's unless told otherwise); never longer than a minute. */
  async function mbsync(setup = { home, config }): Promise<{ stdout: string; stderr: string }> {
    try {
      const r = await run('mbsync', ['-c', setup.config, '-V', 'sync'], {
        timeout: 60_000,
        killSignal: 'SIGKILL',
        env: { ...process.env, HOME: setup.home },
      });
      if (process.env.MBSYNC_DEBUG) console.log(r.stdout, r.stderr);
      return r;
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string; killed?: boolean };
      throw new Error(`mbsync failed${e.killed ? ' (killed after 60 s)' : ''}: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    }
  }

  /** Subject -> { file, flags } of a local Maildir folder (new/ and cur/). */
  async function localMessages(folder: string, root = local): Promise<Map<string, { file: string; flags: string }>> {
    const out = new Map<string, { file: string; flags: string }>();
    for (const sub of ['new', 'cur']) {
      const dir = path.join(root, folder, sub);
      for (const name of await readdir(dir)) {
        const text = await readFile(path.join(dir, name), 'utf8');
        const subject = /^Subject: (.*)$/m.exec(text)?.[1]?.trim();
        assert.ok(subject, `${sub}/${name} has a subject`);
        assert.ok(!out.has(subject), `one local copy of "${subject}"`);
        out.set(subject, { file: path.join(dir, name), flags: /:2,([A-Za-z]*)$/.exec(name)?.[1] ?? '' });
      }
    }
    return out;
  }

  /** Subject -> flags on the server, via the raw client. */
  async function serverMessages(folder: string): Promise<Map<string, string>> {
    assert.equal((await imap.cmd(`EXAMINE ${folder}`)).status, 'OK');
    const r = await imap.cmd('FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    await imap.cmd('UNSELECT');
    const out = new Map<string, string>();
    for (const line of r.untagged) {
      if (!/^\d+ FETCH /.test(line)) continue;
      const flags = /FLAGS \(([^)]*)\)/.exec(line)![1]!;
      const subject = /Subject: ([^\r\n]*)/.exec(line)![1]!;
      out.set(subject, flags.split(' ').filter(Boolean).sort().join(' '));
    }
    return out;
  }

  it('syncs the mailboxes down into a Maildir, flags included', async () => {
    await mbsync();
    const inbox = await localMessages('INBOX');
    assert.deepEqual([...inbox.keys()].sort(), [...SEEDED.map((m) => m.subject), 'six delivered'].sort());
    for (const m of SEEDED) assert.equal(inbox.get(m.subject)!.flags, m.maildir, `flags of "${m.subject}"`);
    assert.equal(inbox.get('six delivered')!.flags, '');
    // The bodies arrived whole (mbsync checks sizes against RFC822.SIZE as well).
    const body = await readFile(inbox.get('two flagged')!.file, 'utf8');
    assert.equal(body.replace(/\r\n/g, '\n').replace(/^X-TUID: .*\n/m, ''), message('two flagged').replace(/\r\n/g, '\n'));
    const project = await localMessages('Project');
    assert.deepEqual(
      [...project.entries()].map(([s, m]) => [s, m.flags]),
      [['project plan', 'S']],
    );
    // A second run with nothing changed changes nothing.
    await mbsync();
    assert.deepEqual([...(await localMessages('INBOX')).values()].map((m) => m.file).sort(), [...inbox.values()].map((m) => m.file).sort());
  });

  it('propagates flag changes made on both sides, and a new local message up', async () => {
    const inbox = await localMessages('INBOX');
    // Locally: flag "three plain" and mark "five draft" seen, by renaming their files (the
    // Maildir way a mail reader does it).
    for (const [subject, flags] of [
      ['three plain', 'F'],
      ['five draft', 'DS'],
    ] as const) {
      const { file } = inbox.get(subject)!;
      const renamed = path.join(path.dirname(path.dirname(file)), 'cur', `${path.basename(file).replace(/:2,[A-Za-z]*$/, '')}:2,${flags}`);
      await rename(file, renamed);
    }
    // On the server: "two flagged" loses \Flagged and is read; "one seen" gets answered.
    assert.equal((await imap.cmd('SELECT INBOX')).status, 'OK');
    assert.equal((await imap.cmd('STORE 2 -FLAGS.SILENT (\\Flagged)')).status, 'OK');
    assert.equal((await imap.cmd('STORE 2 +FLAGS.SILENT (\\Seen)')).status, 'OK');
    assert.equal((await imap.cmd('STORE 1 +FLAGS.SILENT (\\Answered)')).status, 'OK');
    await imap.cmd('UNSELECT');
    // A message written locally (as a mail reader saving a draft would).
    const draft = message('seven local draft');
    await writeFile(path.join(local, 'INBOX', 'cur', `1795000000.M1P1.mbsync-test:2,DS`), draft.replace(/\r\n/g, '\n'));

    await mbsync();

    const expected = new Map([
      ['one seen', 'RS'],
      ['two flagged', 'S'],
      ['three plain', 'F'],
      ['four answered', 'RS'],
      ['five draft', 'DS'],
      ['six delivered', ''],
      ['seven local draft', 'DS'],
    ]);
    const near = await localMessages('INBOX');
    assert.deepEqual(new Map([...near].map(([s, m]) => [s, m.flags])), expected, 'the local side');
    const imapFlags: Record<string, string> = { D: '\\Draft', F: '\\Flagged', R: '\\Answered', S: '\\Seen' };
    const far = await serverMessages('INBOX');
    assert.deepEqual(
      far,
      new Map(
        [...expected].map(([s, f]) => [
          s,
          [...f]
            .map((c) => imapFlags[c]!)
            .sort()
            .join(' '),
        ]),
      ),
      'the server agrees',
    );
    // The pushed message is stored on the server as written (mbsync adds only its X-TUID).
    const stored = (await srv.read('example.test/bob')).find((m) => m.includes('Subject: seven local draft'));
    assert.ok(stored);
    assert.equal(stored.replace(/^X-TUID: .*\n/m, ''), draft.replace(/\r\n/g, '\n'));
  });

  it('expunges on the server a message deleted locally (Expunge Both)', async () => {
    const inbox = await localMessages('INBOX');
    await rm(inbox.get('four answered')!.file);
    const before = (await srv.messages('example.test/bob')).length;

    await mbsync();

    const far = await serverMessages('INBOX');
    assert.equal(far.has('four answered'), false, 'gone from the server');
    assert.equal(far.size, 6);
    assert.equal((await srv.messages('example.test/bob')).length, before - 1, 'its file is gone from the server Maildir');
    assert.ok(!(await srv.read('example.test/bob')).some((m) => m.includes('Subject: four answered')));
    assert.equal((await localMessages('INBOX')).size, 6);
    // And the other way: expunged on the server, gone locally after the next sync.
    assert.equal((await imap.cmd('SELECT INBOX')).status, 'OK');
    const found = await imap.cmd('UID SEARCH SUBJECT "six delivered"');
    const uid = /^SEARCH (\d+)$/.exec(found.untagged[0]!)![1];
    assert.equal((await imap.cmd(`UID STORE ${uid} +FLAGS.SILENT (\\Deleted)`)).status, 'OK');
    assert.equal((await imap.cmd(`UID EXPUNGE ${uid}`)).status, 'OK');
    await imap.cmd('UNSELECT');
    await mbsync();
    const near = await localMessages('INBOX');
    assert.equal(near.has('six delivered'), false);
    assert.equal(near.size, 5);
  });

  it('keeps the UIDVALIDITY it announced for the empty INBOX of a new account once mail arrives', async () => {
    // mbsync records the far side's UIDVALIDITY at the first sync of the still empty INBOX; the
    // first delivery must not change it (mbsync would then have to recover, or refuse the box).
    const carol = await writeConfig('carol', 'carol-pw', 'Patterns INBOX');
    const first = await mbsync(carol);
    const state = () => readFile(path.join(carol.local, 'INBOX', '.mbsyncstate'), 'utf8');
    const recorded = /^FarUidValidity (\d+)$/m.exec(await state())?.[1];
    assert.ok(recorded && recorded !== '0', `mbsync recorded a UIDVALIDITY for the empty INBOX: ${recorded}\n${first.stdout}`);

    const smtp = await SmtpClient.connect(srv.smtpPort);
    await smtp.greeting();
    await smtp.command('EHLO mbsync.test');
    assert.equal((await smtp.sendMail('sender@remote.example', ['carol@example.test'], message('first mail'))).final![0]!.code, 250);
    await smtp.command('QUIT');

    const second = await mbsync(carol);
    assert.doesNotMatch(`${second.stdout}${second.stderr}`, /UIDVALIDITY/i, 'no UIDVALIDITY change to recover from');
    assert.equal(/^FarUidValidity (\d+)$/m.exec(await state())?.[1], recorded);
    const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
    const st = await c.cmd('STATUS INBOX (UIDVALIDITY MESSAGES)');
    await c.logout();
    assert.deepEqual(st.untagged, [`STATUS "INBOX" (UIDVALIDITY ${recorded} MESSAGES 1)`]);
    assert.deepEqual([...(await localMessages('INBOX', carol.local)).keys()], ['first mail']);
  });
});
