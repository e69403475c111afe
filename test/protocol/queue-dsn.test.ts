/**
 * Delivery status notifications on request (RFC 3461): DSN is offered on the MX and submission
 * listeners; NOTIFY=SUCCESS brings a "delivered" (our mailbox) or "relayed" (another server)
 * report, NOTIFY=NEVER silences failure reports, ORCPT and ENVID come back in the report
 * (RFC 3464), and RET=FULL returns the whole message with a failure.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { settled, setup, teardown, type QueueEnv } from '../helpers/queue-env.js';
import { waitFor } from '../helpers/server.js';
import { SmtpClient, dotStuff } from '../helpers/smtp-client.js';

const plain = Buffer.from('\u0000alice@example.test\u0000alice-pw').toString('base64');

async function submission(env: QueueEnv): Promise<SmtpClient> {
  const c = await SmtpClient.connect(env.server.submissionPort);
  await c.greeting();
  await c.command('EHLO client.example');
  assert.equal((await c.startTls()).code, 220);
  const ehlo = await c.command('EHLO client.example');
  assert.match(ehlo.lines.join('\n'), /^250[ -]DSN$/m, 'DSN is offered');
  assert.equal((await c.command(`AUTH PLAIN ${plain}`)).code, 235);
  return c;
}

/** MAIL FROM with parameters, RCPT TOs with parameters, DATA; the final reply. */
async function transaction(c: SmtpClient, mail: string, rcpts: string[], message: string): Promise<number> {
  assert.equal((await c.command(mail)).code, 250, mail);
  for (const r of rcpts) assert.equal((await c.command(r)).code, 250, r);
  assert.equal((await c.command('DATA')).code, 354);
  c.write(`${dotStuff(message)}.\r\n`);
  return (await c.reply()).code;
}

/** Header lines unfolded, so a folded field matches on one line. */
const unfold = (text: string) => text.replace(/\r?\n[ \t]+/g, ' ');

describe('delivery status notifications on request (RFC 3461)', () => {
  let env: QueueEnv;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await teardown(env);
  });

  it('NOTIFY=SUCCESS: a report with Action delivered for a mailbox here, relayed for another server, with ORCPT and ENVID', async () => {
    const c = await submission(env);
    const code = await transaction(
      c,
      'MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ314159',
      ['RCPT TO:<bob@example.test> NOTIFY=SUCCESS ORCPT=rfc822;Bob@Example.test', 'RCPT TO:<friend@remote.example> NOTIFY=SUCCESS,FAILURE'],
      'From: alice@example.test\r\nSubject: tell me\r\n\r\nHello.\r\n',
    );
    assert.equal(code, 250);
    await c.quit();
    await waitFor(async () => (await env.server.messages('example.test/alice')).length === 1, 10_000, 'the success report');
    await settled(env);
    const report = unfold((await env.server.read('example.test/alice'))[0]!);
    assert.match(report, /^Subject: Successful Mail Delivery Report$/m);
    assert.match(report, /^Original-Envelope-Id: QQ314159$/m);
    const blocks = report.split(/\n\n/);
    const bob = blocks.find((b) => /^Final-Recipient: rfc822; bob@example\.test$/m.test(b));
    const friend = blocks.find((b) => /^Final-Recipient: rfc822; friend@remote\.example$/m.test(b));
    assert.ok(bob && friend, report);
    assert.match(bob, /^Action: delivered$/m);
    assert.match(bob, /^Original-Recipient: rfc822; Bob@Example\.test$/m);
    assert.match(bob, /^Status: 2\.\d+\.\d+$/m);
    assert.match(friend, /^Action: relayed$/m);
    assert.equal((await env.server.messages('example.test/bob')).length, 1, 'and the message itself arrived');
  });

  it('NOTIFY=NEVER: no report for a recipient the remote server refuses', async () => {
    env.sink.setRule('never@remote.example', { rcpt: 550 });
    const before = (await env.server.messages('example.test/alice')).length;
    const c = await submission(env);
    assert.equal(
      await transaction(
        c,
        'MAIL FROM:<alice@example.test>',
        ['RCPT TO:<never@remote.example> NOTIFY=NEVER'],
        'From: alice@example.test\r\nSubject: quiet\r\n\r\nx\r\n',
      ),
      250,
    );
    await c.quit();
    await settled(env);
    env.sink.clearRules();
    assert.ok(
      env.server.logs.some((l) => l.to === 'never@remote.example' && l.status === 'bounced'),
      'it did fail',
    );
    assert.equal((await env.server.messages('example.test/alice')).length, before, 'and nobody was told');
  });

  it('RET=FULL returns the whole message with the failure report', async () => {
    env.sink.setRule('full@remote.example', { rcpt: 550 });
    const before = (await env.server.messages('example.test/alice')).length;
    const c = await submission(env);
    assert.equal(
      await transaction(
        c,
        'MAIL FROM:<alice@example.test> RET=FULL',
        ['RCPT TO:<full@remote.example>'],
        'From: alice@example.test\r\nSubject: return all of it\r\n\r\nThe body line that must come back.\r\n',
      ),
      250,
    );
    await c.quit();
    await waitFor(async () => (await env.server.messages('example.test/alice')).length === before + 1, 10_000, 'the failure report');
    env.sink.clearRules();
    const report = (await env.server.read('example.test/alice')).find((m) => m.includes('return all of it'))!;
    assert.match(report, /^Content-Type: message\/rfc822$/m);
    assert.match(report, /The body line that must come back\./);
    assert.match(report, /^Action: failed$/m);
  });

  it('NOTIFY=SUCCESS on the MX: mail for a mailbox here brings a delivered report to the remote sender', async () => {
    const before = env.sink.messages.length;
    const c = await SmtpClient.connect(env.server.smtpPort);
    await c.greeting();
    const ehlo = await c.command('EHLO mx.remote.example');
    assert.match(ehlo.lines.join('\n'), /^250[ -]DSN$/m);
    assert.equal(
      await transaction(
        c,
        'MAIL FROM:<someone@remote.example>',
        ['RCPT TO:<carol@example.test> NOTIFY=SUCCESS'],
        'Subject: inbound\r\n\r\nhi\r\n',
      ),
      250,
    );
    await c.quit();
    const [report] = (await env.sink.waitForMessages(before + 1)).slice(before);
    assert.equal(report!.from, '', 'reports have the null sender');
    assert.deepEqual(report!.to, ['someone@remote.example']);
    const text = unfold(report!.data.toString());
    assert.match(text, /^Final-Recipient: rfc822; carol@example\.test\r?$/m);
    assert.match(text, /^Action: delivered\r?$/m);
    assert.equal((await env.server.messages('example.test/carol')).length, 1);
  });
});
