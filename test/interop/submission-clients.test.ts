/**
 * Real clients against the submission listeners (RFC 6409): Python's smtplib (STARTTLS with
 * AUTH PLAIN, implicit TLS with AUTH LOGIN, and the refusals it turns into exceptions), curl
 * (STARTTLS and smtps:// with --user) and swaks (the README's command line).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

describe('interop with real submission clients', () => {
  let srv: TestServer;
  before(async () => {
    // A short failed-login delay: the wrong password below makes the next login wait.
    srv = await startTestServer({ config: { auth: { failure_delay: '5ms', failure_delay_max: '20ms' } } });
  });
  after(async () => {
    await srv.stop();
  });

  const arrived = async (mailbox: string, subject: string) => {
    await waitFor(async () => (await srv.read(mailbox)).some((m) => m.includes(`Subject: ${subject}`)), 5000, `"${subject}" in ${mailbox}`);
    const found = (await srv.read(mailbox)).filter((m) => m.includes(`Subject: ${subject}`));
    assert.equal(found.length, 1, `exactly one "${subject}" in ${mailbox}`);
    return found[0]!;
  };

  it("Python's smtplib submits with STARTTLS + AUTH PLAIN and with implicit TLS + AUTH LOGIN", async () => {
    const script = `
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", ${srv.submissionPort}, local_hostname="python.client.example", timeout=10)
s.ehlo()
print("auth-before-tls", s.has_extn("auth"))
s.starttls(context=ctx)
s.ehlo()
print("auth-after-tls", s.esmtp_features.get("auth").strip())
try:
    s.login("alice@example.test", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("bad-password", e.smtp_code, e.smtp_error.decode())
s.login("alice@example.test", "alice-pw")
try:
    s.sendmail("bob@example.test", ["carol@example.test"], "Subject: x\\r\\n\\r\\nx\\r\\n")
except smtplib.SMTPSenderRefused as e:
    print("sender", e.smtp_code, e.smtp_error.decode())
s.sendmail("alice@example.test", ["carol@example.test"],
    "From: Alice <alice@example.test>\\r\\nTo: carol@example.test\\r\\nSubject: python submission\\r\\n\\r\\nHi.\\r\\n")
s.quit()
t = smtplib.SMTP_SSL("127.0.0.1", ${srv.submissionsPort}, local_hostname="python.client.example", timeout=10, context=ctx)
t.ehlo()
t.user, t.password = "bob@example.test", "bob-pw"
code, text = t.auth("LOGIN", t.auth_login)
print("login", code)
t.sendmail("bob@example.test", ["alice@example.test"],
    "From: bob@example.test\\r\\nTo: alice@example.test\\r\\nSubject: python smtps\\r\\n\\r\\nHi.\\r\\n")
t.quit()
`;
    const { stdout } = await run('python3', ['-c', script], { timeout: 30_000 });
    const lines = stdout.trim().split('\n');
    assert.equal(lines[0], 'auth-before-tls False');
    assert.equal(lines[1], 'auth-after-tls PLAIN LOGIN');
    assert.match(lines[2]!, /^bad-password 535 5\.7\.8 Authentication credentials invalid/);
    assert.match(lines[3]!, /^sender 553 5\.7\.1 Sender address rejected: not owned by user alice@example\.test/);
    assert.equal(lines[4], 'login 235');
    const msg = await arrived('example.test/carol', 'python submission');
    assert.match(msg, /Received: from python\.client\.example .* with ESMTPSA id/s);
    assert.match(msg, /\nMessage-ID: <[0-9A-F]+\.[0-9A-F]+@mx\.test\.example>\n/);
    await arrived('example.test/alice', 'python smtps');
  });

  it('curl submits with --user over STARTTLS and over smtps://', async () => {
    for (const [scheme, port] of [
      ['smtp', srv.submissionPort],
      ['smtps', srv.submissionsPort],
    ] as const) {
      const file = path.join(srv.dir, `curl-${scheme}.txt`);
      await writeFile(file, `From: alice@example.test\r\nTo: bob@example.test\r\nSubject: curl ${scheme}\r\n\r\nSent by curl.\r\n`);
      await run(
        'curl',
        [
          '--silent',
          '--show-error',
          '--ssl-reqd',
          '--insecure',
          `${scheme}://127.0.0.1:${port}/curl.client.example`,
          '--user',
          'alice@example.test:alice-pw',
          '--mail-from',
          'alice@example.test',
          '--mail-rcpt',
          'bob@example.test',
          '--upload-file',
          file,
        ],
        { timeout: 20_000 },
      );
      const msg = await arrived('example.test/bob', `curl ${scheme}`);
      assert.match(msg, /Return-Path: <alice@example\.test>/);
      assert.match(msg, /\nDate: /);
    }
    // Without TLS curl cannot log in: the server does not offer AUTH in cleartext.
    await assert.rejects(
      run(
        'curl',
        [
          '--silent',
          '--show-error',
          `smtp://127.0.0.1:${srv.submissionPort}`,
          '--user',
          'alice@example.test:alice-pw',
          '--mail-from',
          'alice@example.test',
          '--mail-rcpt',
          'bob@example.test',
          '--upload-file',
          path.join(srv.dir, 'curl-smtp.txt'),
        ],
        { timeout: 20_000 },
      ),
    );
  });

  it('swaks sends as the README shows (STARTTLS, AUTH PLAIN), and with implicit TLS and AUTH LOGIN', async () => {
    for (const [args, subject] of [
      [['--server', `127.0.0.1:${srv.submissionPort}`, '--tls', '--auth', 'PLAIN'], 'swaks starttls'],
      [['--server', `127.0.0.1:${srv.submissionsPort}`, '--tlsc', '--auth', 'LOGIN'], 'swaks implicit'],
    ] as const) {
      const { stdout } = await run(
        'swaks',
        [
          ...args,
          '--auth-user',
          'alice@example.test',
          '--auth-password',
          'alice-pw',
          '--from',
          'alice@example.test',
          '--to',
          'bob@example.test',
          '--header',
          `Subject: ${subject}`,
          '--helo',
          'swaks.client.example',
        ],
        { timeout: 20_000 },
      );
      assert.match(stdout, /<~  250 2\.0\.0 Ok: queued as [0-9A-F]{12}/);
      const msg = await arrived('example.test/bob', subject);
      assert.match(msg, /with ESMTPSA id/);
    }
    // A sender that is not alice's: swaks exits non-zero and shows the 553.
    await assert.rejects(
      run(
        'swaks',
        [
          '--server',
          `127.0.0.1:${srv.submissionPort}`,
          '--tls',
          '--auth',
          'PLAIN',
          '--auth-user',
          'alice@example.test',
          '--auth-password',
          'alice-pw',
          '--from',
          'bob@example.test',
          '--to',
          'carol@example.test',
        ],
        { timeout: 20_000 },
      ),
      (err: Error & { stdout?: string }) =>
        /<~?\*+ 553 5\.7\.1 Sender address rejected: not owned by user alice@example\.test/.test(err.stdout ?? ''),
    );
  });
});
