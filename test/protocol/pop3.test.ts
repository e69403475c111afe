/**
 * POP3 over the wire (RFC 1939, RFC 2449 CAPA and response codes, RFC 2595 STLS, RFC 5034
 * AUTH, RFC 3206 [AUTH]/[SYS/TEMP]): greeting and capabilities, TLS and authentication rules,
 * every command with good and bad arguments and in the wrong state, the three states (deletion
 * only after QUIT, nothing on a dropped connection, RSET), the fixed snapshot, UIDL and sizes
 * against IMAP and the files, concurrent sessions (or one per mailbox with lock_session), the
 * refused logins in the log, and the limits.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempFail } from '../../src/errors.js';
import { isPop3Locked, POP3_LOCK_NAME } from '../../src/store/mail/pop3-lock.js';
import { loggedIn as imapLoggedIn } from '../helpers/imap-client.js';
import { Pop3TestClient, pop3LoggedIn } from '../helpers/pop3-client.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Delivers over LMTP (the message gets Return-Path, Delivered-To and Received prepended). */
async function deliver(srv: TestServer, to: string, message: string): Promise<void> {
  const c = await SmtpClient.connect(srv.lmtpPort);
  await c.greeting();
  await c.command('LHLO pop3.test');
  const r = await c.sendMail('sender@remote.example', [to], message);
  assert.equal(r.final?.[0]?.code, 250, `delivery to ${to}`);
  await c.quit();
}

function message(subject: string, body: string): string {
  return `From: sender@remote.example\r\nTo: someone@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@remote.example>\r\n\r\n${body}`;
}

/** The message files of a Maildir with their contents, in UID order (from dovecot-uidlist). */
async function files(srv: TestServer, mailbox: string): Promise<Array<{ name: string; data: Buffer }>> {
  const uidlist = await readFile(path.join(srv.mailRoot, mailbox, 'dovecot-uidlist'), 'latin1');
  const uidOf = new Map<string, number>();
  for (const line of uidlist.split('\n').slice(1)) {
    const m = /^(\d+)\b[^:]*:(.+)$/.exec(line);
    if (m) uidOf.set(m[2]!, Number(m[1]));
  }
  const names = await srv.messages(mailbox);
  const out = await Promise.all(names.map(async (name) => ({ name, data: await readFile(path.join(srv.mailRoot, mailbox, name)) })));
  const uid = (name: string) => uidOf.get(name.split('/')[1]!.split(':')[0]!) ?? Infinity;
  return out.sort((a, b) => uid(a.name) - uid(b.name));
}

/** What RETR must send: the stored file with CRLF line ends. */
const crlf = (data: Buffer) => Buffer.from(data.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');

/** The "login refused" log lines of POP3 with this reason. */
function refusals(srv: TestServer, reason: string): Array<Record<string, unknown>> {
  return srv.logs.filter((l) => l.msg === 'login refused' && l.protocol === 'pop3' && l.reason === reason);
}

/** Logs in, retrying while the previous session's lock is being released. */
async function login(port: number, user: string, pass: string): Promise<Pop3TestClient> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await pop3LoggedIn(port, user, pass);
    } catch (err) {
      if (attempt >= 50 || !/IN-USE/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

describe('POP3', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { auth: { failure_delay: '10ms', failure_delay_max: '40ms' } } });
    await deliver(srv, 'bob@example.test', message('first', 'Hello Bob.\r\n'));
    await deliver(srv, 'bob@example.test', message('dots', '.leading dot\r\n..two dots\r\nnot.leading\r\n.\r\nend\r\n'));
    await deliver(srv, 'bob@example.test', message('third', 'line 1\r\nline 2\r\nline 3\r\n'));
  });
  after(async () => {
    await srv.stop();
  });

  it('greets, and before STLS announces STLS but neither USER nor SASL, refusing passwords with [AUTH]', async () => {
    const c = await Pop3TestClient.connect(srv.pop3Port);
    const greeting = await c.greeting();
    assert.equal(greeting.ok, true);
    assert.match(greeting.text, /ready/);
    const capa = await c.multi('CAPA');
    assert.equal(capa.ok, true);
    assert.deepEqual(capa.lines, ['CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'PIPELINING', 'AUTH-RESP-CODE', 'STLS', 'IMPLEMENTATION maild']);
    for (const cmd of ['USER alice@example.test', 'PASS alice-pw', `AUTH PLAIN ${b64('\0alice@example.test\0alice-pw')}`, 'AUTH LOGIN']) {
      const r = await c.cmd(cmd);
      assert.equal(r.line, '-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.', cmd);
    }
    assert.ok(
      refusals(srv, 'cleartext').some((l) => l.user === 'alice@example.test'),
      'the refused login is logged with its reason',
    );
    // AUTH without an argument lists the mechanisms usable now: none before TLS.
    const mechs = await c.multi('AUTH');
    assert.deepEqual([mechs.ok, mechs.lines], [true, []]);
    // Commands pipelined behind STLS in cleartext are discarded (RFC 2595 section 4).
    const tls = await c.stls('USER alice@example.test\r\n');
    assert.equal(tls.ok, true);
    const capa2 = await c.multi('CAPA');
    assert.deepEqual(capa2.lines, [
      'CAPA',
      'TOP',
      'UIDL',
      'RESP-CODES',
      'PIPELINING',
      'AUTH-RESP-CODE',
      'USER',
      'SASL PLAIN LOGIN',
      'IMPLEMENTATION maild',
    ]);
    assert.equal((await c.cmd('PASS alice-pw')).line, '-ERR No username given.', 'the injected USER did not run');
    assert.equal((await c.cmd('STLS')).line, '-ERR TLS is already active.');
    const mechs2 = await c.multi('AUTH');
    assert.deepEqual(mechs2.lines, ['PLAIN', 'LOGIN']);
    assert.equal((await c.login('alice@example.test', 'alice-pw')).line, '+OK Logged in.');
    const capa3 = await c.multi('CAPA');
    assert.deepEqual(capa3.lines, ['CAPA', 'TOP', 'UIDL', 'RESP-CODES', 'PIPELINING', 'AUTH-RESP-CODE', 'IMPLEMENTATION maild']);
    assert.equal((await c.quit())?.line, '+OK Logging out.');
  });

  it('on the implicit-TLS port offers USER and SASL, not STLS', async () => {
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    const capa = await c.multi('CAPA');
    assert.ok(capa.lines.includes('USER') && capa.lines.includes('SASL PLAIN LOGIN'));
    assert.ok(!capa.lines.includes('STLS'));
    assert.equal((await c.cmd('STLS')).line, '-ERR TLS is already active.');
    await c.quit();
  });

  it('authenticates with USER/PASS (spaces in passwords kept), AUTH PLAIN and AUTH LOGIN, with and without an initial response', async () => {
    const variants: Array<[string, (c: Pop3TestClient) => Promise<string>]> = [
      ['user-pass', async (c) => (await c.login('Bob@Example.Test', 'bob-pw')).line],
      ['plain-ir', async (c) => (await c.cmd(`AUTH PLAIN ${b64('\0bob@example.test\0bob-pw')}`)).line],
      ['plain-authzid-self', async (c) => (await c.cmd(`AUTH plain ${b64('bob@example.test\0bob@example.test\0bob-pw')}`)).line],
      [
        'plain',
        async (c) => {
          c.write('AUTH PLAIN\r\n');
          assert.equal(await c.line(), '+ ');
          return (await c.cmd(b64('\0bob@example.test\0bob-pw'))).line;
        },
      ],
      [
        'login',
        async (c) => {
          c.write('AUTH LOGIN\r\n');
          assert.equal(await c.line(), `+ ${b64('Username:')}`);
          c.write(`${b64('bob@example.test')}\r\n`);
          assert.equal(await c.line(), `+ ${b64('Password:')}`);
          return (await c.cmd(b64('bob-pw'))).line;
        },
      ],
      [
        'login-ir',
        async (c) => {
          c.write(`AUTH LOGIN ${b64('bob@example.test')}\r\n`);
          assert.equal(await c.line(), `+ ${b64('Password:')}`);
          return (await c.cmd(b64('bob-pw'))).line;
        },
      ],
    ];
    for (const [name, run] of variants) {
      const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
      await c.greeting();
      assert.equal(await run(c), '+OK Logged in.', name);
      await c.quit();
      await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, 'example.test/bob')), 5000, 'lock released');
    }
    // A password with spaces: the whole rest of the PASS line (RFC 1939 section 7).
    const spaced = await startTestServer({
      directory: 'domains: [example.test]\nusers:\n  sp@example.test: { password: "{PLAIN}two words  here" }\n',
    });
    try {
      const c = await Pop3TestClient.connect(spaced.pop3sPort, { implicitTls: true });
      await c.greeting();
      assert.equal((await c.login('sp@example.test', 'two words  here')).line, '+OK Logged in.');
      await c.quit();
    } finally {
      await spaced.stop();
    }
  });

  it('refuses bad credentials with [AUTH], lets "*" cancel AUTH, and refuses bad SASL data', async () => {
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    const failuresBefore = srv.logs.filter((l) => l.msg === 'login failed').length;
    assert.equal((await c.login('alice@example.test', 'wrong')).line, '-ERR [AUTH] Authentication failed.');
    assert.equal((await c.login('nobody@example.test', 'x')).line, '-ERR [AUTH] Authentication failed.');
    assert.equal((await c.login('disabled@example.test', 'x')).line, '-ERR [AUTH] Authentication failed.');
    assert.equal(
      (await c.cmd(`AUTH PLAIN ${b64('carol@example.test\0alice@example.test\0alice-pw')}`)).line,
      '-ERR [AUTH] Authentication failed.',
      'authzid of another user',
    );
    assert.equal((await c.cmd('AUTH PLAIN =')).line, '-ERR [AUTH] Authentication failed.', 'an empty initial response');
    // Failed logins go through the shared limiter (and its growing delay).
    const failed = srv.logs.filter((l) => l.msg === 'login failed').slice(failuresBefore);
    assert.deepEqual(
      failed.map((l) => l.failures),
      [1, 2, 3],
    );
    assert.ok(failed.every((l) => l.protocol === 'pop3'));
    assert.deepEqual(
      failed.map((l) => [l.user, l.reason]),
      [
        ['alice@example.test', 'bad-password'],
        ['nobody@example.test', 'unknown-user'],
        ['disabled@example.test', 'disabled'],
      ],
    );
    assert.ok(
      refusals(srv, 'authzid').some((l) => l.user === 'alice@example.test'),
      'authorization as another user is logged',
    );
    // PASS needs a USER first, and a failed PASS needs a new one.
    assert.equal((await c.cmd('PASS alice-pw')).line, '-ERR No username given.');
    // Cancellation (RFC 5034 section 4) and bad base64.
    c.write('AUTH PLAIN\r\n');
    assert.equal(await c.line(), '+ ');
    assert.equal((await c.cmd('*')).line, '-ERR Authentication cancelled.');
    c.write('AUTH LOGIN\r\n');
    await c.line();
    c.write(`${b64('alice@example.test')}\r\n`);
    await c.line();
    assert.equal((await c.cmd('*')).line, '-ERR Authentication cancelled.');
    c.write('AUTH PLAIN\r\n');
    await c.line();
    assert.equal((await c.cmd('!!notbase64')).line, '-ERR Invalid base64 data in the response.');
    assert.equal((await c.cmd('AUTH PLAIN !!!')).line, '-ERR Invalid base64 data in the initial response.');
    assert.equal((await c.cmd('AUTH CRAM-MD5')).line, '-ERR Unsupported authentication mechanism.');
    assert.equal((await c.cmd('AUTH PLAIN a b')).line, '-ERR Too many arguments.');
    assert.equal((await c.cmd('USER')).line, '-ERR Missing user name.');
    // Still usable after all that.
    assert.equal((await c.login('alice@example.test', 'alice-pw')).line, '+OK Logged in.');
    await c.quit();
  });

  it('answers -ERR [SYS/TEMP] when the directory or the store is down, and works again after', async () => {
    const directory = srv.runtime.directory;
    (directory as unknown as { authenticate: unknown }).authenticate = async () => {
      throw tempFail('database down');
    };
    try {
      const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
      await c.greeting();
      assert.equal(
        (await c.login('alice@example.test', 'alice-pw')).line,
        '-ERR [SYS/TEMP] Temporary authentication failure, try again later.',
      );
      await c.quit();
    } finally {
      delete (directory as unknown as { authenticate?: unknown }).authenticate;
    }
    // The store: carol's Maildir is a file where a directory should be.
    const maildir = path.join(srv.mailRoot, 'example.test/carol');
    await rm(maildir, { recursive: true, force: true });
    await writeFile(maildir, 'not a directory');
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    const r = await c.login('carol@example.test', 'carol-pw');
    assert.equal(r.ok, false);
    assert.equal(r.code, 'SYS/TEMP');
    await rm(maildir);
    assert.equal((await c.login('carol@example.test', 'carol-pw')).line, '+OK Logged in.');
    await c.quit();
  });

  it('STAT, LIST and UIDL match the files, IMAP RFC822.SIZE, UID and UIDVALIDITY; bad arguments get -ERR', async () => {
    const stored = await files(srv, 'example.test/bob');
    assert.equal(stored.length, 3);
    const sizes = stored.map((f) => crlf(f.data).length);
    const c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    assert.equal((await c.cmd('STAT')).line, `+OK 3 ${sizes.reduce((a, b) => a + b, 0)}`);
    const list = await c.multi('LIST');
    assert.equal(list.text, '3 messages:');
    assert.deepEqual(
      list.lines,
      sizes.map((s, i) => `${i + 1} ${s}`),
    );
    assert.equal((await c.cmd('LIST 2')).line, `+OK 2 ${sizes[1]}`);
    const uidl = await c.multi('UIDL');
    assert.equal(uidl.lines.length, 3);
    for (const l of uidl.lines) assert.match(l, /^\d [0-9a-f]{16}$/);
    assert.equal((await c.cmd('UIDL 3')).line, `+OK ${uidl.lines[2]}`);
    // The same message over IMAP: UIDL = %08X of the UID, then of UIDVALIDITY (lower case, as
    // Dovecot's var_expand writes it); LIST = RFC822.SIZE.
    const imap = await imapLoggedIn(srv, 'bob@example.test', 'bob-pw');
    const sel = await imap.cmd('EXAMINE INBOX');
    const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(sel.untagged.join('\n'))![1]);
    const fetch = await imap.cmd('UID FETCH 1:* (UID RFC822.SIZE)');
    const imapView = fetch.untagged
      .map((l) => /^(\d+) FETCH \(UID (\d+) RFC822\.SIZE (\d+)\)$/.exec(l)!)
      .map((m) => ({ seq: Number(m[1]), uid: Number(m[2]), size: Number(m[3]) }));
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    assert.deepEqual(
      uidl.lines,
      imapView.map((m) => `${m.seq} ${hex(m.uid)}${hex(uidValidity)}`),
    );
    assert.deepEqual(
      list.lines,
      imapView.map((m) => `${m.seq} ${m.size}`),
    );
    await imap.logout();
    // Bad arguments, each an -ERR that leaves the session usable.
    const bad: Array<[string, string]> = [
      ['LIST 0', "-ERR There's no message 0."],
      ['LIST 4', "-ERR There's no message 4."],
      ['LIST x', '-ERR Invalid message number: x'],
      ['LIST -1', '-ERR Invalid message number: -1'],
      ['LIST 1 2', '-ERR LIST takes at most one argument.'],
      ['UIDL 99', "-ERR There's no message 99."],
      ['UIDL 1x', '-ERR Invalid message number: 1x'],
      ['STAT 1', '-ERR STAT takes no arguments.'],
      ['NOOP now', '-ERR NOOP takes no arguments.'],
      ['RSET 1', '-ERR RSET takes no arguments.'],
      ['LIST 99999999999999999999', '-ERR Invalid message number: 99999999999999999999'],
    ];
    for (const [cmd, expected] of bad) assert.equal((await c.cmd(cmd)).line, expected, cmd);
    assert.equal((await c.cmd('NOOP')).line, '+OK');
    await c.quit();
  });

  it('RETR sends the message with CRLF and dot-stuffing and the announced size; TOP the header and n lines', async () => {
    const stored = await files(srv, 'example.test/bob');
    const c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    for (let i = 0; i < stored.length; i++) {
      const r = await c.multi(`RETR ${i + 1}`);
      const expected = crlf(stored[i]!.data);
      assert.equal(r.text, `${expected.length} octets`);
      const unstuffed = Buffer.from(r.raw.toString('latin1').replace(/^\./gm, ''), 'latin1');
      assert.ok(unstuffed.equals(expected), `message ${i + 1} byte for byte`);
    }
    const dots = await c.multi('RETR 2');
    const wire = dots.raw.toString('latin1');
    assert.match(wire, /\r\n\.\.leading dot\r\n\.\.\.two dots\r\nnot\.leading\r\n\.\.\r\nend\r\n$/);
    assert.ok(dots.lines.includes('.leading dot') && dots.lines.includes('..two dots') && dots.lines.includes('.'));
    // TOP 3 0: the header and the blank line; TOP 3 2: two body lines; more than there are: all.
    const header = crlf(stored[2]!.data).toString('latin1').split('\r\n\r\n')[0]!;
    const top0 = await c.multi('TOP 3 0');
    assert.equal(top0.raw.toString('latin1'), `${header}\r\n\r\n`);
    const top2 = await c.multi('TOP 3 2');
    assert.equal(top2.raw.toString('latin1'), `${header}\r\n\r\nline 1\r\nline 2\r\n`);
    const top99 = await c.multi('TOP 3 99');
    assert.ok(top99.raw.equals(crlf(stored[2]!.data)));
    const topDots = await c.multi('TOP 2 1');
    assert.match(topDots.raw.toString('latin1'), /\r\n\r\n\.\.leading dot\r\n$/);
    const bad: Array<[string, string]> = [
      ['RETR 0', "-ERR There's no message 0."],
      ['RETR 99', "-ERR There's no message 99."],
      ['RETR', '-ERR Missing message number.'],
      ['RETR 1 2', '-ERR RETR takes one argument.'],
      ['RETR one', '-ERR Invalid message number: one'],
      ['TOP 1 -1', '-ERR Invalid line count: -1'],
      ['TOP 1', '-ERR TOP needs a message number and a line count.'],
      ['TOP 1 x', '-ERR Invalid line count: x'],
      ['TOP 0 1', "-ERR There's no message 0."],
      ['TOP 99 1', "-ERR There's no message 99."],
      ['TOP 1 1 1', '-ERR TOP needs a message number and a line count.'],
    ];
    for (const [cmd, expected] of bad) assert.equal((await c.cmd(cmd)).line, expected, cmd);
    await c.quit();
  });

  it('refuses every command in the wrong state, and unknown commands', async () => {
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    for (const cmd of ['STAT', 'LIST', 'LIST 1', 'RETR 1', 'DELE 1', 'NOOP', 'RSET', 'TOP 1 1', 'UIDL', 'UIDL 1']) {
      assert.equal((await c.cmd(cmd)).line, '-ERR Log in first.', cmd);
    }
    assert.equal((await c.cmd('APOP bob@example.test 0123456789abcdef')).line, '-ERR Unknown command.');
    assert.equal((await c.cmd('XTND XMIT')).line, '-ERR Unknown command.');
    assert.equal((await c.cmd('')).line, '-ERR Unknown command.');
    assert.equal((await c.login('carol@example.test', 'carol-pw')).ok, true);
    for (const cmd of ['USER bob@example.test', 'PASS x', 'AUTH PLAIN', 'AUTH', 'STLS']) {
      assert.match((await c.cmd(cmd)).line, /^-ERR [A-Z]+ is not valid in this state\.$/, cmd);
    }
    assert.equal((await c.cmd('stat')).ok, true, 'command names are case-insensitive');
    await c.quit();
  });

  it('answers pipelined commands in order (PIPELINING)', async () => {
    const c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    c.write('STAT\r\nLIST 1\r\nNOOP\r\nUIDL\r\nLIST 9\r\nTOP 1 0\r\nNOOP\r\n');
    assert.match((await c.reply()).line, /^\+OK 3 \d+$/);
    assert.match((await c.reply()).line, /^\+OK 1 \d+$/);
    assert.equal((await c.reply()).line, '+OK');
    assert.equal((await c.multiReply()).lines.length, 3);
    assert.equal((await c.reply()).line, "-ERR There's no message 9.");
    assert.match((await c.multiReply()).raw.toString('latin1'), /\r\n\r\n$/);
    assert.equal((await c.reply()).line, '+OK');
    await c.quit();
  });

  it('deletes only in UPDATE after QUIT: DELE marks, RSET unmarks, a dropped connection deletes nothing', async () => {
    const mailbox = 'example.test/bob';
    const initial = await files(srv, mailbox);
    // DELE then a dropped connection: nothing deleted.
    let c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    assert.equal((await c.cmd('DELE 1')).line, '+OK Marked to be deleted.');
    assert.equal((await c.cmd('DELE 1')).line, '-ERR Message is deleted.');
    assert.equal((await c.cmd('RETR 1')).line, '-ERR Message is deleted.');
    assert.equal((await c.cmd('LIST 1')).line, '-ERR Message is deleted.');
    assert.equal((await c.cmd('TOP 1 0')).line, '-ERR Message is deleted.');
    assert.equal((await c.cmd('UIDL 1')).line, '-ERR Message is deleted.');
    const stat = await c.cmd('STAT');
    assert.equal(stat.line, `+OK 2 ${crlf(initial[1]!.data).length + crlf(initial[2]!.data).length}`);
    assert.deepEqual(
      (await c.multi('LIST')).lines.map((l) => l.split(' ')[0]),
      ['2', '3'],
    );
    assert.deepEqual(
      (await c.multi('UIDL')).lines.map((l) => l.split(' ')[0]),
      ['2', '3'],
    );
    c.destroy();
    await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, mailbox)), 5000, 'lock released');
    assert.equal((await files(srv, mailbox)).length, 3, 'a dropped connection deletes nothing');
    // DELE, RSET, QUIT: nothing deleted.
    c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    await c.cmd('DELE 1');
    await c.cmd('DELE 3');
    const rset = await c.cmd('RSET');
    assert.match(rset.line, /^\+OK maildrop has 3 messages \(\d+ octets\)$/);
    assert.equal((await c.cmd('LIST 1')).ok, true);
    assert.equal((await c.quit())?.line, '+OK Logging out.');
    assert.equal((await files(srv, mailbox)).length, 3, 'RSET undid the marks');
    // An IMAP session on the INBOX sees the deletion of a QUIT as EXPUNGE.
    const imap = await imapLoggedIn(srv, 'bob@example.test', 'bob-pw');
    await imap.cmd('SELECT INBOX');
    c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    const uidlBefore = (await c.multi('UIDL')).lines;
    assert.equal((await c.cmd('DELE 2')).ok, true);
    assert.equal((await files(srv, mailbox)).length, 3, 'still there before QUIT');
    assert.equal((await c.quit())?.line, '+OK Logging out, messages deleted.');
    const remaining = await files(srv, mailbox);
    assert.deepEqual(
      remaining.map((f) => f.name.split('/')[1]!.split(':')[0]),
      [initial[0]!, initial[2]!].map((f) => f.name.split('/')[1]!.split(':')[0]),
    );
    const noop = await imap.cmd('NOOP');
    // The three were \Recent for this session (its SELECT was the first); two are left.
    assert.deepEqual(noop.untagged, ['2 EXPUNGE', '2 RECENT']);
    await imap.logout();
    // The remaining messages keep their UIDLs, renumbered.
    c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    assert.deepEqual(
      (await c.multi('UIDL')).lines.map((l) => l.split(' ')[1]),
      [uidlBefore[0]!, uidlBefore[2]!].map((l) => l.split(' ')[1]),
    );
    await c.quit();
  });

  it('keeps message numbers and sizes for the session: mail that arrives later shows in the next one', async () => {
    const c = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    const stat = (await c.cmd('STAT')).line;
    const list = (await c.multi('LIST')).lines;
    const count = list.length;
    await deliver(srv, 'bob@example.test', message('late', 'Arrived during the session.\r\n'));
    // IMAP sees it at once; this POP3 session does not.
    assert.equal((await c.cmd('STAT')).line, stat);
    assert.deepEqual((await c.multi('LIST')).lines, list);
    assert.equal((await c.cmd(`RETR ${count + 1}`)).line, `-ERR There's no message ${count + 1}.`);
    await c.quit();
    const next = await login(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    assert.equal((await next.multi('LIST')).lines.length, count + 1);
    assert.match((await next.multi(`RETR ${count + 1}`)).raw.toString('latin1'), /Subject: late/);
    await next.quit();
  });

  it('answers -ERR for a message another session expunged meanwhile, keeping the numbering', async () => {
    await deliver(srv, 'erin@example.org', message('e1', 'one\r\n'));
    await deliver(srv, 'erin@example.org', message('e2', 'two\r\n'));
    const c = await login(srv.pop3sPort, 'erin@example.org', 'x');
    const list = (await c.multi('LIST')).lines;
    const imap = await imapLoggedIn(srv, 'erin@example.org', 'x');
    await imap.cmd('SELECT INBOX');
    await imap.cmd('STORE 1 +FLAGS (\\Deleted)');
    assert.equal((await imap.cmd('EXPUNGE')).status, 'OK');
    await imap.logout();
    assert.equal((await c.cmd('RETR 1')).line, '-ERR Message was removed by another session.');
    assert.deepEqual((await c.multi('LIST')).lines, list, 'the snapshot keeps its numbers');
    assert.match((await c.multi('RETR 2')).raw.toString('latin1'), /Subject: e2/);
    assert.equal((await c.cmd('DELE 1')).ok, true);
    assert.equal((await c.quit())?.line, '+OK Logging out.', 'nothing left to delete');
    assert.equal((await files(srv, 'example.org/erin')).length, 1);
  });

  it('marks retrieved messages \\Seen when the session ends, as Dovecot does (not TOP, not after RSET)', async () => {
    await deliver(srv, 'carol@example.test', message('s1', 'one\r\n'));
    await deliver(srv, 'carol@example.test', message('s2', 'two\r\n'));
    await deliver(srv, 'carol@example.test', message('s3', 'three\r\n'));
    const flags = async () => {
      const imap = await imapLoggedIn(srv, 'carol@example.test', 'carol-pw');
      await imap.cmd('EXAMINE INBOX');
      const f = await imap.cmd('FETCH 1:* (FLAGS)');
      await imap.logout();
      // Without \Recent: EXAMINE shows the deliveries as recent (no session has SELECTed INBOX).
      return f.untagged.map((l) => /FLAGS \(([^)]*)\)/.exec(l)![1]!.replace(/ ?\\Recent/, ''));
    };
    assert.deepEqual(await flags(), ['', '', '']);
    let c = await login(srv.pop3sPort, 'carol@example.test', 'carol-pw');
    await c.multi('RETR 1');
    await c.multi('TOP 2 5');
    await c.quit();
    assert.deepEqual(await flags(), ['\\Seen', '', '']);
    c = await login(srv.pop3sPort, 'carol@example.test', 'carol-pw');
    await c.multi('RETR 2');
    await c.cmd('RSET');
    await c.multi('RETR 3');
    c.destroy(); // a dropped connection still records \Seen (Dovecot's client_destroy does too)
    await waitFor(async () => (await flags())[2] === '\\Seen', 5000, '\\Seen after the drop');
    assert.deepEqual(await flags(), ['\\Seen', '', '\\Seen']);
  });

  it('allows concurrent sessions of one user (pop3_lock_session = no); DELE and QUIT skip what the other removed', async () => {
    for (const subject of ['c1', 'c2', 'c3']) await deliver(srv, 'alice@example.test', message(subject, `${subject}\r\n`));
    const before = (await files(srv, 'example.test/alice')).length;
    const first = await pop3LoggedIn(srv.pop3sPort, 'alice@example.test', 'alice-pw');
    const second = await pop3LoggedIn(srv.pop3sPort, 'alice@example.test', 'alice-pw');
    await assert.rejects(stat(path.join(srv.mailRoot, 'example.test/alice', POP3_LOCK_NAME)), /ENOENT/, 'no session lock');
    const list = (await first.multi('LIST')).lines;
    assert.deepEqual((await second.multi('LIST')).lines, list, 'both see the same maildrop');
    assert.equal(list.length, before);
    // Both mark message 1; the second marks message 2 as well.
    assert.equal((await first.cmd('DELE 1')).ok, true);
    assert.equal((await second.cmd('DELE 1')).ok, true);
    assert.equal((await second.cmd('DELE 2')).ok, true);
    assert.equal((await first.quit())?.line, '+OK Logging out, messages deleted.');
    assert.equal((await files(srv, 'example.test/alice')).length, before - 1);
    // The second session keeps its numbering; the message the first removed is gone for it.
    assert.equal((await second.cmd('RETR 1')).line, '-ERR Message is deleted.');
    assert.equal((await second.cmd('RSET')).ok, true);
    assert.equal((await second.cmd('RETR 1')).line, '-ERR Message was removed by another session.');
    assert.equal((await second.cmd('DELE 1')).ok, true);
    assert.equal((await second.cmd('DELE 2')).ok, true);
    assert.equal((await second.quit())?.line, '+OK Logging out, messages deleted.', 'no error for the one already removed');
    assert.equal((await files(srv, 'example.test/alice')).length, before - 2);
    // The quota bookkeeping counted each removal once.
    const third = await pop3LoggedIn(srv.pop3sPort, 'alice@example.test', 'alice-pw');
    assert.match((await third.cmd('STAT')).line, new RegExp(`^\\+OK ${before - 2} `));
    await third.quit();
    assert.equal(srv.logs.filter((l) => l.msg === 'pop3 command failed').length, 0, 'no command failed');
  });

  it('answers a 10 KB line with -ERR and goes on; closes after too many bad commands in a row', async () => {
    const c = await login(srv.pop3sPort, 'carol@example.test', 'carol-pw');
    c.write(`NOOP ${'x'.repeat(10_240)}\r\n`);
    assert.equal((await c.reply()).line, '-ERR Line too long.');
    assert.equal((await c.cmd('NOOP')).line, '+OK', 'the session goes on');
    // A megabyte without a line end is dropped as it comes, and the session still works.
    for (let i = 0; i < 16; i++) c.write(Buffer.alloc(65_536, 0x41));
    c.write('\r\nNOOP\r\n');
    assert.equal((await c.reply()).line, '-ERR Line too long.');
    assert.equal((await c.reply()).line, '+OK');
    // 20 failed commands in a row (Dovecot's limit): the connection closes; nothing is deleted.
    await c.cmd('DELE 1');
    for (let i = 0; i < 19; i++) assert.equal((await c.cmd('BOGUS')).ok, false);
    c.write('BOGUS\r\n');
    assert.equal(await c.line(), '-ERR Unknown command.');
    assert.equal(await c.line(), '-ERR Too many bad commands.');
    assert.equal(await c.waitClosed(), true);
    await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, 'example.test/carol')), 5000, 'lock released');
    const again = await login(srv.pop3sPort, 'carol@example.test', 'carol-pw');
    assert.match((await again.cmd('STAT')).line, /^\+OK 3 /);
    await again.quit();
  });
});

describe('POP3 with lock_session', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { pop3: { lock_session: true } } });
  });
  after(async () => {
    await srv.stop();
  });

  it('allows one session per mailbox: a second gets [IN-USE] (logged), also for a lock file of another process', async () => {
    const first = await login(srv.pop3sPort, 'alice@example.test', 'alice-pw');
    const maildir = path.join(srv.mailRoot, 'example.test/alice');
    const lockFile = path.join(maildir, POP3_LOCK_NAME);
    assert.equal(await readFile(lockFile, 'latin1'), `${process.pid}:${os.hostname()}`, "Dovecot's dotlock content");
    const second = await Pop3TestClient.connect(srv.pop3Port);
    await second.greeting();
    await second.stls();
    assert.equal((await second.login('alice@example.test', 'alice-pw')).line, '-ERR [IN-USE] Mailbox is locked by another POP3 session.');
    assert.ok(
      srv.logs.some((l) => l.msg === 'login refused' && l.protocol === 'pop3' && l.reason === 'in-use' && l.user === 'alice@example.test'),
      'the refusal is logged with its reason',
    );
    // Still in AUTHORIZATION: it may try again once the first has quit.
    await first.quit();
    await assert.rejects(stat(lockFile), /ENOENT/, 'QUIT removed the lock file');
    assert.equal((await second.login('alice@example.test', 'alice-pw')).line, '+OK Logged in.');
    await second.quit();
    // Another process's session (Dovecot with pop3_lock_session, or a second maild): PID 1 is alive.
    await writeFile(lockFile, `1:${os.hostname()}`);
    const third = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await third.greeting();
    assert.equal((await third.login('alice@example.test', 'alice-pw')).code, 'IN-USE');
    // A lock left by a process that is gone (older than Dovecot's 2 s PID check) is overridden.
    await writeFile(lockFile, `999999999:${os.hostname()}`);
    const old = new Date(Date.now() - 60_000);
    await utimes(lockFile, old, old);
    assert.equal((await third.login('alice@example.test', 'alice-pw')).line, '+OK Logged in.');
    assert.equal(await readFile(lockFile, 'latin1'), `${process.pid}:${os.hostname()}`);
    await third.quit();
  });
});

describe('POP3 settings', () => {
  let srv: TestServer;
  let mailRoot: string;
  before(async () => {
    mailRoot = await mkdtemp(path.join(os.tmpdir(), 'maild-pop3-mail-'));
    srv = await startTestServer({
      mailRoot,
      config: {
        auth: { cleartext: 'trusted_networks', failure_delay: '10ms', failure_delay_max: '40ms' },
        trusted_networks: ['127.0.0.0/8'],
        pop3: { login_delay: '1h', idle_timeout: '1s', bad_commands: 3, line_length: 300 },
        limits: { message_size: '1M', idle_timeout: '30s', connections_per_ip: 4 },
      },
    });
    await deliver(srv, 'bob@example.test', message('kept', 'Keep me.\r\n'));
  });
  after(async () => {
    await srv.stop().catch(() => undefined);
    await rm(mailRoot, { recursive: true, force: true });
  });

  it('allows cleartext logins from trusted networks when configured, and announces LOGIN-DELAY', async () => {
    const c = await Pop3TestClient.connect(srv.pop3Port);
    await c.greeting();
    const capa = await c.multi('CAPA');
    assert.deepEqual(capa.lines, [
      'CAPA',
      'TOP',
      'UIDL',
      'RESP-CODES',
      'PIPELINING',
      'AUTH-RESP-CODE',
      'STLS',
      'USER',
      'SASL PLAIN LOGIN',
      'LOGIN-DELAY 3600',
      'IMPLEMENTATION maild',
    ]);
    assert.equal((await c.login('alice@example.test', 'alice-pw')).line, '+OK Logged in.');
    await c.quit();
    // RFC 2449 section 8.1.2: logging in again within the delay is refused with [LOGIN-DELAY].
    const again = await Pop3TestClient.connect(srv.pop3Port);
    await again.greeting();
    const r = await again.login('alice@example.test', 'alice-pw');
    assert.equal(r.code, 'LOGIN-DELAY');
    assert.match(r.text, /wait \d+ seconds/);
    assert.ok(
      refusals(srv, 'login-delay').some((l) => l.user === 'alice@example.test'),
      'the refusal is logged with its reason',
    );
    await again.quit();
  });

  it('refuses connections over the per-address limit with -ERR [SYS/TEMP]', async () => {
    await waitFor(() => srv.runtime.pop3Sessions.size === 0, 5000, 'earlier sessions gone');
    const open = await Promise.all(Array.from({ length: 4 }, () => Pop3TestClient.connect(srv.pop3Port)));
    for (const c of open) assert.equal((await c.greeting()).ok, true);
    const extra = await Pop3TestClient.connect(srv.pop3Port);
    assert.equal((await extra.greeting()).line, '-ERR [SYS/TEMP] Too many connections, try again later.');
    assert.equal(await extra.waitClosed(), true);
    for (const c of open) await c.quit();
  });

  it('applies the configured line length and bad-command limit', async () => {
    const c = await Pop3TestClient.connect(srv.pop3Port);
    await c.greeting();
    assert.equal((await c.cmd(`USER ${'a'.repeat(290)}`)).ok, true);
    assert.equal((await c.cmd(`USER ${'a'.repeat(300)}`)).line, '-ERR Line too long.');
    assert.equal((await c.cmd('NOPE')).line, '-ERR Unknown command.');
    c.write('NOPE\r\n');
    assert.equal(await c.line(), '-ERR Unknown command.');
    assert.equal(await c.line(), '-ERR Too many bad commands.');
    assert.equal(await c.waitClosed(), true);
  });

  it('closes an idle session without a response and without deleting (RFC 1939 autologout)', async () => {
    const c = await Pop3TestClient.connect(srv.pop3Port);
    await c.greeting();
    assert.equal((await c.login('bob@example.test', 'bob-pw')).ok, true);
    assert.equal((await c.cmd('DELE 1')).ok, true);
    assert.equal(await c.waitClosed(), true);
    assert.equal(c.pending.length, 0, 'no response on autologout');
    await waitFor(() => !isPop3Locked(path.join(mailRoot, 'example.test/bob')), 5000, 'lock released');
    assert.equal((await readdir(path.join(mailRoot, 'example.test/bob/cur'))).length, 1);
  });

  it('at shutdown tells waiting sessions [SYS/TEMP] and deletes nothing without QUIT', async () => {
    await deliver(srv, 'erin@example.org', message('x', 'y\r\n'));
    // (The idle timeout of this server is 1 s: the sessions are opened right before the stop.)
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    assert.equal((await c.login('carol@example.test', 'carol-pw')).ok, true);
    const d = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await d.greeting();
    assert.equal((await d.login('erin@example.org', 'x')).ok, true);
    assert.equal((await d.cmd('DELE 1')).ok, true);
    await srv.stop();
    assert.equal(await d.line(), '-ERR [SYS/TEMP] Server shutting down.');
    assert.equal(await c.line(), '-ERR [SYS/TEMP] Server shutting down.');
    assert.equal(await d.waitClosed(), true);
    assert.equal((await readdir(path.join(mailRoot, 'example.org/erin/cur'))).length, 1);
    await assert.rejects(stat(path.join(mailRoot, 'example.org/erin', POP3_LOCK_NAME)), /ENOENT/);
  });
});

describe('POP3 login timeout', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { pop3: { login_timeout: '1s', idle_timeout: '30s' } } });
  });
  after(async () => {
    await srv.stop();
  });

  it('closes a connection that has not logged in within login_timeout, however busy it keeps itself', async () => {
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    let reply;
    for (let i = 0; i < 500; i++) {
      reply = await c.cmd('USER someone@example.test');
      if (!reply.ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(reply?.line, '-ERR Login timed out, closing connection.');
    assert.equal(await c.waitClosed(), true);
    assert.ok(srv.logs.some((l) => l.msg === 'pop3 login timeout: no login in time'));
  });

  it('does not limit a session once logged in', async () => {
    const c = await pop3LoggedIn(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    // Keep going until a connection opened after this one has timed out: this one is still served.
    const other = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await other.greeting();
    for (let i = 0; i < 500 && !(await other.waitClosed(50)); i++) assert.equal((await c.cmd('NOOP')).line, '+OK');
    assert.equal(await other.waitClosed(0), true, 'the other connection timed out');
    assert.equal((await c.cmd('NOOP')).line, '+OK');
    await c.quit();
  });
});
