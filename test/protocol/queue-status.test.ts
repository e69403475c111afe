/**
 * The reply line a bounce carries (RFC 3464 Diagnostic-Code, type smtp) is built from the
 * result's status: a remote server's reply as it came, its codes once; a local delivery failure
 * as code, enhanced code and the status text with the detail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { message, settled, setup, teardown, type QueueEnv } from '../helpers/queue-env.js';
import { waitFor } from '../helpers/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';

/** Header lines unfolded, so a folded field matches on one line. */
const unfold = (text: string) => text.replace(/\r?\n[ \t]+/g, ' ');

describe('the reply line in a bounce', () => {
  let env: QueueEnv;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await teardown(env);
  });

  it("gives a remote server's reply once, with its own enhanced code or the one derived from its code", async () => {
    env.sink.setRule('nobody@remote.example', { rcpt: 550, text: '5.1.1 <nobody@remote.example>: no such user' });
    env.sink.setRule('plain@remote.example', { rcpt: 550, text: 'no such user here' });
    await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'nobody@remote.example' }, { address: 'plain@remote.example' }],
      message: message('bounce me'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await waitFor(async () => (await env.server.messages('example.test/alice')).length > 0, 10_000, 'bounce in alice');
    await settled(env);
    env.sink.clearRules();
    const raw = unfold((await env.server.read('example.test/alice')).join('\n'));
    assert.match(raw, /^Diagnostic-Code: smtp; ?550 5\.1\.1 <nobody@remote\.example>: no such user$/m);
    assert.match(raw, /^Diagnostic-Code: smtp; ?550 5\.0\.0 no such user here$/m);
  });
});

describe('the reply line in a bounce of local delivery', () => {
  let env: QueueEnv;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await teardown(env);
  });

  it('gives code, enhanced code and text of the status, then the detail', async () => {
    const c = await SmtpClient.connect(env.server.smtpPort);
    await c.greeting();
    await c.command('EHLO client.example');
    // small@ has a quota of 2000 bytes; no SIZE= is declared, so RCPT cannot know.
    const res = await c.sendMail(
      'alice@example.test',
      ['small@example.test', 'bob@example.test'],
      `Subject: too big\n\n${'x'.repeat(3000)}\n`,
    );
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    await waitFor(async () => (await env.server.messages('example.test/alice')).length === 1, 10_000, 'report to alice');
    await settled(env);
    const [report] = await env.server.read('example.test/alice');
    assert.match(unfold(report!), /^Diagnostic-Code: smtp; ?552 5\.2\.2 Message exceeds the mailbox quota \(small@example\.test: .+\)$/m);
  });
});
