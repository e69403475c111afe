/**
 * The content scanners on the MX port, against the real daemons from Debian (spamd and clamd,
 * started by the test): the EICAR test file is refused at the end of DATA, GTUBE goes to the
 * recipient's Junk folder with SpamAssassin's headers, a clean message reaches INBOX, and a
 * scanner that is down gives 451 4.7.1. clamd's database holds only a LOCAL signature for the
 * EICAR test string (test/helpers/scanner-daemons.ts): nothing is downloaded here.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EICAR, freePort, startClamd, startSpamd, type ScannerDaemon } from '../helpers/scanner-daemons.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

describe('content scanners on the MX (spamd, clamd)', () => {
  let spamd: ScannerDaemon;
  let clamd: ScannerDaemon;
  let srv: TestServer;
  let down: TestServer;

  before(async () => {
    [spamd, clamd] = await Promise.all([startSpamd('required_score 5.0\n'), startClamd()]);
    srv = await startTestServer({
      config: {
        inbound: {
          authentication: { enabled: false },
          scanners: { spamd: { address: `127.0.0.1:${spamd.port}` }, clamd: { address: `127.0.0.1:${clamd.port}` } },
        },
      },
    });
    // The same with a clamd address where nothing listens.
    down = await startTestServer({
      config: { inbound: { authentication: { enabled: false }, scanners: { clamd: { address: `127.0.0.1:${await freePort()}` } } } },
    });
  });
  after(async () => {
    await Promise.all([srv?.stop(), down?.stop()]);
    await Promise.all([spamd?.stop(), clamd?.stop()]);
  });

  async function send(server: TestServer, to: string, text: string) {
    const c = await SmtpClient.connect(server.smtpPort);
    await c.greeting();
    await c.command('EHLO client.example');
    const result = await c.sendMail('sender@remote.example', [to], text);
    await c.command('QUIT');
    return result.final![0]!;
  }

  const message = (subject: string, body: string) =>
    `From: <sender@remote.example>\r\nTo: <alice@example.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@remote.example>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n${body}\r\n`;

  const files = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).sort();

  it('refuses the EICAR test file with 554 5.7.1 naming the signature; nothing is delivered', async () => {
    const reply = await send(srv, 'alice@example.test', message('eicar', `Attached below.\r\n\r\n${EICAR}`));
    assert.deepEqual([reply.code, reply.enhanced], [554, '5.7.1'], reply.text);
    assert.match(reply.text, /virus.*Maild\.Test\.EICAR-Local/);
    assert.deepEqual(await files(path.join(srv.mailRoot, 'example.test/alice/new')), []);
  });

  it('delivers GTUBE into Junk with X-Spam-Flag and X-Spam-Status', async () => {
    const reply = await send(srv, 'bob@example.test', message('gtube', GTUBE));
    assert.equal(reply.code, 250, reply.text);
    assert.deepEqual(await files(path.join(srv.mailRoot, 'example.test/bob/new')), [], 'not in INBOX');
    const junk = path.join(srv.mailRoot, 'example.test/bob/.Junk/new');
    const [file] = await files(junk);
    assert.ok(file, 'in Junk');
    const text = await readFile(path.join(junk, file), 'latin1');
    assert.match(text, /^X-Spam-Flag: YES/im);
    assert.match(text, /^X-Spam-Status: Yes/im);
    const logged = srv.logs.find((l) => l.msg === 'delivered' && l.to === 'bob@example.test');
    assert.equal(logged?.folder, '\\Junk');
  });

  it('delivers a clean message into INBOX', async () => {
    const reply = await send(srv, 'carol@example.test', message('clean', 'Lunch on Friday?'));
    assert.equal(reply.code, 250, reply.text);
    const inbox = await files(path.join(srv.mailRoot, 'example.test/carol/new'));
    assert.equal(inbox.length, 1);
    const text = await readFile(path.join(srv.mailRoot, 'example.test/carol/new', inbox[0]!), 'latin1');
    assert.match(text, /^X-Spam-Status: No, score=/im);
  });

  it("gives Sieve's spamtest and virustest the scanners' verdicts (RFC 5235)", async () => {
    const home = path.join(srv.mailRoot, 'example.org/erin');
    await mkdir(path.join(home, 'sieve'), { recursive: true });
    await writeFile(
      path.join(home, 'sieve/scores.sieve'),
      `require ["spamtest", "virustest", "relational", "comparator-i;ascii-numeric", "fileinto", "mailbox"];
if spamtest :value "eq" :comparator "i;ascii-numeric" "10" { fileinto :create "Spam10"; stop; }
if allof (spamtest :value "ge" :comparator "i;ascii-numeric" "1", virustest :value "eq" :comparator "i;ascii-numeric" "1") { fileinto :create "Scanned"; }
`,
    );
    await symlink('sieve/scores.sieve', path.join(home, '.dovecot.sieve'));
    assert.equal((await send(srv, 'erin@example.org', message('gtube-scored', GTUBE))).code, 250);
    assert.equal((await files(path.join(home, '.Spam10/new'))).length, 1, 'GTUBE: spamtest 10');
    assert.equal((await send(srv, 'erin@example.org', message('clean-scored', 'Lunch on Friday?'))).code, 250);
    assert.equal((await files(path.join(home, '.Scanned/new'))).length, 1, 'clean: tested by both, clean of viruses');
    assert.deepEqual(await files(path.join(home, 'new')), []);
  });

  it('answers 451 4.7.1 when a scanner cannot be reached (default_action: tempfail)', async () => {
    const reply = await send(down, 'alice@example.test', message('scanner-down', 'Hello.'));
    assert.deepEqual([reply.code, reply.enhanced], [451, '4.7.1'], reply.text);
    assert.deepEqual(await files(path.join(down.mailRoot, 'example.test/alice/new')), []);
  });
});
