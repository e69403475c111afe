/**
 * The MX listener over the wire: delivery into Maildir with trace headers, recipient
 * resolution replies, relay refusal in all its disguises, quota, size, SMTP smuggling,
 * STARTTLS and hostile input.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

describe('SMTP MX listener', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  async function session(): Promise<SmtpClient> {
    const c = await SmtpClient.connect(srv.smtpPort);
    const greeting = await c.greeting();
    assert.equal(greeting.code, 220);
    const ehlo = await c.command('EHLO client.remote.example');
    assert.equal(ehlo.code, 250);
    return c;
  }

  it('greets with its hostname and advertises the extensions, without AUTH', async () => {
    const c = await SmtpClient.connect(srv.smtpPort);
    const greeting = await c.greeting();
    assert.match(greeting.text, /^mx\.test\.example ESMTP/);
    const ehlo = await c.command('EHLO client.remote.example');
    const caps = ehlo.lines.map((l) => l.slice(4).split(' ')[0]);
    for (const cap of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'STARTTLS', 'SIZE'])
      assert.ok(caps.includes(cap), `${cap} advertised`);
    assert.ok(!caps.includes('AUTH'), 'no AUTH on the MX listener');
    assert.ok(
      ehlo.lines.some((l) => /SIZE 1048576$/.test(l)),
      'SIZE carries the limit',
    );
    await c.quit();
  });

  it('delivers into the Maildir with Return-Path, Delivered-To and Received, and Dovecot size fields', async () => {
    const c = await session();
    const body = 'Line one.\n.A line starting with a dot.\n..two dots\nLast line.\n';
    const res = await c.sendMail('sender@remote.example', ['Alice@Example.Test'], simpleMessage('trace', body));
    assert.equal(res.mail.code, 250);
    assert.equal(res.rcpts[0]!.code, 250);
    assert.equal(res.rcpts[0]!.enhanced, '2.1.5');
    assert.equal(res.final![0]!.code, 250);
    const qid = /queued as ([0-9A-F]+)/.exec(res.final![0]!.text)?.[1];
    assert.ok(qid, 'the reply names the queue id');
    await c.quit();

    const files = await srv.messages('example.test/alice');
    assert.equal(files.length, 1);
    const file = path.join(srv.mailRoot, 'example.test/alice', files[0]!);
    const text = await readFile(file, 'latin1');
    const lines = text.split('\n');
    assert.equal(lines[0], 'Return-Path: <sender@remote.example>');
    assert.equal(lines[1], 'Delivered-To: alice@example.test');
    assert.match(lines[2]!, /^Received: from client\.remote\.example \(unknown \[127\.0\.0\.1\]\)$/);
    assert.match(
      text,
      new RegExp(
        `by mx\\.test\\.example \\(maild\\) with ESMTP id ${qid}\\n\\tfor <Alice@Example\\.Test>; \\w{3}, \\d{1,2} \\w{3} \\d{4} \\d\\d:\\d\\d:\\d\\d [+-]\\d{4}\\n`,
      ),
    );
    assert.ok(text.includes('\n.A line starting with a dot.\n..two dots\n'), 'dot-stuffing undone exactly once');
    assert.ok(!text.includes('\r'), 'stored with LF line ends');
    const size = (await stat(file)).size;
    const lf = text.split('\n').length - 1;
    assert.match(files[0]!, new RegExp(`^new/\\d+\\.M\\d+P\\d+Q\\d+\\..+,S=${size},W=${size + lf}$`));
    assert.deepEqual(await srv.tmpFiles('example.test/alice'), [], 'nothing left in tmp/');

    const line = srv.logs.find((l) => l.msg === 'delivered' && l.qid === qid);
    assert.ok(line, 'one maillog line per delivery');
    assert.equal(line.from, 'sender@remote.example');
    assert.equal(line.to, 'alice@example.test');
    assert.equal(line.status, 'sent');
    assert.equal(typeof line.size, 'number');
  });

  it('fans an alias out to every target exactly once, each copy with its own Delivered-To', async () => {
    const before = {
      alice: (await srv.messages('example.test/alice')).length,
      bob: (await srv.messages('example.test/bob')).length,
      carol: (await srv.messages('example.test/carol')).length,
    };
    const c = await session();
    const res = await c.sendMail('sender@remote.example', ['all@example.test'], simpleMessage('fanout'));
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    for (const [user, n] of Object.entries(before)) {
      const msgs = await srv.read(`example.test/${user}`);
      assert.equal(msgs.length, n + 1, `${user} got it once`);
      const latest = msgs.find((m) => m.includes('Subject: fanout'))!;
      assert.match(latest, new RegExp(`^Return-Path: <sender@remote.example>\\nDelivered-To: ${user}@example.test\\n`));
      assert.match(latest, /for <all@example\.test>;/);
    }
  });

  it('delivers an alias domain address to the target domain mailbox and catch-alls to their target', async () => {
    const c = await session();
    assert.equal((await c.sendMail('s@remote.example', ['bob+news@alias.example'], simpleMessage('aliasdomain'))).final![0]!.code, 250);
    assert.equal((await c.sendMail('s@remote.example', ['anything@example.org'], simpleMessage('catchall'))).final![0]!.code, 250);
    await c.quit();
    assert.ok((await srv.read('example.test/bob')).some((m) => m.includes('Subject: aliasdomain')));
    assert.ok(
      (await srv.read('example.org/erin')).some((m) => m.includes('Subject: catchall') && m.includes('Delivered-To: erin@example.org')),
    );
  });

  it('refuses unknown, disabled and looping recipients with their codes', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<sender@remote.example>')).code, 250);
    const unknown = await c.command('RCPT TO:<nobody@example.test>');
    assert.deepEqual([unknown.code, unknown.enhanced], [550, '5.1.1']);
    const disabled = await c.command('RCPT TO:<disabled@example.test>');
    assert.deepEqual([disabled.code, disabled.enhanced], [550, '5.2.1']);
    const loop = await c.command('RCPT TO:<loop1@example.test>');
    assert.deepEqual([loop.code, loop.enhanced], [550, '5.4.6']);
    await c.quit();
  });

  it('refuses relaying in every disguise with 554 5.7.1', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
    const attempts = [
      'victim@remote.example',
      'victim%remote.example@example.test',
      'remote.example!victim@example.test',
      '@example.test:victim@remote.example',
      '@relay.one,@relay.two:victim@remote.example',
      'victim@[127.0.0.1]',
      'victim@[IPv6:::1]',
      'postmaster@remote.example',
    ];
    for (const rcpt of attempts) {
      const r = await c.command(`RCPT TO:<${rcpt}>`);
      assert.deepEqual([r.code, r.enhanced], [554, '5.7.1'], `relay attempt ${rcpt}: ${r.lines.join(' | ')}`);
    }
    // A quoted local part with '@' is refused by the address parser before the relay check.
    const quoted = await c.command('RCPT TO:<"victim@remote.example"@example.test>');
    assert.ok(quoted.code >= 500 && quoted.code < 600, `quoted routing refused: ${quoted.lines.join(' | ')}`);
    // Nothing was accepted, so DATA has no recipients.
    assert.equal((await c.command('DATA')).code, 503);
    await c.quit();
  });

  it('refuses local parts that could escape the mail root', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    for (const rcpt of ['a/b@example.test', '../etc@example.test', 'a\\b@example.test', '.@example.test']) {
      const r = await c.command(`RCPT TO:<${rcpt}>`);
      assert.ok(r.code >= 500 && r.code < 600, `${rcpt}: ${r.lines.join(' | ')}`);
    }
    const slash = await c.command('RCPT TO:<x/y@example.test>');
    assert.deepEqual([slash.code, slash.enhanced], [553, '5.1.3']);
    c.write('RCPT TO:<a\u0000b@example.test>\r\n');
    assert.ok((await c.reply()).code >= 500);
    await c.quit();
  });

  it('refuses a message over the size limit with 552 5.3.4 and keeps nothing', async () => {
    const c = await session();
    const declared = await c.command('MAIL FROM:<s@remote.example> SIZE=2000000');
    assert.deepEqual([declared.code, declared.enhanced], [552, '5.3.4']);
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    assert.equal((await c.command('RCPT TO:<carol@example.test>')).code, 250);
    const count = (await srv.messages('example.test/carol')).length;
    assert.equal((await c.command('DATA')).code, 354);
    const line = `${'x'.repeat(998)}\r\n`;
    for (let i = 0; i < 1100; i++) c.write(line);
    c.write('.\r\n');
    const r = await c.reply();
    assert.deepEqual([r.code, r.enhanced], [552, '5.3.4']);
    assert.equal((await c.command('NOOP')).code, 250, 'session continues');
    await c.quit();
    assert.equal((await srv.messages('example.test/carol')).length, count);
    assert.deepEqual(await srv.tmpFiles('example.test/carol'), []);
  });

  it('enforces quota: 552 5.2.2 for a message that does not fit, 452 4.2.2 once full', async () => {
    // small@example.test has a 2000-byte quota.
    const c = await session();
    const tooBigDeclared = await c.command('MAIL FROM:<s@remote.example> SIZE=5000');
    assert.equal(tooBigDeclared.code, 250);
    const r1 = await c.command('RCPT TO:<small@example.test>');
    assert.deepEqual([r1.code, r1.enhanced], [552, '5.2.2'], 'declared size over quota refused at RCPT');
    await c.command('RSET');

    const undeclared = await c.sendMail('s@remote.example', ['small@example.test'], simpleMessage('big', 'y'.repeat(3000)));
    assert.equal(undeclared.rcpts[0]!.code, 250);
    assert.deepEqual([undeclared.final![0]!.code, undeclared.final![0]!.enhanced], [552, '5.2.2'], 'over quota at end of DATA');
    assert.equal((await srv.messages('example.test/small')).length, 0, 'nothing delivered');

    const fits = await c.sendMail('s@remote.example', ['small@example.test'], simpleMessage('fits', 'z'.repeat(1500)));
    assert.equal(fits.final![0]!.code, 250);
    const full = await c.sendMail('s@remote.example', ['small@example.test'], simpleMessage('more', 'z'.repeat(600)));
    assert.deepEqual([full.final![0]!.code, full.final![0]!.enhanced], [552, '5.2.2']);
    // Fill the rest so the mailbox is at its limit: the next RCPT is refused temporarily.
    const maildirsize = await readFile(path.join(srv.mailRoot, 'example.test/small/maildirsize'), 'latin1');
    assert.match(maildirsize, /^2000S\n/);
    const used = maildirsize
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .reduce((n, l) => n + Number(l.split(' ')[0]), 0);
    const { appendFile } = await import('node:fs/promises');
    await appendFile(path.join(srv.mailRoot, 'example.test/small/maildirsize'), `${2000 - used} 0\n`);
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    const atLimit = await c.command('RCPT TO:<small@example.test>');
    assert.deepEqual([atLimit.code, atLimit.enhanced], [452, '4.2.2']);
    await c.quit();
    assert.equal((await srv.messages('example.test/small')).length, 1);
  });

  it('ends DATA only at CRLF.CRLF: smuggling sequences never yield a second message', async () => {
    const smuggles = ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r', '\n..\n'];
    for (const [i, seq] of smuggles.entries()) {
      const c = await session();
      const before = (await srv.messages('example.test/bob')).length;
      const beforeCarol = (await srv.messages('example.test/carol')).length;
      assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
      assert.equal((await c.command('RCPT TO:<bob@example.test>')).code, 250);
      assert.equal((await c.command('DATA')).code, 354);
      c.write(
        `Subject: smuggle ${i}\r\n\r\nfirst part${seq}MAIL FROM:<evil@remote.example>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\nSubject: smuggled ${i}\r\n\r\nsecond\r\n.\r\n`,
      );
      const r = await c.reply();
      assert.equal(r.code, 250, `sequence ${JSON.stringify(seq)}: ${r.lines.join(' | ')}`);
      // Nothing else may come back: the smuggled commands are message content.
      const q = await c.command('QUIT');
      assert.equal(q.code, 221, `sequence ${JSON.stringify(seq)}: only one reply to DATA, then QUIT's`);
      assert.equal((await srv.messages('example.test/bob')).length, before + 1);
      assert.equal((await srv.messages('example.test/carol')).length, beforeCarol, 'no second message');
      const stored = (await srv.read('example.test/bob')).find((m) => m.includes(`Subject: smuggle ${i}\n`))!;
      assert.ok(stored.includes(`Subject: smuggled ${i}`), 'the smuggled text stayed inside the first message');
    }
  });

  it('answers garbage with 500/501 and closes with 421 after too many errors', async () => {
    const c = await session();
    const unknown = await c.command('FROBNICATE now');
    assert.deepEqual([unknown.code, unknown.enhanced], [500, '5.5.2']);
    const badMail = await c.command('MAIL FROM:not-an-address');
    assert.equal(badMail.code, 501);
    c.write(Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x0d, 0x0a]));
    assert.ok((await c.reply()).code >= 500);
    let last;
    for (let i = 0; i < 30 && !c.closed; i++) {
      try {
        last = await c.command('RCPT TO:<x@example.test>');
      } catch {
        break;
      }
      if (last.code === 421) break;
    }
    assert.equal(last?.code, 421);
    assert.equal(last?.enhanced, '4.7.0');
    assert.ok(await c.waitClosed(2000), 'connection closed after 421');
    // The server is fine.
    const d = await session();
    assert.equal((await d.command('NOOP')).code, 250);
    await d.quit();
  });

  it('answers recipients over the limit with 452 4.5.3 without counting them as errors, and delivers to the rest', async () => {
    const before = (await srv.messages('example.org/erin')).length;
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<bulk@remote.example>')).code, 250);
    // 120 distinct addresses, all caught by the @example.org catch-all: limits.recipients is 100.
    const replies = [];
    for (let i = 0; i < 120; i++) replies.push(await c.command(`RCPT TO:<list${i}@example.org>`));
    assert.deepEqual(
      replies.slice(0, 100).map((r) => r.code),
      Array(100).fill(250),
    );
    assert.deepEqual(
      replies.slice(100).map((r) => `${r.code} ${r.enhanced}`),
      Array(20).fill('452 4.5.3'),
    );
    assert.equal((await c.command('DATA')).code, 354, 'no 421: the 452s are not errors');
    c.write('Subject: overshoot\r\n\r\nto many\r\n.\r\n');
    assert.equal((await c.reply()).code, 250);
    await c.quit();
    const delivered = (await srv.read('example.org/erin')).filter((m) => m.includes('Subject: overshoot'));
    assert.equal(delivered.length, 1, 'delivered once to the mailbox behind the accepted addresses');
    assert.equal((await srv.messages('example.org/erin')).length, before + 1);
  });

  it('closes a session whose command line exceeds the limit, without buffering it', async () => {
    const c = await session();
    c.write(`MAIL FROM:<${'a'.repeat(20_000)}@remote.example>\r\n`);
    const r = await c.reply();
    assert.equal(r.code, 421);
    assert.ok(await c.waitClosed(2000));
  });

  it('upgrades with STARTTLS and discards commands pipelined before the handshake', async () => {
    const c = await session();
    const r = await c.startTls('MAIL FROM:<injected@remote.example>\r\nRCPT TO:<alice@example.test>\r\n');
    assert.equal(r.code, 220);
    // The first reply inside TLS must answer our EHLO, not the injected commands.
    const ehlo = await c.command('EHLO client.remote.example');
    assert.equal(ehlo.code, 250);
    assert.ok(!ehlo.lines.some((l) => l.includes('STARTTLS')), 'no STARTTLS inside TLS');
    // The injected MAIL did not survive: RCPT needs a MAIL first.
    const rcpt = await c.command('RCPT TO:<alice@example.test>');
    assert.equal(rcpt.code, 503);
    const res = await c.sendMail('tls@remote.example', ['alice@example.test'], simpleMessage('over tls'));
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    const msg = (await srv.read('example.test/alice')).find((m) => m.includes('Subject: over tls'))!;
    assert.match(msg, /\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\n\tby mx\.test\.example \(maild\) with ESMTPS id/);
  });

  it('accepts aliases with remote destinations (the outbound queue forwards them)', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    const r = await c.command('RCPT TO:<forward@example.test>');
    assert.equal(r.code, 250);
    assert.equal(r.enhanced, '2.1.5');
    await c.quit();
  });

  it('accepts <postmaster> without a domain only when that maps to a hosted domain', async () => {
    const c = await session();
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    const r = await c.command('RCPT TO:<postmaster>');
    // mx.test.example is not a hosted domain in this directory.
    assert.deepEqual([r.code, r.enhanced], [554, '5.7.1']);
    await c.quit();
  });

  it('handles a client that disconnects in the middle of DATA without keeping anything', async () => {
    const c = await session();
    const before = (await srv.messages('example.test/carol')).length;
    assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
    assert.equal((await c.command('RCPT TO:<carol@example.test>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    c.write('Subject: cut\r\n\r\n' + 'partial line\r\n'.repeat(20_000));
    await new Promise((r) => setTimeout(r, 100));
    c.destroy();
    await waitFor(async () => (await srv.tmpFiles('example.test/carol')).length === 0, 3000, 'tmp/ cleaned');
    assert.equal((await srv.messages('example.test/carol')).length, before);
  });
});

describe('SMTP MX listener limits', () => {
  it('limits connections per client address with 421 4.7.0', async () => {
    const srv = await startTestServer({ config: { limits: { connections_per_ip: 2, message_size: '1M' } } });
    try {
      const a = await SmtpClient.connect(srv.smtpPort);
      assert.equal((await a.greeting()).code, 220);
      const b = await SmtpClient.connect(srv.smtpPort);
      assert.equal((await b.greeting()).code, 220);
      const c = await SmtpClient.connect(srv.smtpPort);
      const refused = await c.greeting();
      assert.deepEqual([refused.code, refused.lines[0]!.slice(4, 9)], [421, '4.7.0']);
      assert.ok(await c.waitClosed(2000));
      await a.quit();
      await waitFor(
        async () => {
          const d = await SmtpClient.connect(srv.smtpPort);
          const g = await d.greeting();
          d.destroy();
          return g.code === 220;
        },
        3000,
        'a slot freed after QUIT',
      );
      await b.quit();
    } finally {
      await srv.stop();
    }
  });

  it('counts too-many-recipients replies as errors beyond the overshoot limit of a transaction', async () => {
    const srv = await startTestServer({ config: { limits: { recipients: 2, recipient_overshoot: 3, errors: 3 } } });
    try {
      const c = await SmtpClient.connect(srv.smtpPort);
      await c.greeting();
      await c.command('EHLO client.remote.example');
      const transaction = async () => {
        assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
        const codes = [];
        for (let i = 0; i < 5; i++) codes.push((await c.command(`RCPT TO:<r${i}@example.org>`)).code);
        return codes;
      };
      // Within the overshoot limit: no errors counted, and a new transaction starts afresh.
      assert.deepEqual(await transaction(), [250, 250, 452, 452, 452]);
      assert.equal((await c.command('RSET')).code, 250);
      assert.deepEqual(await transaction(), [250, 250, 452, 452, 452]);
      // Beyond it, each one counts: the third error ends the session.
      const counted = [];
      for (let i = 5; i < 8; i++) counted.push(await c.command(`RCPT TO:<r${i}@example.org>`));
      assert.deepEqual(
        counted.map((r) => r.code),
        [452, 452, 452],
      );
      const closing = await c.reply();
      assert.deepEqual([closing.code, closing.enhanced], [421, '4.7.0']);
      assert.ok(await c.waitClosed(2000));
    } finally {
      await srv.stop();
    }
  });

  it('closes idle sessions with 421 after the idle timeout', async () => {
    const srv = await startTestServer({ config: { limits: { idle_timeout: '500ms' } } });
    try {
      const c = await SmtpClient.connect(srv.smtpPort);
      assert.equal((await c.greeting()).code, 220);
      const r = await c.reply();
      assert.equal(r.code, 421);
      assert.ok(await c.waitClosed(2000));
    } finally {
      await srv.stop();
    }
  });

  it('relays for trusted clients (the outbound queue delivers)', async () => {
    const srv = await startTestServer({ config: { trusted_networks: ['127.0.0.0/8'] } });
    try {
      const c = await SmtpClient.connect(srv.smtpPort);
      await c.greeting();
      await c.command('EHLO trusted.example');
      assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
      const r = await c.command('RCPT TO:<someone@remote.example>');
      assert.deepEqual([r.code, r.enhanced], [250, '2.1.5']);
      await c.quit();
    } finally {
      await srv.stop();
    }
  });
});

describe('SMTP deadlines', () => {
  /** Sends `chunk` every `everyMs` until the server answers; returns that reply. */
  async function trickle(
    c: SmtpClient,
    chunk: string,
    everyMs: number,
    max: number,
  ): Promise<{ reply: Awaited<ReturnType<SmtpClient['reply']>>; sent: number }> {
    let sent = 0;
    for (; sent < max && !c.closed && c.pending === ''; sent++) {
      c.write(chunk);
      await new Promise((r) => setTimeout(r, everyMs));
    }
    return { reply: await c.reply(), sent };
  }

  /** Files anywhere in the queue's spool. */
  async function spoolFiles(srv: TestServer): Promise<string[]> {
    const spool = path.join(srv.mailRoot, '.queue');
    const dirs = await readdir(spool).catch(() => [] as string[]);
    const files = await Promise.all(
      dirs.map(async (d) => (await readdir(path.join(spool, d)).catch(() => [] as string[])).map((f) => `${d}/${f}`)),
    );
    return files.flat();
  }

  describe('DATA', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({
        config: { limits: { message_size: '1M', idle_timeout: '30s', data_timeout: '300ms', data_min_rate: 1000 } },
      });
    });
    after(async () => {
      await srv.stop();
    });

    async function inData(rcpt: string): Promise<SmtpClient> {
      const c = await SmtpClient.connect(srv.smtpPort);
      await c.greeting();
      await c.command('EHLO slow.example');
      assert.equal((await c.command('MAIL FROM:<slow@remote.example>')).code, 250);
      assert.equal((await c.command(`RCPT TO:<${rcpt}>`)).code, 250);
      assert.equal((await c.command('DATA')).code, 354);
      return c;
    }

    it('cuts off a sender that trickles its message with 421 4.4.2, keeping nothing', async () => {
      const before = (await srv.messages('example.test/carol')).length;
      const c = await inData('carol@example.test');
      c.write('Subject: trickle\r\n\r\n');
      // A byte every 50 ms (20 bytes/s) while the idle timeout is 30 s: only the DATA deadline ends it.
      const { reply } = await trickle(c, 'x', 50, 200);
      assert.deepEqual([reply.code, reply.enhanced], [421, '4.4.2']);
      assert.match(reply.text, /too slow/);
      assert.ok(await c.waitClosed(3000), 'connection closed');
      await waitFor(async () => (await srv.tmpFiles('example.test/carol')).length === 0, 3000, 'tmp/ cleaned');
      assert.equal((await srv.messages('example.test/carol')).length, before, 'nothing delivered');
      assert.ok(srv.logs.some((l) => l.msg === 'session timed out' && l.what === 'data'));
    });

    it('cuts off a trickling message bound for the queue without leaving anything in the spool', async () => {
      const c = await inData('forward@example.test'); // an alias to a remote address: the queue takes it
      c.write('Subject: trickle queue\r\n\r\n');
      const { reply } = await trickle(c, 'x', 50, 200);
      assert.deepEqual([reply.code, reply.enhanced], [421, '4.4.2']);
      assert.ok(await c.waitClosed(3000));
      await waitFor(async () => (await spoolFiles(srv)).length === 0, 3000, 'spool empty');
    });

    it('lets a transfer that keeps the minimum rate run past data_timeout', async () => {
      const c = await inData('carol@example.test');
      c.write('Subject: steady\r\n\r\n');
      // 20 lines of 2 KB, one every 50 ms (about a second in all, data_timeout is 300 ms): each
      // line extends the deadline by 2 s.
      for (let i = 0; i < 20; i++) {
        c.write(`${'y'.repeat(2046)}\r\n`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(c.pending, '', 'no reply before the end of the message');
      c.write('.\r\n');
      assert.equal((await c.reply()).code, 250);
      await c.quit();
      assert.ok((await srv.read('example.test/carol')).some((m) => m.includes('Subject: steady')));
    });
  });

  describe('session', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ config: { limits: { message_size: '1M', idle_timeout: '30s', session_timeout: '1500ms' } } });
    });
    after(async () => {
      await srv.stop();
    });

    it('ends a session that outlasts session_timeout with 421 4.4.2, however busy it keeps itself', async () => {
      const c = await SmtpClient.connect(srv.smtpPort);
      await c.greeting();
      let reply;
      for (let i = 0; i < 500; i++) {
        reply = await c.command('NOOP');
        if (reply.code !== 250) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual([reply?.code, reply?.enhanced], [421, '4.4.2']);
      assert.match(reply!.text, /session too long/);
      assert.ok(await c.waitClosed(3000), 'connection closed');
      assert.ok(srv.logs.some((l) => l.msg === 'session timed out' && l.what === 'session'));
    });

    it('answers a DATA in progress at the session deadline first, then ends the session', async () => {
      const c = await SmtpClient.connect(srv.smtpPort);
      await c.greeting();
      await c.command('EHLO steady.example');
      assert.equal((await c.command('MAIL FROM:<steady@remote.example>')).code, 250);
      assert.equal((await c.command('RCPT TO:<bob@example.test>')).code, 250);
      assert.equal((await c.command('DATA')).code, 354);
      c.write('Subject: past the deadline\r\n\r\n');
      // Until well past the session deadline, at a rate far above data_min_rate.
      for (let i = 0; i < 40 && !c.closed; i++) {
        c.write(`${'z'.repeat(1022)}\r\n`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(c.pending, '', 'nothing cut the message short');
      c.write('.\r\n');
      assert.equal((await c.reply()).code, 250, 'the message is accepted');
      const closing = await c.reply();
      assert.deepEqual([closing.code, closing.enhanced], [421, '4.4.2']);
      assert.ok(await c.waitClosed(3000));
      assert.ok((await srv.read('example.test/bob')).some((m) => m.includes('Subject: past the deadline')));
    });
  });
});
