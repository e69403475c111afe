/**
 * Real clients against the MX and LMTP listeners: nodemailer, Python's smtplib (SMTP with
 * STARTTLS, and its LMTP class over the unix socket) and curl's SMTP support; smtplib with more
 * recipients than the limit.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { simpleParser } from 'mailparser';
import { startTestServer, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

describe('interop with real SMTP clients', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  const latest = async (mailbox: string, subject: string) => {
    const found = (await srv.read(mailbox)).filter((m) => m.includes(`Subject: ${subject}`));
    assert.equal(found.length, 1, `exactly one "${subject}" in ${mailbox}`);
    return found[0]!;
  };

  it('nodemailer delivers over STARTTLS, with an attachment and UTF-8, parsed back intact by mailparser', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: srv.smtpPort,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      name: 'nodemailer.client.example',
    });
    const attachment = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256));
    const info = await transport.sendMail({
      from: 'Zoë <zoe@remote.example>',
      to: 'alice@example.test, bob@example.test',
      subject: 'nodemailer Grüße ✓',
      text: 'Hällo, this is UTF-8.\n.leading dot line\n',
      attachments: [{ filename: 'bytes.bin', content: attachment }],
    });
    assert.deepEqual(info.accepted.sort(), ['alice@example.test', 'bob@example.test']);
    assert.match(info.response, /^250 /);
    transport.close();
    for (const user of ['alice', 'bob']) {
      const raw = (await srv.read(`example.test/${user}`)).find((m) => m.includes(info.messageId))!;
      assert.ok(raw, `${user} has the message`);
      const parsed = await simpleParser(raw);
      assert.equal(parsed.subject, 'nodemailer Grüße ✓');
      assert.equal(parsed.text, 'Hällo, this is UTF-8.\n.leading dot line\n');
      assert.equal(parsed.attachments.length, 1);
      assert.ok(parsed.attachments[0]!.content.equals(attachment), 'attachment bytes identical');
      assert.equal((parsed.headers.get('delivered-to') as { text: string }).text, `${user}@example.test`);
      assert.match(String(parsed.headers.get('received')), /with ESMTPS id/);
    }
  });

  /** The start of a Python script: `s` is an smtplib session on the MX, inside STARTTLS. */
  const smtplibSession = () => `import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", ${srv.smtpPort}, local_hostname="python.client.example", timeout=10)
s.starttls(context=ctx)
s.ehlo("python.client.example")`;

  it("Python's smtplib sends over STARTTLS and gets the refusals as exceptions with the right codes", async () => {
    const script = `
${smtplibSession()}
refused = s.sendmail("py@remote.example", ["carol@example.test", "nobody@example.test"],
    "From: py@remote.example\\r\\nTo: carol@example.test\\r\\nSubject: from python\\r\\n\\r\\nHi from smtplib.\\r\\n")
print(refused["nobody@example.test"][0], refused["nobody@example.test"][1].decode())
try:
    s.sendmail("py@remote.example", ["victim@remote.example"], "Subject: relay\\r\\n\\r\\nx\\r\\n")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["victim@remote.example"]
    print(code, text.decode())
s.quit()
`;
    const { stdout } = await run('python3', ['-c', script], { timeout: 20_000 });
    const [unknown, relay] = stdout.trim().split('\n');
    assert.match(unknown!, /^550 5\.1\.1 /);
    assert.match(relay!, /^554 5\.7\.1 Relay access denied/);
    const msg = await latest('example.test/carol', 'from python');
    assert.match(msg, /Received: from python\.client\.example .* with ESMTPS id/s);
  });

  it("Python's smtplib sends to 120 recipients: 100 accepted and delivered, 20 reported back as 452 4.5.3", async () => {
    const script = `
${smtplibSession()}
rcpts = ["many%d@example.org" % i for i in range(120)]
refused = s.sendmail("py@remote.example", rcpts, "From: py@remote.example\\r\\nTo: list@example.org\\r\\nSubject: python many\\r\\n\\r\\nHi.\\r\\n")
print(len(refused), sorted(set("%d %s" % (c, t.decode().split(" ")[0]) for c, t in refused.values())))
s.quit()
`;
    const { stdout } = await run('python3', ['-c', script], { timeout: 30_000 });
    assert.equal(stdout.trim(), "20 ['452 4.5.3']", 'sendmail returned the 20 refused recipients, raised nothing');
    await latest('example.org/erin', 'python many');
  });

  it("Python's smtplib.LMTP delivers over the unix socket and reports per-recipient results", async () => {
    const script = `
import smtplib
s = smtplib.LMTP("${srv.lmtpSocket}")
s.connect("${srv.lmtpSocket}")
s.ehlo("python.lmtp")
refused = s.sendmail("lmtp@remote.example", ["alice@example.test", "ghost@example.test"],
    "Subject: python lmtp\\r\\n\\r\\nvia the socket\\r\\n")
print(sorted(refused.keys()))
s.quit()
`;
    const { stdout } = await run('python3', ['-c', script], { timeout: 20_000 });
    assert.equal(stdout.trim(), "['ghost@example.test']");
    await latest('example.test/alice', 'python lmtp');
  });

  it('curl sends a file over SMTP with STARTTLS', async () => {
    const file = path.join(srv.dir, 'curl-message.txt');
    await writeFile(file, 'From: curl@remote.example\r\nTo: bob@example.test\r\nSubject: from curl\r\n\r\nSent by curl.\r\n');
    await run(
      'curl',
      [
        '--silent',
        '--show-error',
        '--ssl-reqd',
        '--insecure',
        `smtp://127.0.0.1:${srv.smtpPort}/curl.client.example`,
        '--mail-from',
        'curl@remote.example',
        '--mail-rcpt',
        'bob@example.test',
        '--upload-file',
        file,
      ],
      { timeout: 20_000 },
    );
    const msg = await latest('example.test/bob', 'from curl');
    assert.match(msg, /Return-Path: <curl@remote\.example>/);
    // curl refuses a relay just as the server says.
    await assert.rejects(
      run(
        'curl',
        [
          '--silent',
          '--show-error',
          `smtp://127.0.0.1:${srv.smtpPort}`,
          '--mail-from',
          'curl@remote.example',
          '--mail-rcpt',
          'x@remote.example',
          '--upload-file',
          file,
        ],
        {
          timeout: 20_000,
        },
      ),
      /554/,
    );
  });
});
