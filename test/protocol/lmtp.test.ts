/**
 * LMTP (RFC 2033) over TCP and a unix socket: LHLO, one reply per recipient after DATA in RCPT
 * order, an over-quota recipient failing alone.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { SmtpClient, dotStuff, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('LMTP listener', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  async function lmtp(target: number | string): Promise<SmtpClient> {
    const c = await SmtpClient.connect(target);
    const g = await c.greeting();
    assert.equal(g.code, 220);
    assert.match(g.text, /LMTP/);
    return c;
  }

  it('requires LHLO and refuses HELO/EHLO (RFC 2033 section 4.1)', async () => {
    const c = await lmtp(srv.lmtpPort);
    assert.equal((await c.command('EHLO mta.example')).code, 500);
    assert.equal((await c.command('HELO mta.example')).code, 500);
    const lhlo = await c.command('LHLO mta.example');
    assert.equal(lhlo.code, 250);
    assert.ok(lhlo.lines.some((l) => l.includes('PIPELINING')));
    assert.ok(lhlo.lines.some((l) => l.includes('ENHANCEDSTATUSCODES')));
    await c.quit();
  });

  it('answers once per recipient after DATA, in RCPT order; the over-quota one fails alone', async () => {
    const c = await lmtp(srv.lmtpPort);
    await c.command('LHLO mta.example');
    assert.equal((await c.command('MAIL FROM:<sender@remote.example>')).code, 250);
    // small@ has a 2000-byte quota; the message below is bigger than that.
    for (const r of ['alice@example.test', 'small@example.test', 'bob@example.test']) {
      assert.equal((await c.command(`RCPT TO:<${r}>`)).code, 250, r);
    }
    assert.equal((await c.command('DATA')).code, 354);
    c.write(`${dotStuff(simpleMessage('lmtp batch', 'w'.repeat(3000)))}.\r\n`);
    const replies = [await c.reply(), await c.reply(), await c.reply()];
    assert.deepEqual(
      replies.map((r) => [r.code, r.enhanced]),
      [
        [250, '2.0.0'],
        [552, '5.2.2'],
        [250, '2.0.0'],
      ],
    );
    assert.match(replies[0]!.text, /<alice@example\.test>/);
    assert.match(replies[2]!.text, /<bob@example\.test>/);
    assert.equal((await c.command('NOOP')).code, 250, 'exactly three replies');
    await c.quit();
    assert.ok((await srv.read('example.test/alice')).some((m) => m.includes('Subject: lmtp batch')));
    assert.ok((await srv.read('example.test/bob')).some((m) => m.includes('Subject: lmtp batch')));
    assert.equal((await srv.messages('example.test/small')).length, 0);
    const alice = (await srv.read('example.test/alice')).find((m) => m.includes('Subject: lmtp batch'))!;
    assert.match(alice, /with LMTP id [0-9A-F]+;\n/);
  });

  it('answers recipients over the limit with 452 4.5.3 without ending the session, and delivers to the rest', async () => {
    const c = await lmtp(srv.lmtpPort);
    await c.command('LHLO mta.example');
    assert.equal((await c.command('MAIL FROM:<bulk@remote.example>')).code, 250);
    const codes = [];
    for (let i = 0; i < 120; i++) codes.push(`${(await c.command(`RCPT TO:<lmtp${i}@example.org>`)).code}`);
    assert.deepEqual(codes, [...Array(100).fill('250'), ...Array(20).fill('452')]);
    assert.equal((await c.command('DATA')).code, 354);
    c.write(`${dotStuff(simpleMessage('lmtp overshoot'))}.\r\n`);
    const replies = [];
    for (let i = 0; i < 100; i++) replies.push((await c.reply()).code);
    assert.deepEqual(replies, Array(100).fill(250), 'one reply per accepted recipient');
    assert.equal((await c.command('NOOP')).code, 250);
    await c.quit();
    assert.ok((await srv.read('example.org/erin')).some((m) => m.includes('Subject: lmtp overshoot')));
  });

  it('refuses unknown recipients at RCPT and accepts the rest', async () => {
    const c = await lmtp(srv.lmtpPort);
    await c.command('LHLO mta.example');
    await c.command('MAIL FROM:<>');
    assert.deepEqual(
      [await c.command('RCPT TO:<ghost@example.test>')].map((r) => [r.code, r.enhanced]),
      [[550, '5.1.1']],
    );
    assert.equal((await c.command('RCPT TO:<carol@example.test>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    c.write(`${dotStuff(simpleMessage('bounce to carol'))}.\r\n`);
    const r = await c.reply();
    assert.equal(r.code, 250);
    assert.equal((await c.command('NOOP')).code, 250, 'one reply for the one accepted recipient');
    await c.quit();
    const msg = (await srv.read('example.test/carol')).find((m) => m.includes('Subject: bounce to carol'))!;
    assert.match(msg, /^Return-Path: <>\n/, 'null sender kept');
  });

  it('serves a unix socket with the configured mode', async () => {
    const st = await stat(srv.lmtpSocket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    const c = await lmtp(srv.lmtpSocket);
    await c.command('LHLO postfix.local');
    const res = await c.sendMail('sender@remote.example', ['alice@example.test', 'bob@example.test'], simpleMessage('via socket'));
    assert.equal(res.final![0]!.code, 250);
    assert.equal((await c.reply()).code, 250, 'second recipient reply');
    await c.quit();
    const msg = (await srv.read('example.test/alice')).find((m) => m.includes('Subject: via socket'))!;
    assert.match(msg, /Received: from postfix\.local \(localhost\)/);
  });

  it('answers a hand-off for an alias per RCPT, for all its mailboxes', async () => {
    const c = await lmtp(srv.lmtpPort);
    await c.command('LHLO mta.example');
    await c.command('MAIL FROM:<s@remote.example>');
    assert.equal((await c.command('RCPT TO:<team@example.test>')).code, 250);
    assert.equal((await c.command('RCPT TO:<alice@example.test>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    c.write(`${dotStuff(simpleMessage('team via lmtp'))}.\r\n`);
    assert.equal((await c.reply()).code, 250);
    assert.equal((await c.reply()).code, 250);
    await c.quit();
    // alice is reached twice (team and directly) but receives one copy.
    const alice = (await srv.read('example.test/alice')).filter((m) => m.includes('Subject: team via lmtp'));
    assert.equal(alice.length, 1);
    assert.equal((await srv.read('example.test/carol')).filter((m) => m.includes('Subject: team via lmtp')).length, 1);
  });
});
