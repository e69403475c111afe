/**
 * From a mail client to another server: submission on 587 (STARTTLS, AUTH), the queue, and
 * SMTP out to a sink on loopback. What leaves must be exactly what the user sent: one message,
 * however its line ends try to end DATA early (SMTP smuggling), and DKIM-signed so that a
 * verifier (mailauth's) passes it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { generateKey } from '../../src/queue/dkim.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

const plain = (user: string, pass: string) => Buffer.from(`\u0000${user}\u0000${pass}`).toString('base64');

async function loggedIn(srv: TestServer): Promise<SmtpClient> {
  const c = await SmtpClient.connect(srv.submissionPort);
  assert.equal((await c.greeting()).code, 220);
  assert.equal((await c.command('EHLO client.example')).code, 250);
  assert.equal((await c.startTls()).code, 220);
  assert.equal((await c.command('EHLO client.example')).code, 250);
  assert.equal((await c.command(`AUTH PLAIN ${plain('alice@example.test', 'alice-pw')}`)).code, 235);
  return c;
}

describe('submission to a remote server', () => {
  let srv: TestServer;
  let sink: SmtpSink;
  let dnsRecord: string;
  before(async () => {
    sink = await startSmtpSink();
    // 127.0.0.1 relays without a login too (Postfix's mynetworks), for the signing of relayed mail.
    srv = await startTestServer({ config: { queue: { relayhost: `[127.0.0.1]:${sink.port}` }, trusted_networks: ['127.0.0.1/32'] } });
    const key = await generateKey(path.join(srv.dir, 'data', 'dkim'), 'example.test', 'mail');
    dnsRecord = key.record;
  });
  after(async () => {
    await srv.stop();
    await sink.close();
  });

  it('a submitted smuggling attempt reaches the remote side as exactly one dot-stuffed message', async () => {
    // Bare LF and bare CR around a dot: not the end of DATA (RFC 5321 section 4.1.1.4), and
    // normalised to CRLF on the way out, where the dot is doubled (section 4.5.2).
    const smuggles = ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r'];
    for (const [i, seq] of smuggles.entries()) {
      const before = sink.messages.length;
      const mailFromBefore = sink.stats.mailFrom;
      const c = await loggedIn(srv);
      assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
      assert.equal((await c.command('RCPT TO:<friend@remote.example>')).code, 250);
      assert.equal((await c.command('DATA')).code, 354);
      c.write(
        `From: alice@example.test\r\nSubject: smuggle ${i}\r\n\r\nfirst part${seq}MAIL FROM:<evil@remote.example>\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\nSubject: smuggled ${i}\r\n\r\nsecond\r\n.\r\n`,
      );
      const r = await c.reply();
      assert.equal(r.code, 250, `sequence ${JSON.stringify(seq)}: ${r.lines.join(' | ')}`);
      assert.equal((await c.command('QUIT')).code, 221, 'one reply to DATA, nothing smuggled into the client session either');
      const [got] = (await sink.waitForMessages(before + 1)).slice(before);
      assert.deepEqual(got!.to, ['friend@remote.example']);
      const text = got!.data.toString('latin1');
      assert.match(text, new RegExp(`Subject: smuggle ${i}\\r\\n`));
      assert.ok(
        text.includes(`MAIL FROM:<evil@remote.example>\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\nSubject: smuggled ${i}`),
        'the smuggled text arrived as content',
      );
      assert.ok(!/(^|[^\r])\n/.test(text) && !/\r(?!\n)/.test(text), 'only CRLF line ends left this server');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sink.messages.length, before + 1, 'exactly one message');
      assert.equal(sink.stats.mailFrom - mailFromBefore, 1, 'one MAIL FROM on the wire');
      assert.ok(!sink.messages.some((m) => m.from === 'evil@remote.example' || m.to.includes('victim@remote.example')));
    }
  });

  it('signs with the sender domain key, submitted and relayed mail alike, and the signature verifies with mailauth', async () => {
    const before = sink.messages.length;
    const c = await loggedIn(srv);
    const sent = await c.sendMail(
      'alice@example.test',
      ['friend@remote.example'],
      'From: Alice <alice@example.test>\r\nTo: friend@remote.example\r\nSubject: signed\r\n\r\n.leading dot and Grüße\r\nbye\r\n',
    );
    assert.equal(sent.final?.[0]?.code, 250);
    await c.quit();
    const [got] = (await sink.waitForMessages(before + 1)).slice(before);
    const text = got!.data.toString('latin1');
    assert.match(text, /^DKIM-Signature: /m);
    assert.match(text, /\bd=example\.test;/);
    assert.match(text, /^Date: /m, 'Date was added, and signed');
    const resolver = async (name: string, type: string) => {
      if (type === 'TXT' && name === 'mail._domainkey.example.test') return [[dnsRecord]];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    };
    const result = await dkimVerify(got!.data, { resolver } as never);
    const first = (result as { results: Array<{ status: { result: string }; signingDomain: string }> }).results[0]!;
    assert.equal(first.status.result, 'pass', JSON.stringify(first));
    assert.equal(first.signingDomain, 'example.test');
    // A changed body fails: the signature covers what was sent.
    const tampered = Buffer.from(text.replace('bye', 'BYE'), 'latin1');
    const bad = (await dkimVerify(tampered, { resolver } as never)) as { results: Array<{ status: { result: string } }> };
    assert.notEqual(bad.results[0]!.status.result, 'pass');

    // Mail relayed for a trusted network (an application on this host, over port 25) is signed too.
    const relayBefore = sink.messages.length;
    const mx = await SmtpClient.connect(srv.smtpPort);
    await mx.greeting();
    await mx.command('EHLO app.example');
    const relayed = await mx.sendMail(
      'app@example.test',
      ['friend@remote.example'],
      'From: Shop <app@example.test>\r\nTo: friend@remote.example\r\nSubject: your order\r\n\r\nThanks.\r\n',
    );
    assert.equal(relayed.final?.[0]?.code, 250);
    await mx.quit();
    const [out] = (await sink.waitForMessages(relayBefore + 1)).slice(relayBefore);
    const relayResult = (await dkimVerify(out!.data, { resolver } as never)) as {
      results: Array<{ status: { result: string }; signingDomain: string }>;
    };
    assert.equal(relayResult.results[0]!.status.result, 'pass');
    assert.equal(relayResult.results[0]!.signingDomain, 'example.test');
  });
});
