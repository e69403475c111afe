/**
 * imapflow (the IMAP client of the Nodemailer project, used by many Node mail tools) against
 * the IMAP listeners: implicit TLS and STARTTLS, folders with special use, APPEND and FETCH of
 * envelope, body structure and source, SEARCH, flags, COPY/MOVE with their UID maps, delete,
 * IDLE seeing an SMTP delivery, STATUS, quota, CONDSTORE/QRESYNC and non-ASCII folder names.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import nodemailer from 'nodemailer';
import { loggedIn } from '../helpers/imap-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

const MIME_MESSAGE = [
  'From: "Zoë Example" <zoe@remote.example>',
  'To: alice@example.test, "Bob B" <bob@example.test>',
  'Cc: carol@example.test',
  'Subject: =?UTF-8?B?R3LDvMOfZQ==?= from imapflow',
  'Date: Sun, 22 Nov 2026 04:01:00 +0000',
  'Message-ID: <imapflow-1@remote.example>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: 8bit',
  '',
  'Hällo from imapflow, the quick brown fox.',
  '--b1',
  'Content-Type: application/octet-stream; name="data.bin"',
  'Content-Disposition: attachment; filename="data.bin"',
  'Content-Transfer-Encoding: base64',
  '',
  'AAECAwQFBgc=',
  '--b1--',
  '',
].join('\r\n');

const plain = (subject: string, body = 'Hello.') =>
  `From: sender@remote.example\r\nTo: alice@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '-')}@remote.example>\r\n\r\n${body}\r\n`;

/**
 * A logger for imapflow that keeps the protocol lines it logs (`C: ...` sent, `S: ...` received)
 * so tests can assert on the exact exchange; IMAPFLOW_DEBUG=1 also prints them to stderr.
 */
function wireLogger(wire: string[]): ImapFlowOptions['logger'] {
  const log = (level: string) => (o: { src?: string; msg?: string }) => {
    if ((o.src === 's' || o.src === 'c') && o.msg !== undefined) {
      const line = `${o.src === 'c' ? 'C' : 'S'}: ${o.msg}`;
      wire.push(line);
      if (process.env.IMAPFLOW_DEBUG) process.stderr.write(`${line}\n`);
    } else if (process.env.IMAPFLOW_DEBUG && !['trace', 'debug'].includes(level)) process.stderr.write(`${level}: ${o.msg}\n`);
  };
  return Object.fromEntries(
    ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((l) => [l, log(l)]),
  ) as unknown as ImapFlowOptions['logger'];
}

/** An imapflow client and the protocol lines of its session. */
type Client = ImapFlow & { wire: string[] };

describe('interop with imapflow', () => {
  let srv: TestServer;
  const open: ImapFlow[] = [];

  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    for (const c of open) c.close();
    await srv.stop();
  });

  /** A logged-in imapflow client on the implicit-TLS port (or STARTTLS with `starttls`). */
  async function connect(
    user = 'alice@example.test',
    pass = 'alice-pw',
    extra: Partial<ImapFlowOptions> & { starttls?: boolean } = {},
  ): Promise<Client> {
    const { starttls, ...rest } = extra;
    const wire: string[] = [];
    const client = new ImapFlow({
      host: '127.0.0.1',
      port: starttls ? srv.imapPort : srv.imapsPort,
      secure: !starttls,
      doSTARTTLS: starttls ? true : undefined,
      tls: { rejectUnauthorized: false },
      auth: { user, pass },
      logger: wireLogger(wire),
      disableAutoIdle: true,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      ...rest,
    });
    client.on('error', () => undefined);
    open.push(client);
    await client.connect();
    return Object.assign(client, { wire });
  }

  it('logs in over implicit TLS and lists the folders with their special-use flags', async () => {
    const client = await connect();
    assert.equal(client.authenticated, true);
    assert.equal(client.secureConnection, true);
    assert.ok(client.capabilities.has('IDLE'));
    assert.ok(client.capabilities.has('UIDPLUS'));
    assert.ok(client.capabilities.has('QRESYNC'));
    const folders = await client.list();
    const byPath = new Map(folders.map((f) => [f.path, f]));
    assert.deepEqual([...byPath.keys()].sort(), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash']);
    assert.equal(byPath.get('INBOX')!.specialUse, '\\Inbox');
    for (const [name, use] of [
      ['Sent', '\\Sent'],
      ['Drafts', '\\Drafts'],
      ['Trash', '\\Trash'],
      ['Junk', '\\Junk'],
      ['Archive', '\\Archive'],
    ] as const) {
      const f = byPath.get(name)!;
      assert.equal(f.specialUse, use, name);
      assert.equal(f.specialUseSource, 'extension', `${name}: the flag came from the server, not from a name guess`);
      assert.ok(f.flags.has(use), `${name} has ${use} among its LIST flags`);
      assert.equal(f.subscribed, true, `${name} is subscribed`);
      assert.equal(f.delimiter, '/');
    }
    await client.logout();
  });

  it('logs in over STARTTLS and the session is encrypted', async () => {
    const client = await connect('bob@example.test', 'bob-pw', { starttls: true });
    assert.equal(client.secureConnection, true, 'upgraded with STARTTLS');
    // The greeting offered STARTTLS and refused LOGIN; after the upgrade, the mechanisms appear.
    assert.match(client.wire[0]!, /^S: \* OK \[CAPABILITY .* STARTTLS LOGINDISABLED\] /);
    const starttls = client.wire.findIndex((l) => /^C: \S+ STARTTLS$/.test(l));
    assert.ok(starttls > 0, 'imapflow sent STARTTLS');
    assert.match(client.wire[starttls + 1]!, /^S: \S+ OK /);
    const caps = client.wire.slice(starttls).find((l) => l.startsWith('S: * CAPABILITY '));
    assert.ok(caps && / AUTH=PLAIN /.test(` ${caps} `) && !/LOGINDISABLED|STARTTLS/.test(caps), caps);
    const login = srv.logs.find((l) => l.msg === 'imap login' && l.user === 'bob@example.test');
    assert.ok(login, 'the server logged the login');
    assert.equal(login.tls, true, 'the server saw TLS before the login');
    const mb = await client.mailboxOpen('INBOX');
    assert.equal(mb.path, 'INBOX');
    await client.logout();
  });

  it('APPENDs and FETCHes envelope, body structure, source, flags and UID', async () => {
    const client = await connect();
    const date = new Date('2026-11-05T12:14:15Z');
    const appended = await client.append('INBOX', MIME_MESSAGE, ['\\Seen', '$Forwarded'], date);
    assert.ok(appended, 'APPEND succeeded');
    const mb = await client.mailboxOpen('INBOX');
    assert.equal(appended.uidValidity, mb.uidValidity, 'APPENDUID carries the mailbox UIDVALIDITY');
    assert.equal(appended.uid, mb.uidNext - 1, 'APPENDUID carries the new UID');
    assert.equal(mb.exists, 1);
    assert.equal(mb.readOnly, false);
    assert.ok(mb.permanentFlags?.has('\\*'), 'keywords can be created');
    assert.equal(typeof mb.highestModseq, 'bigint');

    const msg = await client.fetchOne(
      String(appended.uid),
      { uid: true, flags: true, envelope: true, bodyStructure: true, source: true, internalDate: true, size: true },
      { uid: true },
    );
    assert.ok(msg);
    assert.equal(msg.uid, appended.uid);
    assert.equal(msg.seq, 1);
    // \Recent: this is the first session to select INBOX since the APPEND (RFC 3501 section 2.3.2).
    assert.deepEqual([...msg.flags!].sort(), ['$Forwarded', '\\Recent', '\\Seen']);
    assert.equal(msg.size, Buffer.byteLength(MIME_MESSAGE));
    assert.equal((msg.internalDate as Date).getTime(), date.getTime());
    assert.ok(msg.source!.equals(Buffer.from(MIME_MESSAGE)), 'source is byte for byte what was appended');

    const env = msg.envelope!;
    assert.equal(env.subject, 'Grüße from imapflow');
    assert.equal(env.messageId, '<imapflow-1@remote.example>');
    assert.equal(new Date(env.date!).toISOString(), '2026-11-22T04:01:00.000Z');
    assert.deepEqual(env.from, [{ name: 'Zoë Example', address: 'zoe@remote.example' }]);
    assert.deepEqual(env.to, [
      { name: '', address: 'alice@example.test' },
      { name: 'Bob B', address: 'bob@example.test' },
    ]);
    assert.deepEqual(env.cc, [{ name: '', address: 'carol@example.test' }]);

    const bs = msg.bodyStructure!;
    assert.equal(bs.type, 'multipart/mixed');
    assert.equal(bs.parameters?.boundary, 'b1');
    assert.equal(bs.childNodes?.length, 2);
    const [text, attachment] = bs.childNodes!;
    assert.equal(text!.part, '1');
    assert.equal(text!.type, 'text/plain');
    assert.equal(text!.parameters?.charset, 'utf-8');
    assert.equal(text!.encoding, '8bit');
    assert.equal(text!.size, Buffer.byteLength('Hällo from imapflow, the quick brown fox.'));
    // The CRLF before the boundary belongs to the boundary (RFC 2046 section 5.1.1), so the part
    // has no line end of its own: 0 lines, as Dovecot counts them.
    assert.equal(text!.lineCount, 0);
    assert.equal(attachment!.part, '2');
    assert.equal(attachment!.type, 'application/octet-stream');
    assert.equal(attachment!.encoding, 'base64');
    assert.equal(attachment!.disposition, 'attachment');
    assert.equal(attachment!.dispositionParameters?.filename, 'data.bin');

    // A part's content, decoded by imapflow from the base64 the server sends.
    const { content } = await client.download(String(appended.uid), '2', { uid: true });
    assert.ok(content, 'part 2 found');
    const chunks: Buffer[] = [];
    for await (const c of content) chunks.push(c as Buffer);
    assert.deepEqual([...Buffer.concat(chunks)], [0, 1, 2, 3, 4, 5, 6, 7]);
    await client.logout();
  });

  it('SEARCHes by flags, header text and UID', async () => {
    const client = await connect('carol@example.test', 'carol-pw');
    await client.mailboxCreate('Search');
    const uids: number[] = [];
    for (const [subject, flags] of [
      ['alpha report', ['\\Seen']],
      ['beta report', []],
      ['gamma notes', ['\\Flagged']],
    ] as const) {
      const r = await client.append('Search', plain(subject, `body of ${subject}`), [...flags]);
      assert.ok(r);
      uids.push(r.uid!);
    }
    await client.mailboxOpen('Search');
    assert.deepEqual(await client.search({ seen: false }, { uid: true }), [uids[1], uids[2]]);
    assert.deepEqual(await client.search({ flagged: true }), [3]);
    assert.deepEqual(await client.search({ subject: 'report' }, { uid: true }), [uids[0], uids[1]]);
    assert.deepEqual(await client.search({ body: 'gamma' }, { uid: true }), [uids[2]]);
    assert.deepEqual(await client.search({ or: [{ subject: 'alpha' }, { flagged: true }] }), [1, 3]);
    assert.deepEqual(await client.search({ uid: `${uids[1]}:*` }, { uid: true }), [uids[1], uids[2]]);
    assert.deepEqual(await client.search({ all: true, not: { seen: true } }), [2, 3]);
    assert.deepEqual(await client.search({ subject: 'nothing like this' }), []);
    await client.logout();
  });

  it('adds and removes flags and keywords', async () => {
    const client = await connect('carol@example.test', 'carol-pw');
    await client.mailboxOpen('Search');
    assert.equal(await client.messageFlagsAdd('1:*', ['\\Answered', 'Project-X']), true);
    assert.equal(await client.messageFlagsRemove('1', ['\\Seen']), true);
    assert.equal(await client.messageFlagsSet('3', ['\\Draft']), true);
    const flags = new Map<number, string[]>();
    for await (const m of client.fetch('1:*', { flags: true })) flags.set(m.seq, [...m.flags!].sort());
    assert.deepEqual(flags.get(1), ['Project-X', '\\Answered']);
    assert.deepEqual(flags.get(2), ['Project-X', '\\Answered']);
    assert.deepEqual(flags.get(3), ['\\Draft']);
    const mb = client.mailbox;
    assert.ok(mb && mb.permanentFlags?.has('\\*'));
    // The new keyword is announced to a new session in FLAGS.
    await client.mailboxClose();
    const reopened = await client.mailboxOpen('Search');
    assert.ok(reopened.flags.has('Project-X'), `FLAGS lists the keyword: ${[...reopened.flags].join(' ')}`);
    await client.logout();
  });

  it('COPYs and MOVEs with the UID mapping of COPYUID', async () => {
    const client = await connect('carol@example.test', 'carol-pw');
    await client.mailboxCreate('Copies');
    const src = await client.mailboxOpen('Search');
    const srcUids = (await client.search({ all: true }, { uid: true })) as number[];
    assert.equal(srcUids.length, 3);

    const copied = await client.messageCopy(`${srcUids[0]},${srcUids[2]}`, 'Copies', { uid: true });
    assert.ok(copied);
    assert.equal(copied.path, 'Search');
    assert.equal(copied.destination, 'Copies');
    const dest = await client.status('Copies', { uidValidity: true, messages: true });
    assert.ok(dest);
    assert.equal(copied.uidValidity, dest.uidValidity);
    assert.equal(dest.messages, 2);
    assert.deepEqual([...copied.uidMap!.keys()], [srcUids[0], srcUids[2]]);
    const copyTargets = [...copied.uidMap!.values()];

    const moved = await client.messageMove(String(srcUids[1]), 'Copies', { uid: true });
    assert.ok(moved);
    assert.deepEqual([...moved.uidMap!.keys()], [srcUids[1]]);
    const movedTo = moved.uidMap!.get(srcUids[1]!)!;
    assert.equal(client.mailbox && client.mailbox.exists, 2, 'the moved message left the source');
    assert.deepEqual(await client.search({ all: true }, { uid: true }), [srcUids[0], srcUids[2]]);
    assert.equal(src.path, 'Search');

    // The mapped UIDs name the same messages in the destination.
    const subjects = new Map<number, string>();
    const sourceSubjects = new Map<number, string>();
    for await (const m of client.fetch(`${srcUids[0]},${srcUids[2]}`, { envelope: true }, { uid: true }))
      sourceSubjects.set(m.uid, m.envelope!.subject!);
    await client.mailboxOpen('Copies');
    for await (const m of client.fetch('1:*', { envelope: true, flags: true }, { uid: true })) subjects.set(m.uid, m.envelope!.subject!);
    assert.equal(subjects.get(copyTargets[0]!), sourceSubjects.get(srcUids[0]!));
    assert.equal(subjects.get(copyTargets[1]!), sourceSubjects.get(srcUids[2]!));
    assert.equal(subjects.get(movedTo), 'beta report');
    await client.logout();
  });

  it('deletes messages (\\Deleted and EXPUNGE) and sees the expunge events', async () => {
    const client = await connect('carol@example.test', 'carol-pw');
    const mb = await client.mailboxOpen('Copies');
    assert.equal(mb.exists, 3);
    const expunged: number[] = [];
    client.on('expunge', (e: { seq: number }) => expunged.push(e.seq));
    const uids = (await client.search({ all: true }, { uid: true })) as number[];
    assert.equal(await client.messageDelete(String(uids[1]), { uid: true }), true);
    assert.deepEqual(expunged, [2]);
    assert.equal(client.mailbox && client.mailbox.exists, 2);
    assert.deepEqual(await client.search({ all: true }, { uid: true }), [uids[0], uids[2]]);
    const st = await client.status('Copies', { messages: true });
    assert.ok(st);
    assert.equal(st.messages, 2);
    await client.logout();
  });

  it('IDLE receives a message delivered over SMTP', async () => {
    const client = await connect('bob@example.test', 'bob-pw');
    const mb = await client.mailboxOpen('INBOX');
    const before = mb.exists;
    const exists: Array<{ count: number; prevCount: number }> = [];
    client.on('exists', (e: { count: number; prevCount: number }) => exists.push(e));
    const idling = client.idle();
    await waitFor(() => client.idling, 5000, 'IDLE started');

    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: srv.smtpPort,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
    });
    const info = await transport.sendMail({
      from: 'idle@remote.example',
      to: 'bob@example.test',
      subject: 'delivered while idling',
      text: 'ping',
    });
    transport.close();
    assert.deepEqual(info.accepted, ['bob@example.test']);

    await waitFor(() => exists.length > 0, 5000, 'EXISTS pushed during IDLE');
    assert.deepEqual(exists[0], { path: 'INBOX', count: before + 1, prevCount: before });
    assert.equal(client.idling, true, 'still idling: the EXISTS came unsolicited');
    // Any command ends the IDLE with DONE first.
    const msg = await client.fetchOne('*', { envelope: true, uid: true });
    assert.equal(await idling, undefined, 'IDLE ended with OK (imapflow returns false on failure)');
    assert.ok(msg);
    assert.equal(msg.envelope!.subject, 'delivered while idling');
    assert.equal(msg.envelope!.messageId, info.messageId);
    await client.logout();
  });

  it('STATUS reports counts, UIDs and HIGHESTMODSEQ', async () => {
    const client = await connect('bob@example.test', 'bob-pw');
    await client.append('Drafts', plain('draft one'), ['\\Draft', '\\Seen']);
    await client.append('Drafts', plain('draft two'), ['\\Draft']);
    const st = await client.status('Drafts', {
      messages: true,
      unseen: true,
      uidNext: true,
      uidValidity: true,
      highestModseq: true,
      recent: true,
    });
    assert.ok(st);
    assert.equal(st.path, 'Drafts');
    assert.equal(st.messages, 2);
    assert.equal(st.unseen, 1);
    assert.equal(st.uidNext, 3);
    assert.equal(typeof st.uidValidity, 'bigint');
    assert.ok(st.uidValidity! > 0n);
    assert.equal(typeof st.highestModseq, 'bigint');
    assert.ok(st.highestModseq! > 0n);
    // imapflow turns the NO into its NotFound error after checking with LIST.
    client.wire.length = 0;
    await assert.rejects(client.status('No such folder', { messages: true }), (err: Error & { code?: string }) => err.code === 'NotFound');
    assert.match(client.wire[1]!, /^S: \S+ NO \[NONEXISTENT\] /);
    await client.logout();
  });

  it('reads the quota of a user who has one', async () => {
    const client = await connect('small@example.test', 'x');
    await client.append('INBOX', plain('quota', 'x'.repeat(500)));
    const q = await client.getQuota('INBOX');
    assert.ok(q, 'a quota root');
    assert.equal(q.path, 'INBOX');
    // STORAGE is in KiB on the wire; imapflow reports bytes. 2000 bytes of quota is 1 KiB, the
    // 609-byte message 1 KiB (rounded up).
    assert.deepEqual(q.storage, { usage: 1024, limit: 1024, status: '100%' });
    await client.logout();

    const unlimited = await connect();
    assert.deepEqual(await unlimited.getQuota('INBOX'), { path: 'INBOX' }, 'no quota root (and no STORAGE) for a user without a quota');
    await unlimited.logout();
  });

  it('CONDSTORE and QRESYNC: changedSince fetches, unchangedSince stores, VANISHED on reselect', async () => {
    const client = await connect('erin@example.org', 'x', { qresync: true });
    assert.ok(client.enabled.has('QRESYNC'), 'imapflow ENABLEd QRESYNC');
    assert.ok(client.enabled.has('CONDSTORE'));
    await client.mailboxCreate('Sync');
    for (const s of ['one', 'two', 'three', 'four']) await client.append('Sync', plain(`sync ${s}`));
    const mb = await client.mailboxOpen('Sync');
    const modseq0 = mb.highestModseq!;
    const uidValidity = mb.uidValidity;
    const uids = (await client.search({ all: true }, { uid: true })) as number[];

    await client.messageFlagsAdd(String(uids[1]), ['\\Flagged'], { uid: true });
    const changed = await client.fetchAll('1:*', { uid: true, flags: true }, { uid: true, changedSince: modseq0 });
    assert.deepEqual(
      changed.map((m) => [m.uid, [...m.flags!]]),
      [[uids[1], ['\\Flagged', '\\Recent']]],
      'only the changed message since the MODSEQ',
    );
    assert.ok(changed[0]!.modseq! > modseq0);
    const modseq1 = changed[0]!.modseq!;

    // UNCHANGEDSINCE older than the message's MODSEQ: the store is refused for it.
    // imapflow sends the modifier after the flags (RFC 7162 wants it before); the server takes
    // it as the modifier rather than refusing the command (or, as Dovecot does, ignoring it).
    client.wire.length = 0;
    assert.equal(await client.messageFlagsAdd(String(uids[1]), ['\\Seen'], { uid: true, unchangedSince: modseq0 }), true);
    assert.match(client.wire[0]!, new RegExp(`^C: \\S+ UID STORE ${uids[1]} \\+FLAGS \\(\\\\Seen\\) \\(UNCHANGEDSINCE ${modseq0}\\)$`));
    assert.match(
      client.wire.at(-1)!,
      new RegExp(`^S: \\S+ OK \\[MODIFIED ${uids[1]}\\]`),
      'the conditional STORE was refused for the changed message',
    );
    const after = await client.fetchOne(String(uids[1]), { flags: true }, { uid: true });
    assert.ok(after);
    assert.equal(after.flags!.has('\\Seen'), false);
    assert.equal(await client.messageFlagsAdd(String(uids[1]), ['\\Seen'], { uid: true, unchangedSince: modseq1 }), true);

    // Expunges arrive as VANISHED with UIDs under QRESYNC.
    const vanished: Array<{ uid?: number; vanished?: boolean }> = [];
    client.on('expunge', (e: { uid?: number; vanished?: boolean }) => vanished.push(e));
    client.wire.length = 0;
    await client.messageDelete(String(uids[0]), { uid: true });
    assert.deepEqual(vanished, [{ path: 'Sync', uid: uids[0], vanished: true, earlier: false }]);
    // The tagged OK of UID EXPUNGE carries the new HIGHESTMODSEQ (RFC 7162 section 3.2.7), and
    // imapflow takes it: its next QRESYNC SELECT does not ask about its own expunge again.
    const expungeOk = /^S: \S+ OK \[HIGHESTMODSEQ (\d+)\] /.exec(client.wire.at(-1)!);
    assert.ok(expungeOk, client.wire.at(-1));
    const modseq2 = client.mailbox && client.mailbox.highestModseq;
    assert.equal(modseq2, BigInt(expungeOk[1]!));
    const serverSide = await client.status('Sync', { highestModseq: true });
    assert.ok(serverSide);
    assert.equal(serverSide.highestModseq, modseq2, 'the client is up to date with the server');
    await client.mailboxClose();

    // Another session changes the mailbox while this one is away.
    const other = await connect('erin@example.org', 'x');
    await other.mailboxOpen('Sync');
    await other.messageFlagsAdd(String(uids[2]), ['\\Answered'], { uid: true });
    await other.messageDelete(String(uids[3]), { uid: true });
    await other.logout();

    // Reselect with QRESYNC: VANISHED (EARLIER) and the changed flags come with the SELECT.
    const early: Array<{ uid?: number; earlier?: boolean }> = [];
    const flagEvents: Array<{ uid?: number; flags: Set<string> }> = [];
    client.on('expunge', (e: { uid?: number; earlier?: boolean }) => early.push(e));
    client.on('flags', (e: { uid?: number; flags: Set<string> }) => flagEvents.push(e));
    vanished.length = 0;
    const re = await client.mailboxOpen('Sync', { changedSince: modseq2 as bigint, uidValidity } as never);
    assert.ok(re.highestModseq! > (modseq2 as bigint));
    assert.equal(re.exists, 2);
    assert.deepEqual(
      early.map((e) => [e.uid, e.earlier]),
      [[uids[3], true]],
      "only the other session's expunge is VANISHED (EARLIER)",
    );
    assert.deepEqual(
      flagEvents.map((e) => [e.uid, [...e.flags]]),
      [[uids[2], ['\\Answered']]],
    );
    await client.logout();

    // Accepting imapflow's order changes nothing for RFC syntax: the modifier before the data
    // item works, and a flag list that merely contains the word is a flag list.
    const raw = await loggedIn(srv, 'erin@example.org', 'x');
    assert.equal((await raw.cmd('SELECT Sync')).status, 'OK');
    assert.equal((await raw.cmd(`UID STORE ${uids[2]} (UNCHANGEDSINCE 1) +FLAGS (\\Seen)`)).code, `MODIFIED ${uids[2]}`);
    const asFlags = await raw.cmd(`UID STORE ${uids[2]} +FLAGS (UNCHANGEDSINCE 7)`);
    assert.equal(asFlags.status, 'OK');
    assert.match(asFlags.untagged.join('\n'), /FLAGS \(\\Answered UNCHANGEDSINCE 7\)/);
    await raw.logout();
  });

  it('creates, renames and deletes folders with non-ASCII names (modified UTF-7 both ways)', async () => {
    const client = await connect();
    const created = await client.mailboxCreate(['Entwürfe', 'Überprüfung']);
    assert.equal(created.path, 'Entwürfe/Überprüfung');
    assert.equal(created.created, true);
    // Dovecot's Maildir++ layout with the modified UTF-7 names on disk.
    const entries = await readdir(path.join(srv.mailRoot, 'example.test/alice'));
    assert.ok(entries.includes('.Entw&APw-rfe.&ANw-berpr&APw-fung'), entries.join(' '));

    const r = await client.append('Entwürfe/Überprüfung', plain('umlaut folder'));
    assert.ok(r);
    let folders = await client.list();
    const names = folders.map((f) => f.path);
    assert.ok(names.includes('Entwürfe/Überprüfung'), names.join(', '));
    // The parent exists only as a prefix (Maildir++ has no directory for it), as with Dovecot.
    const parent = folders.find((f) => f.path === 'Entwürfe');
    assert.ok(parent, 'the parent is listed');
    assert.ok(parent.flags.has('\\NonExistent') && parent.flags.has('\\HasChildren'), [...parent.flags].join(' '));
    const leaf = folders.find((f) => f.path === 'Entwürfe/Überprüfung')!;
    assert.equal(leaf.name, 'Überprüfung');
    assert.equal(leaf.parentPath, 'Entwürfe');

    const renamed = await client.mailboxRename('Entwürfe/Überprüfung', '日本語 ✓');
    assert.equal(renamed.newPath, '日本語 ✓');
    const st = await client.status('日本語 ✓', { messages: true });
    assert.ok(st);
    assert.equal(st.path, '日本語 ✓');
    assert.equal(st.messages, 1, 'the message moved with the folder');
    const mb = await client.mailboxOpen('日本語 ✓');
    assert.equal(mb.path, '日本語 ✓');
    const msg = await client.fetchOne('1', { envelope: true });
    assert.ok(msg);
    assert.equal(msg.envelope!.subject, 'umlaut folder');
    await client.mailboxClose();

    const deleted = await client.mailboxDelete('日本語 ✓');
    assert.equal(deleted.path, '日本語 ✓');
    // DELETE keeps the subscription (RFC 3501 section 6.3.9), but LIST ... RETURN (SUBSCRIBED),
    // which imapflow uses, lists only mailboxes that exist (or have children); the subscription
    // shows where subscriptions are selected (RFC 5258 section 3).
    folders = await client.list();
    assert.ok(!folders.some((f) => /Entw|日本語/.test(f.path)), folders.map((f) => f.path).join(', '));
    const raw = await loggedIn(srv);
    assert.deepEqual(
      (await raw.cmd('LIST "" "*" RETURN (SUBSCRIBED)')).untagged.filter((l) => l.includes('&ZeVnLIqe-')),
      [],
    );
    assert.deepEqual(
      (await raw.cmd('LIST (SUBSCRIBED) "" "*"')).untagged.filter((l) => l.includes('&ZeVnLIqe-')),
      ['LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "&ZeVnLIqe- &JxM-"'],
    );
    assert.deepEqual(
      (await raw.cmd('LSUB "" "*"')).untagged.filter((l) => l.includes('&ZeVnLIqe-')),
      ['LSUB (\\Noselect) "/" "&ZeVnLIqe- &JxM-"'],
    );
    await raw.logout();
    await assert.rejects(
      client.mailboxOpen('日本語 ✓'),
      (err: Error & { serverResponseCode?: string }) => err.serverResponseCode === 'NONEXISTENT',
    );
    await client.logout();
  });
});
