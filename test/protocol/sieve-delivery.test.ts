/**
 * Sieve at delivery over the MX port, with the users' scripts where Pigeonhole keeps them
 * (~/sieve/NAME.sieve, ~/.dovecot.sieve the active one): messages filed into folders, flagged,
 * refused with the script's reason, redirected (received by a sink), discarded, answered by
 * vacation exactly once per period; a script that does not compile keeps the message.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { manageSieveLoggedIn } from '../helpers/managesieve-client.js';
import { loggedIn } from '../helpers/imap-client.js';

describe('Sieve at delivery', () => {
  let dns: DnsServer;
  let sink: SmtpSink;
  let srv: TestServer;

  before(async () => {
    dns = await startDnsServer({
      'remote.example': { mx: [{ preference: 10, exchange: 'mx.remote.example' }] },
      'mx.remote.example': { a: ['127.0.0.1'] },
    });
    sink = await startSmtpSink();
    srv = await startTestServer({
      config: {
        dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '1s' },
        queue: { mx_port: sink.port, tls: 'none' },
      },
    });
  });
  after(async () => {
    await srv.stop();
    await sink.close();
    await dns.close();
  });

  /** Installs a user's active script as Pigeonhole does: ~/sieve/NAME.sieve and the ~/.dovecot.sieve symlink. */
  async function activate(mailbox: string, script: string): Promise<void> {
    const home = path.join(srv.mailRoot, mailbox);
    await mkdir(path.join(home, 'sieve'), { recursive: true });
    await writeFile(path.join(home, 'sieve', 'rules.sieve'), script);
    await symlink('sieve/rules.sieve', path.join(home, '.dovecot.sieve')).catch(() => undefined);
  }

  async function send(from: string, to: string, subject: string, extra = '') {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO client.remote.example');
    const text = `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@remote.example>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n${extra}\r\nHello, about ${subject}.\r\n`;
    const result = await c.sendMail(from, [to], text);
    await c.command('QUIT');
    // A refusal at RCPT is the answer when there was no DATA.
    return result.final?.[0] ?? result.rcpts[0]!;
  }

  /** Files of a folder ('' for INBOX) in new/ and cur/ that hold this subject. */
  async function find(mailbox: string, subject: string, folder = ''): Promise<string[]> {
    const out: string[] = [];
    for (const sub of ['new', 'cur']) {
      const dir = path.join(srv.mailRoot, mailbox, folder, sub);
      for (const f of await readdir(dir).catch(() => [] as string[]))
        if ((await readFile(path.join(dir, f), 'latin1')).includes(`Subject: ${subject}\n`)) out.push(`${sub}/${f}`);
    }
    return out;
  }

  it('files into a folder (created with :create) and flags with imap4flags', async () => {
    await activate(
      'example.test/alice',
      `require ["fileinto", "mailbox", "imap4flags", "copy"];
if header :contains "subject" "report" { fileinto :create "Reports"; stop; }
if address :is "from" "boss@remote.example" { addflag "\\\\Flagged"; }
if header :contains "subject" "twice" { fileinto :copy "INBOX"; }
`,
    );
    assert.equal((await send('x@remote.example', 'alice@example.test', 'weekly-report')).code, 250);
    assert.equal((await find('example.test/alice', 'weekly-report', '.Reports')).length, 1, 'in Reports');
    assert.deepEqual(await find('example.test/alice', 'weekly-report'), [], 'not in INBOX');
    assert.equal((await send('boss@remote.example', 'alice@example.test', 'from-boss')).code, 250);
    const [flagged] = await find('example.test/alice', 'from-boss');
    assert.match(flagged ?? '', /^cur\/.*:2,F$/, 'kept in INBOX with \\Flagged');
    // fileinto :copy "INBOX" and the implicit keep: one copy (RFC 5228 section 2.10.3).
    assert.equal((await send('x@remote.example', 'alice@example.test', 'twice-kept')).code, 250);
    assert.equal((await find('example.test/alice', 'twice-kept')).length, 1, 'stored once');
  });

  it("stores imap4flags keywords as the folder's Maildir letters, which IMAP shows (RFC 5232)", async () => {
    await activate(
      'example.test/carol',
      `require ["fileinto", "mailbox", "imap4flags"];
if header :contains "subject" "label" { addflag ["$Label1", "\\\\Seen"]; fileinto :create :flags ["Work", "\\\\Flagged", "bad(flag"] "Labelled"; keep; }
`,
    );
    assert.equal((await send('x@remote.example', 'carol@example.test', 'label-me')).code, 250);
    const [inInbox] = await find('example.test/carol', 'label-me');
    assert.match(inInbox ?? '', /^cur\/.*:2,Sa$/, 'kept with \\Seen and the letter of $Label1');
    assert.equal(await readFile(path.join(srv.mailRoot, 'example.test/carol/dovecot-keywords'), 'utf8'), '0 $Label1\n');
    const [filed] = await find('example.test/carol', 'label-me', '.Labelled');
    assert.match(filed ?? '', /^cur\/.*:2,Fa$/, 'filed with \\Flagged and Work (the invalid flag left out)');
    assert.equal(await readFile(path.join(srv.mailRoot, 'example.test/carol/.Labelled/dovecot-keywords'), 'utf8'), '0 Work\n');
    const imap = await loggedIn(srv, 'carol@example.test', 'carol-pw');
    await imap.cmd('SELECT INBOX');
    const inbox = await imap.cmd('FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    const flagsOf = (line: string | undefined) => (/FLAGS \(([^)]*)\)/.exec(line ?? '')?.[1] ?? '').split(' ').sort();
    const fetched = inbox.untagged.find((l) => l.includes('label-me'));
    assert.deepEqual(flagsOf(fetched), ['$Label1', '\\Recent', '\\Seen'], fetched);
    const selected = await imap.cmd('SELECT Labelled');
    assert.ok(
      selected.untagged.some((l) => l.startsWith('FLAGS (') && l.includes('Work')),
      'the folder knows the keyword',
    );
    const labelled = await imap.cmd('FETCH 1 (FLAGS)');
    assert.deepEqual(flagsOf(labelled.untagged[0]), ['Work', '\\Flagged', '\\Recent'].sort(), labelled.untagged[0]);
    await imap.logout();
  });

  it('discards a duplicate once the first copy is delivered (RFC 7352), and sees existing folders (RFC 5490)', async () => {
    await activate(
      'example.org/erin',
      `require ["duplicate", "fileinto", "mailbox"];
if duplicate { fileinto :create "Dupes"; stop; }
if mailboxexists "Projects" { fileinto "Projects"; }
`,
    );
    // The test helper's Message-ID is made of the subject: the same subject twice is the same message.
    assert.equal((await send('x@remote.example', 'erin@example.org', 'sent-twice')).code, 250);
    assert.equal((await find('example.org/erin', 'sent-twice')).length, 1, 'the first is kept');
    assert.equal((await send('x@remote.example', 'erin@example.org', 'sent-twice')).code, 250);
    assert.equal((await find('example.org/erin', 'sent-twice', '.Dupes')).length, 1, 'the same Message-ID again is a duplicate');
    assert.equal((await find('example.org/erin', 'sent-twice')).length, 1, 'INBOX still has one');
    // No Projects folder yet: kept in INBOX; once it exists, the test finds it.
    assert.equal((await send('x@remote.example', 'erin@example.org', 'before-folder')).code, 250);
    assert.equal((await find('example.org/erin', 'before-folder')).length, 1);
    await mkdir(path.join(srv.mailRoot, 'example.org/erin/.Projects/cur'), { recursive: true });
    assert.equal((await send('x@remote.example', 'erin@example.org', 'after-folder')).code, 250);
    assert.equal((await find('example.org/erin', 'after-folder', '.Projects')).length, 1, 'filed into the existing folder');
  });

  it('applies editheader to the copies stored after the edits (RFC 5293), with S= and W= of the edited file', async () => {
    await activate(
      'example.test/alice',
      `require ["editheader", "fileinto", "mailbox", "copy"];
if header :contains "subject" "edit-me" {
  fileinto :copy :create "Unedited";
  addheader "X-Tagged" "yes";
  deleteheader "X-Remove";
  addheader :last "X-Last" "line one\nline two";
}
`,
    );
    assert.equal(
      (await send('x@remote.example', 'alice@example.test', 'edit-me', 'X-Remove: a\r\nX-Keep: b\r\nX-Remove: c\r\n')).code,
      250,
    );
    const [unedited] = await find('example.test/alice', 'edit-me', '.Unedited');
    const before = await readFile(path.join(srv.mailRoot, 'example.test/alice/.Unedited', unedited!), 'latin1');
    assert.match(before, /^X-Remove: a$/m);
    assert.doesNotMatch(before, /X-Tagged/);
    const [kept] = await find('example.test/alice', 'edit-me');
    const file = path.join(srv.mailRoot, 'example.test/alice', kept!);
    const text = await readFile(file, 'latin1');
    assert.match(
      text,
      /^Return-Path: <x@remote\.example>\nDelivered-To: alice@example\.test\nX-Tagged: yes\nReceived: /,
      text.slice(0, 300),
    );
    assert.doesNotMatch(text, /X-Remove/);
    assert.match(text, /^X-Keep: b$/m);
    assert.match(text, /\nX-Last: line one\n line two\n\nHello, about edit-me/);
    const bytes = Buffer.byteLength(text, 'latin1');
    assert.match(kept!, new RegExp(`,S=${bytes},W=${bytes + text.split('\n').length - 1}(?:$|[:,])`), 'S= and W= of the edited file');
  });

  it('refuses with the reason of reject, discards, and keeps what no rule matches', async () => {
    await activate(
      'example.test/bob',
      `require ["reject"];
if header :contains "subject" "unwanted" { reject "I do not want this."; }
elsif header :contains "subject" "noise" { discard; }
`,
    );
    const refused = await send('x@remote.example', 'bob@example.test', 'unwanted-offer');
    assert.deepEqual([refused.code, refused.enhanced], [550, '5.7.1']);
    assert.match(refused.text, /I do not want this\./);
    assert.equal((await send('x@remote.example', 'bob@example.test', 'noise-1')).code, 250);
    assert.deepEqual(await find('example.test/bob', 'noise-1'), [], 'discarded');
    assert.equal((await send('x@remote.example', 'bob@example.test', 'plain-mail')).code, 250);
    assert.equal((await find('example.test/bob', 'plain-mail')).length, 1, 'implicit keep');
  });

  it('with several SMTP recipients, one reject delivers to the others and sends the sender a notice (RFC 5429 2.1)', async () => {
    await activate('example.test/bob', 'require ["reject"];\nif header :contains "subject" "unwanted" { reject "I do not want this."; }\n');
    const count = sink.messages.length;
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO client.remote.example');
    const text =
      'From: <x@remote.example>\r\nTo: <bob@example.test>, <alice@example.test>\r\nSubject: unwanted-for-two\r\nMessage-ID: <two@remote.example>\r\n\r\nHi.\r\n';
    const result = await c.sendMail('x@remote.example', ['bob@example.test', 'alice@example.test'], text);
    await c.command('QUIT');
    assert.equal(result.final?.[0]?.code, 250, 'accepted: the other recipient has it');
    assert.equal((await find('example.test/alice', 'unwanted-for-two')).length, 1);
    assert.deepEqual(await find('example.test/bob', 'unwanted-for-two'), [], 'not stored for the one who rejected');
    const [notice] = (await sink.waitForMessages(count + 1, 15_000)).slice(count);
    assert.equal(notice!.from, '', 'a notice comes from <>');
    assert.deepEqual(notice!.to, ['x@remote.example']);
    const body = notice!.data.toString('latin1');
    assert.match(body, /multipart\/report; report-type=delivery-status/i);
    assert.match(body, /Final-Recipient: rfc822; ?bob@example\.test/i);
    assert.match(body, /Status: 5\.7\.1/);
    assert.match(body, /I do not want this\./);
    assert.match(body, /Subject: unwanted-for-two/, 'the original header comes back');
  });

  it('redirects through the queue to another server, marked against loops', async () => {
    await activate('example.test/carol', 'redirect "carol.elsewhere@remote.example";\n');
    const count = sink.messages.length;
    assert.equal((await send('x@remote.example', 'carol@example.test', 'to-forward')).code, 250);
    const [out] = (await sink.waitForMessages(count + 1, 15_000)).slice(count);
    assert.deepEqual(out!.to, ['carol.elsewhere@remote.example']);
    assert.equal(out!.from, 'x@remote.example', 'the original sender');
    assert.match(out!.data.toString('latin1'), /^X-Sieve-Redirected-From: carol@example\.test/m);
    assert.deepEqual(await find('example.test/carol', 'to-forward'), [], 'not kept (no :copy)');
    // sieve.redirect_envelope_from: recipient (Pigeonhole's sieve_redirect_envelope_from).
    const cfg = srv.runtime.config;
    await srv.runtime.reload({ ...cfg, sieve: { ...cfg.sieve, redirect_envelope_from: 'recipient' } });
    try {
      assert.equal((await send('x@remote.example', 'carol@example.test', 'to-forward-2')).code, 250);
      const [second] = (await sink.waitForMessages(count + 2, 15_000)).slice(count + 1);
      assert.equal(second!.from, 'carol@example.test', "the user's address as the envelope sender");
    } finally {
      await srv.runtime.reload(cfg);
    }
  });

  it('answers with vacation once per period, never to lists, and keeps the message', async () => {
    await activate(
      'example.org/erin',
      `require ["vacation"];
vacation :days 7 :subject "Away" "I am away until Monday.";
`,
    );
    const count = sink.messages.length;
    assert.equal((await send('friend@remote.example', 'erin@example.org', 'hello-1')).code, 250);
    const [reply] = (await sink.waitForMessages(count + 1, 15_000)).slice(count);
    assert.equal(reply!.from, '', 'from the null sender');
    assert.deepEqual(reply!.to, ['friend@remote.example']);
    const text = reply!.data.toString('latin1');
    assert.match(text, /^Subject: Away/m);
    assert.match(text, /^Auto-Submitted: auto-replied/m);
    assert.match(text, /^In-Reply-To: <hello-1@remote\.example>/m);
    assert.match(text, /I am away until Monday\./);
    assert.equal((await find('example.org/erin', 'hello-1')).length, 1, 'kept');
    // The same sender again, and a list message: no further reply.
    assert.equal((await send('friend@remote.example', 'erin@example.org', 'hello-2')).code, 250);
    assert.equal((await send('news@remote.example', 'erin@example.org', 'newsletter', 'List-Id: <news.remote.example>\r\n')).code, 250);
    await waitFor(
      () => srv.logs.filter((l) => l.msg === 'vacation: no reply' || l.msg === 'vacation: already answered in this period').length >= 2,
      10_000,
      'both decided',
    );
    assert.equal(sink.messages.filter((m) => m.to.includes('friend@remote.example')).length, 1, 'one reply per period');
    assert.equal(sink.messages.filter((m) => m.to.includes('news@remote.example')).length, 0, 'no reply to a list');
  });

  it('keeps scripts where sieve.location says, for ManageSieve and for delivery alike', async () => {
    const cfg = srv.runtime.config;
    await srv.runtime.reload({ ...cfg, sieve: { ...cfg.sieve, location: 'file:~/filters;active=~/filters/.active' } });
    try {
      const c = await manageSieveLoggedIn(srv.managesievePort, 'small@example.test', 'x');
      const script = 'require ["fileinto", "mailbox"];\r\nif header :contains "subject" "located" { fileinto :create "Located"; }\r\n';
      assert.equal((await c.command(`PUTSCRIPT "mine" {${Buffer.byteLength(script)}+}\r\n${script}`)).status, 'OK');
      assert.equal((await c.command('SETACTIVE "mine"')).status, 'OK');
      await c.command('LOGOUT');
      const home = path.join(srv.mailRoot, 'example.test/small');
      assert.equal(await readFile(path.join(home, 'filters/mine.sieve'), 'utf8'), script);
      assert.equal(await readlink(path.join(home, 'filters/.active')), 'mine.sieve');
      assert.equal((await send('x@remote.example', 'small@example.test', 'located-mail')).code, 250);
      assert.equal((await find('example.test/small', 'located-mail', '.Located')).length, 1, 'filed by the script at the configured place');
    } finally {
      await srv.runtime.reload(cfg);
    }
  });

  it('takes a script over ManageSieve: an error names its line, the fixed one is activated and used by the next delivery', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'carol@example.test', 'carol-pw');
    const put = (script: string) => c.command(`PUTSCRIPT "filters" {${Buffer.byteLength(script)}+}\r\n${script}`);
    const broken = await put('require ["fileinto"];\r\n\r\nif header :contains "subject" {\r\n  fileinto "Lists";\r\n}\r\n');
    assert.equal(broken.status, 'NO');
    assert.match(broken.text ?? '', /line 3/);
    const fixed = await put('require ["fileinto", "mailbox"];\r\nif header :contains "list-id" "" { fileinto :create "Lists"; }\r\n');
    assert.equal(fixed.status, 'OK', fixed.raw);
    assert.equal((await c.command('SETACTIVE "filters"')).status, 'OK');
    await c.command('LOGOUT');
    assert.equal((await send('news@remote.example', 'carol@example.test', 'digest', 'List-Id: <digest.remote.example>\r\n')).code, 250);
    assert.equal((await find('example.test/carol', 'digest', '.Lists')).length, 1, 'filed by the uploaded script');
  });

  it("runs a script that includes another of the user's (RFC 6609)", async () => {
    await writeFile(
      path.join(srv.mailRoot, 'example.test/bob/sieve/common.sieve'),
      'require ["fileinto", "mailbox"];\nfileinto :create "Common";\n',
    );
    await activate('example.test/bob', 'require ["include"];\ninclude :personal "common";\n');
    assert.equal((await send('x@remote.example', 'bob@example.test', 'included-rule')).code, 250);
    assert.equal((await find('example.test/bob', 'included-rule', '.Common')).length, 1, 'filed by the included script');
    // The included script changes, the including one does not: the next delivery follows the change.
    await writeFile(
      path.join(srv.mailRoot, 'example.test/bob/sieve/common.sieve'),
      'require ["fileinto", "mailbox"];\nfileinto :create "Common2";\n',
    );
    assert.equal((await send('x@remote.example', 'bob@example.test', 'included-changed')).code, 250);
    assert.equal((await find('example.test/bob', 'included-changed', '.Common2')).length, 1, 'filed by the changed included script');
  });

  // small@ has a quota and no Maildir yet, only the script's files in its home: the quota check at
  // RCPT must not fail on the Maildir without tmp/.
  it('keeps the message when the script does not compile', async () => {
    await activate('example.test/small', 'if header :contains "subject" { fileinto "X" \n');
    assert.equal((await send('x@remote.example', 'small@example.test', 'broken-script')).code, 250);
    assert.equal((await find('example.test/small', 'broken-script')).length, 1, 'in INBOX');
    assert.ok(srv.logs.some((l) => l.msg === 'sieve script does not compile; the message is kept'));
  });
});
