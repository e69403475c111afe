/**
 * Submission (RFC 6409) over the wire: AUTH only inside TLS (RFC 4954), sender ownership of the
 * envelope and the From: header, added Date/Message-ID, Received "with ESMTPSA" (RFC 3848), the
 * per-login recipient rate, local delivery and relaying through the outbound queue; and the MX
 * listener handing relayed and forwarded mail to the queue.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { tempFail } from '../../src/errors.js';
import pino from 'pino';
import { receivedHeader } from '../../src/smtp/received.js';
import { submissionBeforeCommit } from '../../src/smtp/submission.js';
import { SmtpClient, type Reply } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const plain = (user: string, pass: string, authzid = '') => b64(`${authzid}\u0000${user}\u0000${pass}`);

function message(opts: { from?: string | null; to?: string; subject: string; date?: string; messageId?: string; body?: string }): string {
  const lines: string[] = [];
  if (opts.from !== null) lines.push(`From: ${opts.from ?? 'Alice <alice@example.test>'}`);
  lines.push(`To: ${opts.to ?? 'bob@example.test'}`, `Subject: ${opts.subject}`);
  if (opts.date) lines.push(`Date: ${opts.date}`);
  if (opts.messageId) lines.push(`Message-ID: ${opts.messageId}`);
  return `${lines.join('\n')}\n\n${opts.body ?? 'Hello.\n'}`;
}

/** A session on the STARTTLS port (after STARTTLS) or the implicit-TLS port, optionally logged in. */
async function open(srv: TestServer, opts: { implicit?: boolean; login?: [string, string] } = {}): Promise<SmtpClient> {
  const c = opts.implicit
    ? await SmtpClient.connect(srv.submissionsPort, { implicitTls: true })
    : await SmtpClient.connect(srv.submissionPort);
  assert.equal((await c.greeting()).code, 220);
  if (!opts.implicit) {
    assert.equal((await c.command('EHLO client.example')).code, 250);
    assert.equal((await c.startTls()).code, 220);
  }
  assert.equal((await c.command('EHLO client.example')).code, 250);
  if (opts.login) {
    const r = await c.command(`AUTH PLAIN ${plain(...opts.login)}`);
    assert.deepEqual([r.code, r.enhanced], [235, '2.7.0']);
  }
  return c;
}

const ALICE: [string, string] = ['alice@example.test', 'alice-pw'];

function code(r: Reply | undefined): [number, string | undefined] {
  assert.ok(r, 'a reply');
  return [r.code, r.enhanced];
}

describe('submission listener', () => {
  let srv: TestServer;
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink({ starttls: false });
    srv = await startTestServer({
      config: {
        auth: { failure_delay: '5ms', failure_delay_max: '20ms' },
        queue: { relayhost: `[127.0.0.1]:${sink.port}`, tls: 'none', retry_min: '1s' },
        submission: { extra_senders: { 'Alice@Example.Test': ['boss@remote.example', '@alice.example'] } },
      },
    });
  });
  after(async () => {
    await srv.stop();
    await sink.close();
  });

  it('offers AUTH only after STARTTLS on the submission port and refuses it and MAIL before', async () => {
    const c = await SmtpClient.connect(srv.submissionPort);
    await c.greeting();
    const ehlo = await c.command('EHLO client.example');
    const caps = ehlo.lines.map((l) => l.slice(4).split(' ')[0]);
    assert.ok(caps.includes('STARTTLS'));
    assert.ok(!caps.includes('AUTH'), 'no AUTH in cleartext');
    const auth = await c.command(`AUTH PLAIN ${plain(...ALICE)}`);
    assert.deepEqual(code(auth), [530, '5.7.0']);
    assert.match(auth.text, /Must issue a STARTTLS command first/);
    assert.ok(
      srv.logs.some((l) => l.msg === 'login refused' && l.protocol === 'smtp' && l.reason === 'cleartext'),
      'the refused AUTH is logged with its reason',
    );
    const mail = await c.command('MAIL FROM:<alice@example.test>');
    assert.deepEqual(code(mail), [530, '5.7.0']);
    assert.match(mail.text, /Authentication required/);

    assert.equal((await c.startTls()).code, 220);
    const ehlo2 = await c.command('EHLO client.example');
    assert.ok(
      ehlo2.lines.some((l) => /^250[ -]AUTH PLAIN LOGIN$/.test(l)),
      'AUTH PLAIN LOGIN inside TLS',
    );
    assert.ok(!ehlo2.lines.some((l) => l.includes('STARTTLS')));
    const mail2 = await c.command('MAIL FROM:<alice@example.test>');
    assert.deepEqual(code(mail2), [530, '5.7.0'], 'MAIL before AUTH inside TLS as well');
    await c.quit();
  });

  it('lists AUTH at once on the implicit-TLS port', async () => {
    const c = await SmtpClient.connect(srv.submissionsPort, { implicitTls: true });
    await c.greeting();
    const ehlo = await c.command('EHLO client.example');
    assert.ok(ehlo.lines.some((l) => /^250[ -]AUTH PLAIN LOGIN$/.test(l)));
    const r = await c.command(`AUTH PLAIN ${plain('bob@example.test', 'bob-pw')}`);
    assert.deepEqual(code(r), [235, '2.7.0']);
    await c.quit();
  });

  it('accepts AUTH PLAIN with and without an initial response and AUTH LOGIN', async () => {
    const a = await open(srv);
    const r1 = await a.command('AUTH PLAIN');
    assert.equal(r1.code, 334);
    assert.deepEqual(code(await a.command(plain(...ALICE))), [235, '2.7.0']);
    assert.deepEqual(code(await a.command(`AUTH PLAIN ${plain(...ALICE)}`)), [503, '5.5.1'], 'no second AUTH');
    await a.quit();

    const b = await open(srv);
    const u = await b.command('AUTH LOGIN');
    assert.deepEqual([u.code, u.text], [334, 'VXNlcm5hbWU6']);
    const p = await b.command(b64('bob@example.test'));
    assert.deepEqual([p.code, p.text], [334, 'UGFzc3dvcmQ6']);
    assert.deepEqual(code(await b.command(b64('bob-pw'))), [235, '2.7.0']);
    await b.quit();

    const c = await open(srv);
    assert.equal((await c.command(`AUTH LOGIN ${b64('carol@example.test')}`)).code, 334);
    assert.deepEqual(code(await c.command(b64('carol-pw'))), [235, '2.7.0']);
    assert.ok(srv.logs.some((l) => l.msg === 'authenticated' && l.sasl_username === 'carol@example.test' && l.sasl_method === 'LOGIN'));
    await c.quit();
  });

  it('refuses bad credentials with 535 5.7.8 and counts failures with the shared limiter', async () => {
    const before = srv.logs.length;
    const c = await open(srv);
    assert.deepEqual(code(await c.command(`AUTH PLAIN ${plain('alice@example.test', 'wrong')}`)), [535, '5.7.8']);
    const r = await c.command(`AUTH PLAIN ${plain('nobody@example.test', 'x')}`);
    assert.deepEqual(code(r), [535, '5.7.8']);
    assert.match(r.text, /Authentication credentials invalid/);
    // Acting as someone else (a PLAIN authzid) is refused too.
    assert.deepEqual(code(await c.command(`AUTH PLAIN ${plain('alice@example.test', 'alice-pw', 'bob@example.test')}`)), [535, '5.7.8']);
    const failures = srv.logs
      .slice(before)
      .filter((l) => l.msg === 'login failed' && l.protocol === 'smtp')
      .map((l) => l.failures);
    assert.deepEqual(failures, [1, 2], 'each failure counted for the address (the next login waits longer)');
    assert.ok(
      srv.logs.slice(before).some((l) => l.msg === 'login refused' && l.reason === 'authzid' && l.user === 'alice@example.test'),
      'authorization as another user is logged with its reason',
    );
    // The right password still works, and resets the count.
    assert.deepEqual(code(await c.command(`AUTH PLAIN ${plain(...ALICE)}`)), [235, '2.7.0']);
    await c.quit();
    const c2 = await open(srv);
    assert.deepEqual(code(await c2.command(`AUTH PLAIN ${plain('alice@example.test', 'wrong again')}`)), [535, '5.7.8']);
    assert.equal(srv.logs.filter((l) => l.msg === 'login failed').at(-1)!.failures, 1);
    assert.deepEqual(code(await c2.command(`AUTH PLAIN ${plain(...ALICE)}`)), [235, '2.7.0']);
    await c2.quit();
  });

  it('answers 454 4.7.0 when the directory cannot be asked', async () => {
    const directory = srv.runtime.directory as unknown as Record<string, unknown>;
    directory.authenticate = async () => {
      throw tempFail('directory down (test)');
    };
    try {
      const c = await open(srv);
      const r = await c.command(`AUTH PLAIN ${plain(...ALICE)}`);
      assert.deepEqual(code(r), [454, '4.7.0']);
      assert.match(r.text, /Temporary authentication failure/);
      await c.quit();
    } finally {
      delete directory.authenticate;
    }
  });

  it('accepts only envelope senders the login owns', async () => {
    const c = await open(srv, { login: ALICE });
    const refused = await c.command('MAIL FROM:<bob@example.test>');
    assert.deepEqual(code(refused), [553, '5.7.1']);
    assert.match(refused.text, /Sender address rejected: not owned by user alice@example\.test/);
    for (const sender of [
      'bob@remote.example',
      'nobody@example.test',
      'carol@example.test',
      'alice@remote.example',
      'forward@example.test',
    ]) {
      assert.deepEqual(code(await c.command(`MAIL FROM:<${sender}>`)), [553, '5.7.1'], sender);
    }
    const owned = [
      'alice@example.test',
      'ALICE@example.TEST',
      'alice+lists@example.test', // extension
      'alice@alias.example', // alias domain
      'team@example.test', // an alias one of whose targets is alice
      'all@example.test',
      'boss@remote.example', // extra_senders entry
      'anyone@alice.example', // extra_senders "@domain"
      '', // the null sender
    ];
    for (const sender of owned) {
      assert.deepEqual(code(await c.command(`MAIL FROM:<${sender}>`)), [250, '2.1.0'], sender || '<>');
      assert.equal((await c.command('RSET')).code, 250);
    }
    await c.quit();
    assert.ok(
      srv.logs.some(
        (l) => l.msg === 'sender refused: not owned by user' && l.from === 'bob@example.test' && l.sasl_username === 'alice@example.test',
      ),
    );
  });

  it('refuses a From: header the login does not own after DATA, queueing and delivering nothing', async () => {
    const before = (await srv.read('example.test/bob')).length;
    const c = await open(srv, { login: ALICE });
    for (const from of ['Bob <bob@example.test>', 'alice@example.test, mallory@remote.example', 'undisclosed']) {
      const res = await c.sendMail('alice@example.test', ['bob@example.test'], message({ from, subject: `spoofed ${from}` }));
      assert.deepEqual(code(res.final?.[0]), [553, '5.7.1'], from);
      assert.match(res.final![0]!.text, /not owned by user alice@example\.test/);
    }
    // The null sender is allowed, but the From: must still be the user's.
    const bounce = await c.sendMail('', ['bob@example.test'], message({ from: 'MAILER-DAEMON@example.test', subject: 'spoofed bounce' }));
    assert.deepEqual(code(bounce.mail), [250, '2.1.0']);
    assert.deepEqual(code(bounce.final?.[0]), [553, '5.7.1']);
    assert.deepEqual(
      srv.runtime.queue.list().filter((m) => m.sender === 'alice@example.test' || m.sender === ''),
      [],
    );
    // The next message goes through; only it arrives.
    const ok = await c.sendMail(
      'alice@example.test',
      ['bob@example.test'],
      message({ from: '"Team" <team@example.test>', subject: 'owned from' }),
    );
    assert.deepEqual(code(ok.final?.[0]), [250, '2.0.0']);
    await c.quit();
    await waitFor(async () => (await srv.read('example.test/bob')).some((m) => m.includes('Subject: owned from')), 5000, 'delivery to bob');
    const msgs = await srv.read('example.test/bob');
    assert.equal(msgs.length, before + 1);
    assert.ok(!msgs.some((m) => m.includes('Subject: spoofed')));
  });

  it('delivers to a local mailbox with Received "with ESMTPSA" and adds a missing Date and Message-ID', async () => {
    const c = await open(srv, { login: ALICE });
    const res = await c.sendMail('alice@example.test', ['bob@example.test'], message({ subject: 'no date', from: 'alice@example.test' }));
    assert.deepEqual(code(res.final?.[0]), [250, '2.0.0']);
    const qid = /queued as ([0-9A-F]+)/.exec(res.final![0]!.text)?.[1];
    assert.ok(qid);
    const kept = await c.sendMail(
      'alice@example.test',
      ['bob@example.test'],
      message({ subject: 'has date', date: 'Mon, 2 Nov 2026 10:00:00 +0100', messageId: '<mine.1@client.example>' }),
    );
    assert.equal(kept.final?.[0]?.code, 250);
    await c.quit();

    await waitFor(async () => (await srv.read('example.test/bob')).some((m) => m.includes('Subject: has date')), 5000, 'delivery to bob');
    const msgs = await srv.read('example.test/bob');
    const first = msgs.find((m) => m.includes('Subject: no date'))!;
    assert.match(
      first,
      /^Return-Path: <alice@example\.test>\nDelivered-To: bob@example\.test\nReceived: from client\.example \(unknown \[127\.0\.0\.1\]\)\n/,
    );
    assert.match(
      first,
      new RegExp(
        `\\(using TLSv1\\.[23] with cipher [A-Z0-9_-]+\\)\\n\\tby mx\\.test\\.example \\(maild\\) with ESMTPSA id ${qid}\\n\\tfor <bob@example\\.test>;`,
      ),
    );
    assert.match(first, /\nDate: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n/);
    assert.match(first, new RegExp(`\\nMessage-ID: <${qid}\\.[0-9A-F]+@mx\\.test\\.example>\\n`));
    assert.ok(!first.includes('alice-pw') && !/Authenticated/i.test(first), 'the login is not written into the message');
    const second = msgs.find((m) => m.includes('Subject: has date'))!;
    assert.equal(second.match(/^Date:/gm)?.length, 1);
    assert.equal(second.match(/^Message-ID:/gim)?.length, 1);
    assert.ok(second.includes('Message-ID: <mine.1@client.example>'));
    assert.ok(second.includes('Date: Mon, 2 Nov 2026 10:00:00 +0100'));
    assert.ok(srv.logs.some((l) => l.msg === 'queued' && l.qid === qid && l.sasl_username === 'alice@example.test'));
  });

  it('adds From: from the envelope sender when the message has none', async () => {
    const c = await open(srv, { implicit: true, login: ALICE });
    const res = await c.sendMail(
      'alice+x@example.test',
      ['carol@example.test'],
      message({ from: null, subject: 'fromless', to: 'carol@example.test' }),
    );
    assert.equal(res.final?.[0]?.code, 250);
    await c.quit();
    await waitFor(
      async () => (await srv.read('example.test/carol')).some((m) => m.includes('Subject: fromless')),
      5000,
      'delivery to carol',
    );
    const msg = (await srv.read('example.test/carol')).find((m) => m.includes('Subject: fromless'))!;
    assert.match(msg, /\nFrom: <alice\+x@example\.test>\n/);
  });

  it('validates local recipients at RCPT as the MX does and relays remote ones through the queue', async () => {
    const c = await open(srv, { login: ALICE });
    assert.equal((await c.command('MAIL FROM:<alice@example.test> SIZE=5000')).code, 250);
    assert.deepEqual(code(await c.command('RCPT TO:<nobody@example.test>')), [550, '5.1.1']);
    assert.deepEqual(code(await c.command('RCPT TO:<disabled@example.test>')), [550, '5.2.1']);
    assert.deepEqual(code(await c.command('RCPT TO:<small@example.test>')), [552, '5.2.2'], 'declared size over quota');
    assert.deepEqual(code(await c.command('RCPT TO:<someone@remote.example>')), [250, '2.1.5']);
    assert.deepEqual(code(await c.command('RCPT TO:<carol@example.test>')), [250, '2.1.5']);
    assert.equal((await c.command('DATA')).code, 354);
    const before = sink.messages.length;
    c.write(message({ subject: 'mixed', to: 'someone@remote.example, carol@example.test' }).replace(/\n/g, '\r\n') + '.\r\n');
    const final = await c.reply();
    assert.deepEqual(code(final), [250, '2.0.0']);
    const qid = /queued as ([0-9A-F]+)/.exec(final.text)![1]!;
    await c.quit();

    const [got] = (await sink.waitForMessages(before + 1)).slice(before);
    assert.equal(got!.from, 'alice@example.test');
    assert.deepEqual(got!.to, ['someone@remote.example']);
    const text = got!.data.toString('utf8');
    assert.match(text, new RegExp(`^Received: from client\\.example \\(unknown \\[127\\.0\\.0\\.1\\]\\)\\r\\n`));
    assert.match(text, new RegExp(`with ESMTPSA id ${qid};\\r\\n`));
    assert.match(text, /\r\nMessage-ID: <[0-9A-F]+\.[0-9A-F]+@mx\.test\.example>\r\n/);
    assert.match(text, /\r\nSubject: mixed\r\n/);
    await waitFor(async () => (await srv.read('example.test/carol')).some((m) => m.includes('Subject: mixed')), 5000, 'delivery to carol');
  });

  it('answers recipients over the limit with 452 4.5.3 without ending the session, and queues for the rest', async () => {
    const c = await open(srv, { login: ALICE });
    assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
    const codes = [];
    for (let i = 0; i < 120; i++) codes.push(code(await c.command(`RCPT TO:<sub${i}@example.org>`)).join(' '));
    assert.deepEqual(codes, [...Array(100).fill('250 2.1.5'), ...Array(20).fill('452 4.5.3')]);
    assert.equal((await c.command('DATA')).code, 354);
    c.write(message({ subject: 'submission overshoot', to: 'list@example.org' }).replace(/\n/g, '\r\n') + '.\r\n');
    assert.deepEqual(code(await c.reply()), [250, '2.0.0']);
    await c.quit();
    await waitFor(
      async () => (await srv.read('example.org/erin')).some((m) => m.includes('Subject: submission overshoot')),
      5000,
      'delivery to the catch-all mailbox',
    );
  });

  it('refuses a message over the size limit with 552 5.3.4 and queues nothing', async () => {
    const c = await open(srv, { login: ALICE });
    const big = message({ subject: 'too big', body: `${'x'.repeat(998)}\n`.repeat(1100) });
    const res = await c.sendMail('alice@example.test', ['big@remote.example'], big);
    assert.deepEqual(code(res.final?.[0]), [552, '5.3.4']);
    assert.deepEqual(code(await c.command('NOOP')), [250, '2.0.0'], 'the session goes on');
    await c.quit();
    assert.ok(!srv.runtime.queue.list().some((m) => m.recipients.some((r) => r.address === 'big@remote.example')));
    assert.ok(srv.logs.some((l) => l.msg === 'message refused' && l.reply === '552 5.3.4 Message size exceeds fixed limit'));
  });

  it('refuses a header section too large to check (a From: hidden after 256 KiB of header fields)', async () => {
    const c = await open(srv, { login: ALICE });
    const padding = Array.from({ length: 3000 }, (_, i) => `X-Padding-${i}: ${'p'.repeat(90)}`).join('\n');
    const hidden = `From: alice@example.test\nTo: friend@remote.example\nSubject: hidden from\n${padding}\nFrom: ceo@bank.example\n\nPay now.\n`;
    const res = await c.sendMail('alice@example.test', ['friend@remote.example'], hidden);
    assert.deepEqual(code(res.final?.[0]), [552, '5.3.4']);
    await c.quit();
    assert.ok(!srv.runtime.queue.list().some((m) => m.recipients.some((r) => r.address === 'friend@remote.example')));
  });

  it('delivers through nodemailer (STARTTLS on the submission port, and implicit TLS)', async () => {
    for (const [port, secure] of [
      [srv.submissionPort, false],
      [srv.submissionsPort, true],
    ] as const) {
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port,
        secure,
        requireTLS: !secure,
        auth: { user: 'alice@example.test', pass: 'alice-pw' },
        tls: { rejectUnauthorized: false },
      });
      const subject = `nodemailer ${secure ? 'implicit' : 'starttls'}`;
      const info = await transport.sendMail({ from: 'Alice <alice@example.test>', to: 'bob@example.test', subject, text: 'Hi Bob.' });
      transport.close();
      assert.deepEqual(info.accepted, ['bob@example.test']);
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9A-F]+/);
      await waitFor(
        async () => (await srv.read('example.test/bob')).some((m) => m.includes(`Subject: ${subject}`)),
        5000,
        'delivery to bob',
      );
    }
  });
});

describe('submission options', () => {
  it('leaves the client address out of Received with hide_client_ip and limits recipients per login', async () => {
    const srv = await startTestServer({ config: { submission: { hide_client_ip: true, rate_limit: { recipients: 2, window: '1h' } } } });
    try {
      const c = await open(srv, { login: ALICE });
      assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
      assert.deepEqual(code(await c.command('RCPT TO:<bob@example.test>')), [250, '2.1.5']);
      assert.deepEqual(code(await c.command('RCPT TO:<nobody@example.test>')), [550, '5.1.1'], 'refused: not counted');
      assert.deepEqual(code(await c.command('RCPT TO:<carol@example.test>')), [250, '2.1.5']);
      const third = await c.command('RCPT TO:<alice@example.test>');
      assert.deepEqual(code(third), [450, '4.7.1']);
      assert.match(third.text, /Recipient rate limit exceeded, try again later/);
      assert.equal((await c.command('DATA')).code, 354);
      c.write(message({ subject: 'hidden' }).replace(/\n/g, '\r\n') + '.\r\n');
      assert.equal((await c.reply()).code, 250);
      await c.quit();
      // The limit is per login across connections and ports.
      const d = await open(srv, { implicit: true, login: ALICE });
      assert.equal((await d.command('MAIL FROM:<alice@example.test>')).code, 250);
      assert.deepEqual(code(await d.command('RCPT TO:<bob@example.test>')), [450, '4.7.1']);
      await d.quit();
      const e = await open(srv, { implicit: true, login: ['bob@example.test', 'bob-pw'] });
      assert.equal((await e.command('MAIL FROM:<bob@example.test>')).code, 250);
      assert.deepEqual(code(await e.command('RCPT TO:<alice@example.test>')), [250, '2.1.5'], 'other logins have their own count');
      await e.quit();

      await waitFor(
        async () => (await srv.read('example.test/carol')).some((m) => m.includes('Subject: hidden')),
        5000,
        'delivery to carol',
      );
      const msg = (await srv.read('example.test/carol')).find((m) => m.includes('Subject: hidden'))!;
      assert.match(msg, /\nReceived: by mx\.test\.example \(maild\) with ESMTPSA id [0-9A-F]+;\n\t\w{3}, /);
      assert.ok(!msg.includes('127.0.0.1'), 'no client address');
      assert.ok(!msg.includes('client.example'), 'no client name');
    } finally {
      await srv.stop();
    }
  });

  it('allows AUTH without TLS from trusted networks only when auth.cleartext is trusted_networks', async () => {
    const srv = await startTestServer({ config: { trusted_networks: ['127.0.0.0/8'], auth: { cleartext: 'trusted_networks' } } });
    try {
      const c = await SmtpClient.connect(srv.submissionPort);
      await c.greeting();
      const ehlo = await c.command('EHLO client.example');
      assert.ok(ehlo.lines.some((l) => /AUTH PLAIN LOGIN$/.test(l)));
      assert.deepEqual(code(await c.command(`AUTH PLAIN ${plain(...ALICE)}`)), [235, '2.7.0']);
      await c.quit();
    } finally {
      await srv.stop();
    }
    const other = await startTestServer({ config: { auth: { cleartext: 'trusted_networks' } } });
    try {
      const c = await SmtpClient.connect(other.submissionPort);
      await c.greeting();
      const ehlo = await c.command('EHLO client.example');
      assert.ok(!ehlo.lines.some((l) => l.includes('AUTH')), 'not trusted: no AUTH in cleartext');
      assert.deepEqual(code(await c.command(`AUTH PLAIN ${plain(...ALICE)}`)), [530, '5.7.0']);
      await c.quit();
    } finally {
      await other.stop();
    }
  });
});

describe('MX listener and the outbound queue', () => {
  let srv: TestServer;
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink({ starttls: false });
    srv = await startTestServer({
      config: { trusted_networks: ['127.0.0.0/8'], queue: { relayhost: `[127.0.0.1]:${sink.port}`, tls: 'none', retry_min: '1s' } },
    });
  });
  after(async () => {
    await srv.stop();
    await sink.close();
  });

  it('relays for trusted clients through the queue', async () => {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO trusted.example');
    const before = sink.messages.length;
    const res = await c.sendMail(
      'app@trusted.example',
      ['someone@remote.example'],
      message({ from: 'app@trusted.example', subject: 'relayed' }),
    );
    assert.deepEqual(code(res.rcpts[0]), [250, '2.1.5']);
    assert.deepEqual(code(res.final?.[0]), [250, '2.0.0']);
    await c.quit();
    const [got] = (await sink.waitForMessages(before + 1)).slice(before);
    assert.equal(got!.from, 'app@trusted.example');
    assert.deepEqual(got!.to, ['someone@remote.example']);
    assert.match(
      got!.data.toString(),
      /^Received: from trusted\.example \(unknown \[127\.0\.0\.1\]\)\r\n\tby mx\.test\.example \(maild\) with ESMTP id /,
    );
    assert.ok(srv.logs.some((l) => l.msg === 'queued' && l.origin === 'relay'));
  });

  it('forwards an alias with a remote destination, delivering the local recipients of the same message too', async () => {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO client.remote.example');
    const before = sink.messages.length;
    const res = await c.sendMail(
      's@sender.example',
      ['forward@example.test', 'alice@example.test'],
      message({ from: 's@sender.example', subject: 'forwarded' }),
    );
    assert.deepEqual(code(res.final?.[0]), [250, '2.0.0']);
    await c.quit();
    const [got] = (await sink.waitForMessages(before + 1)).slice(before);
    assert.equal(got!.from, 's@sender.example');
    assert.deepEqual(got!.to, ['someone@remote.example']);
    assert.match(got!.data.toString(), /\r\nSubject: forwarded\r\n/);
    await waitFor(
      async () => (await srv.read('example.test/alice')).some((m) => m.includes('Subject: forwarded')),
      5000,
      'delivery to alice',
    );
    assert.ok(srv.logs.some((l) => l.msg === 'queued' && l.origin === 'forward'));
  });

  it('keeps delivering local-only messages directly', async () => {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO client.remote.example');
    const res = await c.sendMail('s@sender.example', ['bob@example.test'], message({ from: 's@sender.example', subject: 'direct' }));
    assert.equal(res.final?.[0]?.code, 250);
    await c.quit();
    // The direct path has delivered before its 250.
    assert.ok((await srv.read('example.test/bob')).some((m) => m.includes('Subject: direct')));
  });
});

describe('header safety', () => {
  it('refuses an EHLO name with a bare CR and writes no line break of a client value into Received', async () => {
    const srv = await startTestServer();
    try {
      const c = await SmtpClient.connect(srv.submissionPort);
      await c.greeting();
      assert.equal((await c.command('EHLO evil.example\rX-Injected: yes')).code, 501);
      await c.quit();
    } finally {
      await srv.stop();
    }
    const header = receivedHeader({
      helo: 'evil.example\r\nX-Injected: yes',
      ip: '192.0.2.1\n',
      hostname: 'mx.example',
      protocol: 'ESMTPSA',
      queueId: 'Q1',
      forAddress: 'bob@example.test\r\nBcc: x@y',
      tls: { version: 'TLSv1.3\r\n', cipher: 'X' },
    });
    // Our own folds are LF + TAB; nothing else starts a line.
    assert.deepEqual(
      header.split('\n').map((l) => l[0] === '\t' || l.startsWith('Received: ')),
      [true, true, true, true],
    );
    assert.ok(!header.includes('\r'));
  });
});

describe('submission beforeCommit', () => {
  const logger = pino({ level: 'silent' });
  const directory = {
    isLocalDomain: async (d: string) => d === 'example.test',
    resolve: async (a: string) => ({ address: a, mailboxes: a.startsWith('alice') ? [{ email: 'alice@example.test' }] : [], remote: [] }),
  } as never;

  it('signs the prepended headers plus the message for the From: domain', async () => {
    const calls: Array<{ domain: string; text: string }> = [];
    const dkim = {
      async signatureFor(domain: string, msg: Readable | Buffer) {
        const chunks: Buffer[] = [];
        for await (const c of msg as Readable) chunks.push(c as Buffer);
        calls.push({ domain, text: Buffer.concat(chunks).toString() });
        return 'DKIM-Signature: v=1; d=example.test; b=xyz\r\n';
      },
    };
    const body = 'From: alice@example.test\r\nSubject: s\r\n\r\nbody\r\n';
    const hook = submissionBeforeCommit({
      directory,
      extraSenders: {},
      login: 'alice@example.test',
      sender: 'alice@example.test',
      hostname: 'mx.test',
      queueId: 'ABC',
      prepend: 'Received: by mx.test; now\r\n',
      dkim,
      log: logger,
    });
    const extra = await hook(Buffer.from('From: alice@example.test\r\nSubject: s\r\n\r\n'), (prefix) =>
      Readable.from([Buffer.from(prefix + body)]),
    );
    assert.match(extra, /^Date: .+\r\nMessage-ID: <ABC\.[0-9A-F]+@mx\.test>\r\nDKIM-Signature: v=1; d=example\.test; b=xyz\r\n$/);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.domain, 'example.test');
    assert.equal(calls[0]!.text, `Received: by mx.test; now\r\n${extra.slice(0, extra.indexOf('DKIM-Signature'))}${body}`);
  });

  it('refuses a From: not owned before signing, and survives a signer that fails', async () => {
    let signed = 0;
    const hook = (dkim: { signatureFor(d: string, m: Readable | Buffer): Promise<string | undefined> }) =>
      submissionBeforeCommit({
        directory,
        extraSenders: {},
        login: 'alice@example.test',
        sender: '',
        hostname: 'h',
        queueId: 'Q',
        prepend: '',
        dkim,
        log: logger,
      });
    const signer = {
      async signatureFor() {
        signed++;
        throw new Error('key broken');
      },
    };
    await assert.rejects(
      hook(signer)(Buffer.from('From: eve@example.test\r\n\r\n'), () => Readable.from([])),
      (err: Error) => err.name === 'SenderNotOwnedError',
    );
    assert.equal(signed, 0);
    const extra = await hook(signer)(Buffer.from('From: alice@example.test\r\nDate: x\r\nMessage-Id: <a@b>\r\n\r\n'), () =>
      Readable.from([]),
    );
    assert.equal(extra, '');
    assert.equal(signed, 1);
  });
});
