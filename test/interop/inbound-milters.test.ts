/**
 * Milters on the MX port, as Postfix's smtpd_milters: Debian's OpenDKIM (started by the test)
 * signs a message of its domain on the way in and the signature lands in the Maildir; a milter
 * that cannot be reached gives 451 4.7.1 by default (milter_default_action = tempfail) and lets
 * mail through with default_action: accept.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, generateDkimKey, startOpendkim, type MilterDaemon } from '../helpers/milter-daemons.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('milters on the MX (OpenDKIM)', () => {
  let keyDir: string;
  let opendkim: MilterDaemon;
  let srv: TestServer;
  let unreachable: TestServer;
  let tolerant: TestServer;

  before(async () => {
    keyDir = await mkdtemp(path.join(os.tmpdir(), 'maild-milter-mx-'));
    const key = await generateDkimKey(keyDir, 'example.test', 'sel1');
    opendkim = await startOpendkim('s', key);
    const nowhere = `inet:127.0.0.1:${await freePort()}`;
    const start = (milters: unknown[]) => startTestServer({ config: { inbound: { authentication: { enabled: false }, milters } } });
    [srv, unreachable, tolerant] = await Promise.all([
      start([{ address: opendkim.address, name: 'opendkim' }]),
      start([{ address: nowhere, connect_timeout: '2s' }]),
      start([{ address: nowhere, connect_timeout: '2s', default_action: 'accept' }]),
    ]);
  });
  after(async () => {
    await Promise.all([srv?.stop(), unreachable?.stop(), tolerant?.stop()]);
    await opendkim?.stop();
    await rm(keyDir, { recursive: true, force: true });
  });

  async function send(server: TestServer, subject: string) {
    const c = await SmtpClient.connect(server.smtpPort);
    await c.greeting();
    await c.command('EHLO client.example');
    const text = `From: <bob@example.test>\r\nTo: <alice@example.test>\r\nSubject: ${subject}\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <${subject}@example.test>\r\n\r\nHello Alice.\r\n`;
    const result = await c.sendMail('bob@example.test', ['alice@example.test'], text);
    await c.command('QUIT');
    return result.final![0]!;
  }

  const inbox = async (server: TestServer) => {
    const dir = path.join(server.mailRoot, 'example.test/alice/new');
    const files = (await readdir(dir).catch(() => [] as string[])).sort();
    return Promise.all(files.map((f) => readFile(path.join(dir, f), 'latin1')));
  };

  it('delivers the message with the DKIM-Signature OpenDKIM asked to insert', async () => {
    const reply = await send(srv, 'signed');
    assert.equal(reply.code, 250, reply.text);
    const [text] = await inbox(srv);
    assert.ok(text?.includes('Subject: signed'));
    const signature = /^DKIM-Signature:[^]*?(?=\n\S)/m.exec(text!)?.[0].replace(/\n[ \t]+/g, ' ');
    assert.ok(signature, `a DKIM-Signature in:\n${text}`);
    assert.match(signature, /d=example\.test;/);
    assert.match(signature, /s=sel1;/);
    const logged = srv.logs.find((l) => l.msg === 'delivered' && Array.isArray(l.milters));
    assert.ok(logged, 'the milters are in the delivery log line');
  });

  it('answers 451 4.7.1 when the milter cannot be reached (default_action: tempfail)', async () => {
    const reply = await send(unreachable, 'nomilter');
    assert.deepEqual([reply.code, reply.enhanced], [451, '4.7.1'], reply.text);
    assert.deepEqual(await inbox(unreachable), []);
  });

  it('delivers when the unreachable milter’s default_action is accept', async () => {
    const reply = await send(tolerant, 'tolerated');
    assert.equal(reply.code, 250, reply.text);
    assert.equal((await inbox(tolerant)).length, 1);
  });
});
