/**
 * Python's imaplib against the IMAP listeners, over IMAP4_SSL and over STARTTLS: a script
 * (scripts/imaplib_session.py) runs one session through imaplib's own methods (login, list,
 * select, append, fetch, search, store, copy, expunge, close, logout) and prints what each
 * returned as JSON; imaplib raises on any response it cannot parse, so a clean run is itself an
 * assertion. The results are checked here, and the Maildir on disk after the session.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { DEMO_DIRECTORY, startTestServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scripts', 'imaplib_session.py');

/** A password that needs a quoted string with escapes (imaplib quotes it, the parser unquotes it). */
const TRICKY_PASSWORD = 'se cret "q" \\b';
const DIRECTORY = DEMO_DIRECTORY.replace('users:\n', `users:\n  py@example.test: { password: '{PLAIN}${TRICKY_PASSWORD}' }\n`);

const MESSAGE = [
  'From: "Zoë" <zoe@example.org>',
  'To: alice@example.test',
  'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=',
  'Date: Sun, 22 Nov 2026 04:01:00 +0000',
  'Message-ID: <py@example.org>',
  '',
  'Hällo body',
  '',
].join('\r\n');

interface Step {
  typ: string;
  data: unknown[];
}
type Output = Record<string, unknown>;

async function imaplibSession(
  port: number,
  tls: 'implicit' | 'starttls',
  user: string,
  password: string,
  mailbox: string,
): Promise<Output> {
  const { stdout, stderr } = await run('python3', [SCRIPT, JSON.stringify({ port, tls, user, password, mailbox, message: MESSAGE })], {
    timeout: 60_000,
  }).catch((err: Error & { stdout?: string; stderr?: string }) => {
    throw new Error(`imaplib session failed: ${err.message}\n${err.stderr ?? ''}`);
  });
  assert.equal(stderr, '', 'imaplib wrote nothing to stderr');
  return JSON.parse(stdout) as Output;
}

const step = (out: Output, name: string): Step => {
  const s = out[name] as Step | undefined;
  assert.ok(s, `step ${name} ran`);
  return s;
};

/** What every session must show, whichever way TLS came about. */
function checkSession(out: Output, mailbox: string): void {
  assert.match(out.greeting as string, /^\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] maild IMAP ready$/);
  assert.match(out.tls_version as string, /^TLSv1\.[23]$/);
  const caps = out.capabilities as string[];
  for (const c of ['IMAP4REV1', 'IDLE', 'UIDPLUS', 'MOVE', 'NAMESPACE', 'AUTH=PLAIN']) assert.ok(caps.includes(c), c);
  assert.ok(!caps.includes('STARTTLS') && !caps.includes('LOGINDISABLED'), 'nothing TLS-related left to do');

  assert.equal(step(out, 'login').typ, 'OK');
  assert.match(step(out, 'login').data[0] as string, /^\[CAPABILITY IMAP4rev1 .*\] Logged in$/);
  assert.equal(out.state, 'AUTH');
  assert.deepEqual(step(out, 'namespace').data, ['(("" "/")) NIL NIL']);

  // LIST: the special-use folders and the new one, parsed by imaplib line by line.
  assert.deepEqual(step(out, 'create'), { typ: 'OK', data: ['CREATE completed'] });
  const list = step(out, 'list').data as string[];
  assert.ok(list.includes('(\\HasNoChildren) "/" "INBOX"'), list.join('\n'));
  assert.ok(list.includes('(\\HasNoChildren \\Sent) "/" "Sent"'));
  assert.ok(list.includes(`(\\HasNoChildren) "/" "${mailbox}"`));
  assert.deepEqual(step(out, 'list_pattern').data, [`(\\HasNoChildren) "/" "${mailbox}"`]);
  assert.ok((step(out, 'lsub').data as string[]).includes('(\\Trash) "/" "Trash"'));

  // APPEND: APPENDUID with consecutive UIDs in one UIDVALIDITY, the one SELECT reports.
  assert.equal(out.date_sent, '"05-Nov-2026 13:14:15 +0100"');
  const uidValidity = (out.select_untagged as Record<string, string[]>).UIDVALIDITY![0]!;
  assert.match(uidValidity, /^[1-9]\d*$/);
  assert.deepEqual(out.appenduid, [`${uidValidity} 1`]);
  assert.deepEqual(step(out, 'append').data, [`[APPENDUID ${uidValidity} 1] Append completed`]);
  assert.deepEqual(step(out, 'append2').data, [`[APPENDUID ${uidValidity} 2] Append completed`]);
  assert.deepEqual(step(out, 'append3').data, [`[APPENDUID ${uidValidity} 3] Append completed`]);

  // SELECT, as imaplib records its untagged responses.
  assert.deepEqual(step(out, 'select'), { typ: 'OK', data: ['3'] });
  const sel = out.select_untagged as Record<string, unknown[]>;
  assert.deepEqual(sel.EXISTS, ['3']);
  // The three appended messages are \Recent for this session: the first to select the mailbox.
  assert.deepEqual(sel.RECENT, ['3']);
  assert.deepEqual(sel.UIDNEXT, ['4']);
  assert.deepEqual(sel.FLAGS, ['(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)']);
  assert.deepEqual(sel.PERMANENTFLAGS, ['(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)']);
  assert.deepEqual(sel['READ-WRITE'], ['']);
  assert.match(String(sel.HIGHESTMODSEQ?.[0]), /^\d+$/);

  // FETCH: flags, sizes and dates; imaplib's ParseFlags and Internaldate2tuple read them.
  const size = Buffer.byteLength(MESSAGE);
  const fetched = step(out, 'fetch_flags').data as string[];
  assert.equal(fetched.length, 3);
  // INTERNALDATE is in the server's time zone; imaplib's parser turns it back into the instant.
  assert.match(
    fetched[0]!,
    new RegExp(
      `^1 \\(UID 1 FLAGS \\(\\\\Flagged \\\\Recent \\$Label1\\) RFC822\\.SIZE ${size} INTERNALDATE "\\d\\d-Nov-2026 \\d\\d:\\d\\d:15 [+-]\\d{4}"\\)$`,
    ),
  );
  assert.match(
    fetched[1]!,
    /^2 \(UID 2 FLAGS \(\\Recent\) RFC822\.SIZE 53 INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"\)$/,
  );
  assert.match(fetched[2]!, /^3 \(UID 3 FLAGS \(\\Seen \\Recent\) RFC822\.SIZE 51 INTERNALDATE "/);
  assert.equal(out.internaldate_epoch, Date.UTC(2026, 10, 5, 12, 14, 15) / 1000);
  assert.deepEqual(out.parsed_flags, [['\\Flagged', '\\Recent', '$Label1'], ['\\Recent'], ['\\Seen', '\\Recent']]);

  // Literals: imaplib hands them over as (prefix, literal) pairs, byte for byte.
  assert.deepEqual(step(out, 'fetch_body').data, [
    [`1 (BODY[] {${size}}`, Buffer.from(MESSAGE).toString('latin1')],
    [' BODY[HEADER.FIELDS (SUBJECT)] {40}', 'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\n'],
    ')',
  ]);
  // ENVELOPE with the 8-bit display name as a literal (its UTF-8 bytes), and BODYSTRUCTURE.
  const zoe = Buffer.from('Zoë').toString('latin1');
  const envelope = (step(out, 'fetch_envelope').data as Array<string | string[]>).flat().join('');
  assert.equal(
    envelope,
    `1 (ENVELOPE ("Sun, 22 Nov 2026 04:01:00 +0000" "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=" (({4}${zoe} NIL "zoe" "example.org")) (({4}${zoe} NIL "zoe" "example.org")) (({4}${zoe} NIL "zoe" "example.org")) ((NIL NIL "alice" "example.test")) NIL NIL NIL "<py@example.org>") BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL NIL NIL))`,
  );

  // SEARCH.
  assert.deepEqual(step(out, 'search_all').data, ['1 2 3']);
  assert.deepEqual(step(out, 'search_unseen').data, ['1 2']);
  assert.deepEqual(step(out, 'search_subject').data, ['2']);
  assert.deepEqual(step(out, 'search_charset').data, ['1 2 3']);
  assert.deepEqual(step(out, 'uid_search').data, ['1']);

  // STORE, loud and silent.
  assert.deepEqual(step(out, 'store'), { typ: 'OK', data: ['2 (FLAGS (\\Answered \\Deleted \\Recent))'] });
  assert.deepEqual(step(out, 'store_silent'), { typ: 'OK', data: [null] });
  assert.deepEqual(step(out, 'fetch_after_store').data, [
    '1 (FLAGS (\\Flagged \\Recent))',
    '2 (FLAGS (\\Answered \\Deleted \\Recent))',
    '3 (FLAGS (\\Seen \\Recent))',
  ]);

  // COPY and UID COPY with COPYUID into a child folder.
  const copy = step(out, 'copy');
  assert.equal(copy.typ, 'OK');
  const m = /^\[COPYUID (\d+) 1,3 1,2\] Copy completed$/.exec(copy.data[0] as string);
  assert.ok(m, String(copy.data[0]));
  assert.notEqual(m[1], uidValidity, 'the target has its own UIDVALIDITY');
  assert.equal(step(out, 'uid_copy').typ, 'OK');
  assert.deepEqual(out.copyuid, [`${m[1]} 1,3 1,2`]);
  assert.deepEqual(out.uid_copyuid, [`${m[1]} 2 3`]);
  assert.deepEqual(step(out, 'status_target').data, [`"${mailbox}/Copied" (MESSAGES 3 UIDNEXT 4 UNSEEN 2)`]);

  // EXPUNGE reports the sequence number; the rest renumber.
  assert.deepEqual(step(out, 'expunge'), { typ: 'OK', data: ['2'] });
  assert.deepEqual(step(out, 'search_after_expunge').data, ['1 2']);
  assert.equal(step(out, 'close').typ, 'OK');
  assert.deepEqual(step(out, 'status_after').data, [`"${mailbox}" (MESSAGES 2 UNSEEN 1)`]);

  assert.deepEqual(step(out, 'getquotaroot'), { typ: 'OK', data: [['"INBOX"'], [null]] }, 'no quota root for a user without a quota');
  assert.deepEqual(step(out, 'rename'), { typ: 'OK', data: ['RENAME completed'] });
  assert.deepEqual(step(out, 'delete'), { typ: 'OK', data: ['DELETE completed'] });
  assert.deepEqual(step(out, 'select_missing'), { typ: 'NO', data: ['[NONEXISTENT] Mailbox does not exist'] });
  assert.deepEqual(step(out, 'logout'), { typ: 'BYE', data: ['Logging out'] });
  assert.equal(out.state_after, 'LOGOUT');
}

describe("interop with Python's imaplib", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ directory: DIRECTORY });
  });
  after(async () => {
    await srv.stop();
  });

  /** The Maildir after a session: two messages left, with the flags in their names. */
  async function checkDisk(user: string, mailbox: string): Promise<void> {
    const files = await srv.messages(`example.test/${user}/.${mailbox}`);
    assert.equal(files.length, 2, files.join(' '));
    assert.deepEqual(files.map((f) => f.replace(/^.*:2,/, '')).sort(), ['F', 'S'], `flags in the names: ${files.join(' ')}`);
    const contents = await srv.read(`example.test/${user}/.${mailbox}`);
    // Stored with LF line ends, as Dovecot stores them; read back as latin1 bytes.
    assert.ok(
      contents.some(
        (m) => m.includes(`Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n`) && m.includes(Buffer.from('Hällo body\n').toString('latin1')),
      ),
    );
    assert.ok(contents.some((m) => m.includes('Subject: third\n')));
    assert.deepEqual(await srv.messages(`example.test/${user}/.${mailbox}.Renamed`), [], 'the renamed folder was deleted');
  }

  it('IMAP4_SSL: a full session on the implicit-TLS port', async () => {
    const out = await imaplibSession(srv.imapsPort, 'implicit', 'alice@example.test', 'alice-pw', 'Py-implicit');
    checkSession(out, 'Py-implicit');
    await checkDisk('alice', 'Py-implicit');
  });

  it('IMAP4 + starttls(): LOGIN refused in cleartext, then a full session with a quoted password', async () => {
    const out = await imaplibSession(srv.imapPort, 'starttls', 'py@example.test', TRICKY_PASSWORD, 'Py-starttls');
    const before = out.capabilities_before_tls as string[];
    assert.ok(before.includes('STARTTLS') && before.includes('LOGINDISABLED'), before.join(' '));
    assert.ok(!before.includes('AUTH=PLAIN'), 'no AUTH mechanisms before TLS');
    assert.equal(out.cleartext_login, "b'[PRIVACYREQUIRED] Use STARTTLS (or port 993) before logging in'");
    assert.deepEqual(step(out, 'starttls'), { typ: 'OK', data: [null] });
    checkSession(out, 'Py-starttls');
    await checkDisk('py', 'Py-starttls');
    const login = srv.logs.find((l) => l.msg === 'imap login' && l.user === 'py@example.test');
    assert.ok(login);
    assert.equal(login.tls, true);
  });
});
