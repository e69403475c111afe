/**
 * The outbound queue end to end: messages enter the real server's queue, leave over SMTP to a
 * test sink on loopback (reached through the directory's transport table) and come back as
 * RFC 3464 reports into local Maildirs. The queue's clock is injected: tests move it to reach
 * retry times, delay warnings and expiry instead of waiting.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { message, reportsIn, settled, setup, teardown, type QueueEnv as Env } from '../helpers/queue-env.js';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from '../helpers/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('outbound queue', () => {
  let env: Env;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await teardown(env);
  });

  it('delivers to the remote side, several recipients in one transaction, and empties the queue', async () => {
    const before = env.sink.messages.length;
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'a@remote.example' }, { address: 'b@remote.example' }, { address: 'c@remote.example' }],
      message: message('three recipients'),
      prepend: 'Received: by mx.test.example (maild) with ESMTPSA id X; Sun, 29 Nov 2026 07:00:00 +0000\r\n',
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    const [got] = (await env.sink.waitForMessages(before + 1)).slice(before);
    assert.equal(got!.from, 'alice@example.test');
    assert.deepEqual(got!.to, ['a@remote.example', 'b@remote.example', 'c@remote.example']);
    const text = got!.data.toString();
    assert.match(text, /^Received: by mx\.test\.example \(maild\) with ESMTPSA id X;/, 'prepended headers lead the message');
    assert.match(text, /Subject: three recipients\r\n/);
    assert.equal((await settled(env)).length, 0, 'nothing left in the queue');
    const delivered = env.server.logs.filter((l) => l.msg === 'delivered' && l.qid === queueId);
    assert.equal(delivered.length, 3, 'one log line per recipient, with the queue id');
    assert.equal(env.sink.messages.length, before + 1, 'one transaction, not three');
  });

  it('retries a 4xx recipient after the retry delay, not before, and delivers it once', async () => {
    env.sink.setRule('later@remote.example', { rcpt: 450 });
    const before = env.sink.messages.length;
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'now@remote.example' }, { address: 'later@remote.example' }],
      message: message('retry after 4xx'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await env.sink.waitForMessages(before + 1);
    let queued = (await settled(env)).find((m) => m.id === queueId);
    assert.ok(queued, 'the deferred recipient stays queued');
    assert.deepEqual(
      queued.recipients.map((r) => r.address),
      ['later@remote.example'],
    );
    assert.match(queued.recipients[0]!.lastError!, /^450 /);
    const wait = queued.nextAttempt - (Date.now() + env.clock.offset);
    assert.ok(wait > 4 * MINUTE && wait <= 5 * MINUTE, `first retry about 5 minutes later (${wait} ms)`);

    env.sink.clearRules();
    const attemptsBefore = env.sink.stats.mailFrom;
    env.server.runtime.queue.wake();
    await settled(env);
    assert.equal(env.sink.stats.mailFrom, attemptsBefore, 'no attempt before the retry time');

    env.clock.offset += 5 * MINUTE;
    env.server.runtime.queue.wake();
    await env.sink.waitForMessages(before + 2);
    queued = (await settled(env)).find((m) => m.id === queueId);
    assert.equal(queued, undefined, 'delivered and removed');
    const copies = env.sink.messages.slice(before).flatMap((m) => m.to);
    assert.deepEqual(copies.sort(), ['later@remote.example', 'now@remote.example'], 'each recipient exactly once');
  });

  it('retries after a refused connection, with growing delays', async () => {
    await env.proxy.stop();
    const before = env.sink.messages.length;
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'x@refused.example' }],
      message: message('refused connection'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    let queued = (await settled(env)).find((m) => m.id === queueId)!;
    assert.match(queued.recipients[0]!.lastError!, /^4\d\d 4\.4\.\d/, 'a temporary connection failure');
    const first = queued.nextAttempt - (Date.now() + env.clock.offset);

    env.clock.offset += 5 * MINUTE;
    env.server.runtime.queue.wake();
    queued = (await settled(env)).find((m) => m.id === queueId)!;
    assert.equal(queued.attempts, 2);
    const second = queued.nextAttempt - (Date.now() + env.clock.offset);
    assert.ok(second > first * 1.5, `the second delay (${second}) is longer than the first (${first})`);

    await env.proxy.resume();
    env.clock.offset += second + 1000;
    env.server.runtime.queue.wake();
    const [got] = (await env.sink.waitForMessages(before + 1)).slice(before);
    assert.deepEqual(got!.to, ['x@refused.example']);
    assert.equal(
      (await settled(env)).find((m) => m.id === queueId),
      undefined,
    );
  });

  it('bounces a 5xx recipient at once with an RFC 3464 report to the sender', async () => {
    env.sink.setRule('nobody@remote.example', { rcpt: 550, text: '5.1.1 <nobody@remote.example>: no such user' });
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'nobody@remote.example' }],
      message: message('bounce me'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await waitFor(async () => (await env.server.messages('example.test/alice')).length > 0, 10_000, 'bounce in alice');
    env.sink.clearRules();
    const [report] = await reportsIn(env.server, 'example.test/alice');
    assert.match(
      String(report!.headers.get('content-type') && (report!.headers.get('content-type') as { value: string }).value),
      /multipart\/report/,
    );
    const raw = (await env.server.read('example.test/alice'))[0]!;
    assert.match(raw, /^Return-Path: <>$/m, 'the report has the null sender');
    assert.match(raw, /report-type=("?)delivery-status\1/);
    assert.match(raw, /^Final-Recipient: rfc822; ?nobody@remote\.example$/m);
    assert.match(raw, /^Action: failed$/m);
    assert.match(raw, /^Status: 5\.1\.1$/m);
    assert.match(raw, /^Diagnostic-Code: smtp; ?550 5\.1\.1 .*no such user/m);
    assert.match(raw, /^Subject: bounce me$/m, 'the original headers are returned');
    assert.match(raw, new RegExp(`${queueId}`), 'the report names the queue id');
    assert.equal((await settled(env)).length, 0, 'the bounced message and the delivered report left the queue');
  });

  it('never bounces a message with the null sender', async () => {
    env.sink.setRule('gone@remote.example', { rcpt: 550 });
    const before = (await env.server.messages('example.test/bob')).length;
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: '',
      recipients: [{ address: 'gone@remote.example' }],
      message: message('a bounce that fails'),
      maxBytes: 1 << 20,
      origin: 'bounce',
    });
    assert.equal((await settled(env)).length, 0);
    env.sink.clearRules();
    assert.ok(env.server.logs.some((l) => l.qid === queueId && l.msg === 'delivery failed' && l.status === 'bounced'));
    assert.ok(
      env.server.logs.some((l) => l.qid === queueId && /no notice/.test(String(l.msg))),
      'logged as not reported',
    );
    assert.ok(!env.server.logs.some((l) => l.qid === queueId && /notification/.test(String(l.msg))));
    assert.equal((await env.server.messages('example.test/bob')).length, before);
  });

  it('refuses a message that has passed 50 servers: a forwarding loop', async () => {
    const hops = Array.from(
      { length: 50 },
      (_, i) => `Received: from hop${i}.example by hop${i + 1}.example; Sun, 29 Nov 2026 07:00:00 +0000\r\n`,
    ).join('');
    await assert.rejects(
      env.server.runtime.queue.enqueue({
        sender: 'alice@example.test',
        recipients: [{ address: 'loop@remote.example' }],
        message: Buffer.concat([Buffer.from(hops), message('looping')]),
        maxBytes: 1 << 20,
        origin: 'forward',
      }),
      (err: Error & { code?: string }) => err.code === 'ALIAS_LOOP',
    );
    assert.ok(!(await settled(env)).some((m) => m.recipients.some((r) => r.address === 'loop@remote.example')), 'nothing queued');
  });

  it('keeps local recipients local even with a remote route configured', async () => {
    const before = env.sink.messages.length;
    await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'carol@example.test' }, { address: 'Team@Example.test' }],
      message: message('local through the queue'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await settled(env);
    assert.equal(env.sink.messages.length, before, 'nothing went out');
    // team@ is alice + carol: carol gets one copy although she is named twice.
    assert.equal((await env.server.messages('example.test/carol')).length, 1);
    const [copy] = await env.server.read('example.test/carol');
    assert.match(copy!, /^Return-Path: <alice@example\.test>\nDelivered-To: carol@example\.test\n/);
  });
});

describe('inbound mail for several mailboxes, one of them over quota', () => {
  let env: Env;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await teardown(env);
  });

  it('is delivered to the others and bounced for that one alone', async () => {
    const c = await SmtpClient.connect(env.server.smtpPort);
    await c.greeting();
    await c.command('EHLO client.example');
    // small@ has a quota of 2000 bytes; no SIZE= is declared, so RCPT cannot know.
    const res = await c.sendMail(
      'alice@example.test',
      ['small@example.test', 'bob@example.test'],
      `From: alice@example.test\nSubject: too big for small\n\n${'x'.repeat(3000)}\n`,
    );
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    await waitFor(async () => (await env.server.messages('example.test/alice')).length === 1, 10_000, 'report to alice');
    await settled(env);
    assert.equal((await env.server.messages('example.test/bob')).length, 1, 'bob has it');
    assert.equal((await env.server.messages('example.test/small')).length, 0, 'small does not');
    const [report] = await env.server.read('example.test/alice');
    assert.match(report!, /^Final-Recipient: rfc822; ?small@example\.test$/m);
    assert.match(report!, /^Status: 5\.2\.2$/m);
    assert.doesNotMatch(report!, /bob@example\.test/);
  });
});

describe('outbound queue: delay warnings and expiry', () => {
  let env: Env;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await teardown(env);
  });

  it('warns the sender once after 4 hours, then bounces after 5 days', async () => {
    env.sink.setRule('slow@remote.example', { rcpt: 451, text: '4.3.0 try again later' });
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: 'bob@example.test',
      recipients: [{ address: 'slow@remote.example' }],
      message: message('expire me'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await settled(env);
    assert.equal((await env.server.messages('example.test/bob')).length, 0, 'no notice after the first failure');

    env.clock.offset += 4 * HOUR + MINUTE;
    env.server.runtime.queue.wake();
    await waitFor(async () => (await env.server.messages('example.test/bob')).length === 1, 10_000, 'delay warning');
    await settled(env);
    const warning = (await env.server.read('example.test/bob'))[0]!;
    assert.match(warning, /^Action: delayed$/m);
    assert.match(warning, /^Status: 4\.3\.0$/m);
    assert.match(warning, /^Will-Retry-Until: /m);
    assert.ok(
      (await settled(env)).some((m) => m.id === queueId),
      'still queued after the warning',
    );

    env.clock.offset += HOUR;
    env.server.runtime.queue.wake();
    await settled(env);
    assert.equal((await env.server.messages('example.test/bob')).length, 1, 'only one warning');

    env.clock.offset += 5 * DAY;
    env.server.runtime.queue.wake();
    await waitFor(async () => (await env.server.messages('example.test/bob')).length === 2, 10_000, 'expiry bounce');
    assert.equal((await settled(env)).length, 0, 'the expired message left the queue');
    const bounce = (await env.server.read('example.test/bob')).find((m) => /^Action: failed$/m.test(m));
    assert.ok(bounce, 'a failure report');
    assert.match(bounce, /^Final-Recipient: rfc822; ?slow@remote\.example$/m);
    assert.match(bounce, /^Status: 4\.3\.0$/m, 'the last temporary status is reported');
    assert.match(bounce, /gave up after 5 days/);
  });
});

describe('outbound queue: restart', () => {
  it('a restart in the middle of a queue run delivers every recipient exactly once', async () => {
    let env = await setup({ destination_concurrency: 2 });
    const first = env.server;
    const sink = env.sink;
    const proxy = env.proxy;
    const mailRoot = env.server.mailRoot;
    sink.setDelay(60);
    const recipients = ['r1@remote.example', 'r2@remote.example', 'r3@other.example'];
    for (let i = 0; i < 12; i++) {
      await env.server.runtime.queue.enqueue({
        sender: 'alice@example.test',
        recipients: recipients.map((address) => ({ address })),
        message: message(`restart ${i}`),
        maxBytes: 1 << 20,
        origin: 'submission',
      });
    }
    await sink.waitForMessages(3, 20_000);
    await env.server.runtime.shutdown();
    const atStop = sink.messages.length;
    assert.ok(atStop < 24, `stopped in the middle of the run (${atStop} of 24 transactions done)`);

    env = await setup({}, mailRoot, { sink, proxy });
    sink.setDelay(0);
    await waitFor(async () => env.server.runtime.queue.list().length === 0, 30_000, 'queue drained after the restart');
    const seen = new Map<string, number>();
    for (const m of sink.messages) {
      const subject = /Subject: (restart \d+)/.exec(m.data.toString())?.[1];
      if (!subject) continue;
      for (const to of m.to) seen.set(`${subject} ${to}`, (seen.get(`${subject} ${to}`) ?? 0) + 1);
    }
    assert.equal(seen.size, 36, 'every recipient of every message arrived');
    assert.deepEqual(
      [...seen].filter(([, n]) => n !== 1),
      [],
      'and none twice',
    );
    await teardown(env);
    await first.stop();
  });
});

describe('outbound queue: limits per destination', () => {
  let env: Env;
  before(async () => {
    env = await setup({ destination_concurrency: 2, recipients_per_transaction: 2 });
  });
  after(async () => {
    await teardown(env);
  });

  it('opens at most destination_concurrency connections to one destination', async () => {
    env.sink.setDelay(20);
    for (let i = 0; i < 10; i++) {
      await env.server.runtime.queue.enqueue({
        sender: 'alice@example.test',
        recipients: [{ address: `c${i}@remote.example` }],
        message: message(`concurrency ${i}`),
        maxBytes: 1 << 20,
        origin: 'submission',
      });
    }
    await env.sink.waitForMessages(10, 20_000);
    env.sink.setDelay(0);
    assert.ok(env.sink.stats.maxActive <= 2, `at most two sessions at once (saw ${env.sink.stats.maxActive})`);
    assert.ok(env.sink.stats.connections < 10, `sessions were reused (${env.sink.stats.connections} connections for 10 messages)`);
  });

  it('splits a message into transactions of recipients_per_transaction recipients', async () => {
    const before = env.sink.messages.length;
    await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: ['a', 'b', 'c', 'd', 'e'].map((l) => ({ address: `${l}@remote.example` })),
      message: message('split'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await env.sink.waitForMessages(before + 3);
    await settled(env);
    const sent = env.sink.messages.slice(before);
    assert.deepEqual(sent.map((m) => m.to.length).sort(), [1, 2, 2]);
    assert.deepEqual(
      sent.flatMap((m) => m.to).sort(),
      ['a', 'b', 'c', 'd', 'e'].map((l) => `${l}@remote.example`),
    );
  });
});

describe('outbound queue: shutdown with a stalled remote server', () => {
  it('cuts the transaction off after shutdown_timeout and keeps the message queued', { timeout: 30_000 }, async () => {
    const mailRoot = await mkdtemp(path.join(os.tmpdir(), 'maild-queue-stall-'));
    const env = await setup({ command_timeout: '10m' }, mailRoot);
    try {
      env.sink.setDelay(10 * 60_000); // the greeting never comes in time
      const { queueId } = await env.server.runtime.queue.enqueue({
        sender: 'alice@example.test',
        recipients: [{ address: 'stalled@remote.example' }],
        message: message('stalled'),
        maxBytes: 1 << 20,
        origin: 'submission',
      });
      await waitFor(() => env.sink.stats.connections > 0, 10_000, 'a connection to the stalled server');
      await env.server.stop(); // shutdown_timeout is 2 s in the test configuration
      assert.ok(
        env.server.logs.some((l) => /cut off/.test(String(l.msg))),
        'the transaction was cut off',
      );
      assert.deepEqual(await readdir(path.join(mailRoot, '.queue', 'env')), [queueId], 'the message is still queued');
    } finally {
      env.sink.setDelay(0);
      await env.proxy.close();
      await env.sink.close();
      await rm(mailRoot, { recursive: true, force: true });
    }
  });
});

describe('outbound queue: configuration', () => {
  it('refuses to start with a relayhost it cannot use', async () => {
    await assert.rejects(setup({ relayhost: 'lmtp:[127.0.0.1]:24' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.match(err.message, /lmtp/);
      return true;
    });
  });
});
