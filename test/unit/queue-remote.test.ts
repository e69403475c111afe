import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isMailError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { MxResolver, type DnsResolver } from '../../src/queue/mx.js';
import { RemoteDelivery, parseReply, type RemoteDeliveryOptions } from '../../src/queue/remote.js';
import type { NextHop, RecipientResult, Transaction } from '../../src/queue/types.js';
import { startSmtpSink, startStartTlsInjector, type SmtpSink } from '../helpers/smtp-sink.js';

/** Names of the fake DNS: mx1 is an address where nothing listens (127.0.0.2 is loopback on Linux). */
const fakeDns: DnsResolver = {
  resolveMx: async (name) => {
    if (name === 'multi.test') {
      return [
        { priority: 20, exchange: 'mx2.multi.test' },
        { priority: 10, exchange: 'mx1.multi.test' },
      ];
    }
    // Another domain served by multi.test's second MX host.
    if (name === 'alias.test') return [{ priority: 10, exchange: 'mx2.multi.test' }];
    throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' });
  },
  resolve4: async (name) => {
    if (name === 'mx1.multi.test') return ['127.0.0.2'];
    if (name === 'mx2.multi.test') return ['127.0.0.1'];
    throw Object.assign(new Error('nodata'), { code: 'ENODATA' });
  },
  resolve6: async () => {
    throw Object.assign(new Error('nodata'), { code: 'ENODATA' });
  },
};

/** Every RemoteDelivery made here, so that their idle sessions are closed when the tests end. */
const made = new Set<RemoteDelivery>();
after(async () => {
  await Promise.all([...made].map((d) => d.close()));
});

function delivery(options: Partial<RemoteDeliveryOptions> = {}): RemoteDelivery {
  const d = new RemoteDelivery({
    heloName: 'client.test',
    connectTimeoutMs: 3000,
    commandTimeoutMs: 5000,
    mx: new MxResolver({ resolver: fakeDns }),
    logger: silentLogger,
    ...options,
  });
  made.add(d);
  return d;
}

function hop(port: number, tls: NextHop['tls'] = 'none', extra: Partial<NextHop> = {}): NextHop {
  return { lookup: 'host', host: '127.0.0.1', port, tls, ...extra };
}

function transaction(recipients: string[], body: string | Buffer | Array<string | Buffer>, extra: Partial<Transaction> = {}): Transaction {
  const chunks = (Array.isArray(body) ? body : [body]).map((c) => Buffer.from(c));
  return {
    queueId: 'TESTQUEUE01',
    sender: 'sender@example.org',
    recipients,
    open: () => Readable.from(chunks),
    size: chunks.reduce((n, c) => n + c.length, 0),
    ...extra,
  };
}

const BODY = 'From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: test\r\n\r\nHello.\r\n';

/** A port with nothing listening on 127.0.0.1. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** A raw server: greets with `greeting`, then hands each command line to `onLine`. */
async function rawServer(greeting: string, onLine: (line: string, socket: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = '';
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      let eol: number;
      while ((eol = buf.indexOf('\r\n')) >= 0 && !socket.destroyed) {
        const line = buf.slice(0, eol);
        buf = buf.slice(eol + 2);
        onLine(line, socket);
      }
    });
    socket.write(greeting);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function pick(results: RecipientResult[], address: string): RecipientResult {
  const r = results.find((x) => x.address === address);
  assert.ok(r, `no result for ${address}`);
  return r;
}

describe('remote delivery over SMTP', () => {
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink();
  });
  after(async () => {
    await sink.close();
  });

  it('delivers to several recipients in one transaction', async () => {
    const before = sink.messages.length;
    const rcpts = ['a@example.net', 'b@example.net', 'c@example.net', 'a@example.net'];
    const results = await delivery().deliver(hop(sink.port), transaction(rcpts, BODY, { eightBit: true }));
    assert.equal(results.length, 4, 'one result per recipient entry, duplicates included');
    assert.deepEqual(
      results.map((r) => [r.address, r.status, r.code, r.enhanced]),
      rcpts.map((a) => [a, 'sent', 250, '2.0.0']),
    );
    assert.match(results[0]!.text, /^250 2\.0\.0 Ok: queued/);
    assert.equal(results[0]!.remoteMta, `127.0.0.1[127.0.0.1]:${sink.port}`);
    assert.equal(sink.messages.length, before + 1, 'one transaction');
    const msg = sink.messages.at(-1)!;
    assert.deepEqual(msg.to, ['a@example.net', 'b@example.net', 'c@example.net']);
    assert.equal(msg.from, 'sender@example.org');
    assert.equal(msg.data.toString(), BODY);
    assert.equal(msg.heloName, 'client.test');
    assert.equal(msg.secure, false, "tls 'none' never starts TLS");
    assert.equal(msg.mailParams.BODY, '8BITMIME');
    assert.equal(msg.mailParams.SIZE, String(Buffer.byteLength(BODY)));
  });

  it('sends the null sender as MAIL FROM:<>', async () => {
    const results = await delivery().deliver(hop(sink.port), transaction(['bounce@example.net'], BODY, { sender: '' }));
    assert.equal(results[0]!.status, 'sent');
    assert.equal(sink.messages.at(-1)!.from, '');
    assert.equal(sink.messages.at(-1)!.mailParams.BODY, undefined, 'no BODY= without eightBit');
  });

  it('reports mixed per-recipient RCPT results', async () => {
    sink.setRule('busy@example.net', { rcpt: 450, text: '4.2.1 Mailbox busy, try later' });
    sink.setRule('nouser@example.net', { rcpt: 550, text: '5.1.1 <nouser@example.net>: User unknown' });
    sink.setRule('noenh@example.net', { rcpt: 554, text: 'No thanks' });
    try {
      const before = sink.messages.length;
      const rcpts = ['ok@example.net', 'busy@example.net', 'nouser@example.net', 'noenh@example.net'];
      const results = await delivery().deliver(hop(sink.port), transaction(rcpts, BODY));
      assert.deepEqual(
        results.map((r) => r.address),
        rcpts,
      );
      assert.deepEqual([pick(results, 'ok@example.net').status, pick(results, 'ok@example.net').code], ['sent', 250]);
      assert.deepEqual(pick(results, 'busy@example.net'), {
        address: 'busy@example.net',
        status: 'deferred',
        code: 450,
        enhanced: '4.2.1',
        text: '450 4.2.1 Mailbox busy, try later',
        remoteMta: `127.0.0.1[127.0.0.1]:${sink.port}`,
      });
      const nouser = pick(results, 'nouser@example.net');
      assert.deepEqual([nouser.status, nouser.code, nouser.enhanced], ['failed', 550, '5.1.1']);
      assert.equal(nouser.text, '550 5.1.1 <nouser@example.net>: User unknown');
      const noenh = pick(results, 'noenh@example.net');
      assert.deepEqual([noenh.status, noenh.code, noenh.enhanced], ['failed', 554, '5.0.0'], 'enhanced code derived from the reply');
      assert.equal(sink.messages.length, before + 1);
      assert.deepEqual(sink.messages.at(-1)!.to, ['ok@example.net']);
    } finally {
      sink.clearRules();
    }
  });

  it('applies a DATA-end 4xx or 5xx to the accepted recipients only', async () => {
    for (const [code, status] of [
      [451, 'deferred'],
      [554, 'failed'],
    ] as const) {
      sink.setRule('data-refused@example.net', { data: code, text: `${Math.floor(code / 100)}.6.0 Content refused` });
      sink.setRule('rcpt-refused@example.net', { rcpt: 550, text: '5.1.1 Unknown' });
      try {
        const before = sink.messages.length;
        const results = await delivery().deliver(
          hop(sink.port),
          transaction(['data-refused@example.net', 'rcpt-refused@example.net', 'other@example.net'], BODY),
        );
        for (const address of ['data-refused@example.net', 'other@example.net']) {
          const r = pick(results, address);
          assert.deepEqual(
            [r.status, r.code, r.enhanced, r.text],
            [status, code, `${Math.floor(code / 100)}.6.0`, `${code} ${Math.floor(code / 100)}.6.0 Content refused`],
          );
        }
        const refused = pick(results, 'rcpt-refused@example.net');
        assert.deepEqual([refused.status, refused.code, refused.enhanced], ['failed', 550, '5.1.1'], 'RCPT refusal kept');
        assert.equal(sink.messages.length, before, 'nothing accepted');
      } finally {
        sink.clearRules();
      }
    }
  });

  it('applies a MAIL FROM refusal to every recipient', async () => {
    sink.setRule('blocked-sender@example.org', { mail: 553, text: '5.7.1 Sender blocked' });
    try {
      const results = await delivery().deliver(
        hop(sink.port),
        transaction(['x@example.net', 'y@example.net'], BODY, { sender: 'blocked-sender@example.org' }),
      );
      assert.deepEqual(
        results.map((r) => [r.status, r.code, r.enhanced]),
        [
          ['failed', 553, '5.7.1'],
          ['failed', 553, '5.7.1'],
        ],
      );
      sink.setRule('blocked-sender@example.org', { mail: 451, text: '4.3.0 Try later' });
      const again = await delivery().deliver(
        hop(sink.port),
        transaction(['x@example.net'], BODY, { sender: 'blocked-sender@example.org' }),
      );
      assert.deepEqual([again[0]!.status, again[0]!.code, again[0]!.enhanced], ['deferred', 451, '4.3.0']);
    } finally {
      sink.clearRules();
    }
  });

  it('refuses unusable addresses itself and never puts them on the wire', async () => {
    const before = sink.messages.length;
    const results = await delivery().deliver(hop(sink.port), transaction(['good@example.net', 'evil@example.net>\r\nDATA', ''], BODY));
    assert.deepEqual(
      results.map((r) => [r.status, r.enhanced]),
      [
        ['sent', '2.0.0'],
        ['failed', '5.1.3'],
        ['failed', '5.1.3'],
      ],
    );
    assert.doesNotMatch(results[1]!.text, /[\r\n]/);
    assert.deepEqual(sink.messages.at(-1)!.to, ['good@example.net']);
    assert.equal(sink.messages.length, before + 1);
  });

  it('defers every recipient when the connection is refused', async () => {
    const port = await closedPort();
    const results = await delivery().deliver(hop(port), transaction(['a@example.net', 'b@example.net'], BODY));
    for (const r of results) {
      assert.deepEqual([r.status, r.code, r.enhanced], ['deferred', 451, '4.4.1']);
      assert.match(r.text, /Connection refused/);
    }
  });

  it('tries the next MX address when the first refuses the connection', async () => {
    const before = sink.messages.length;
    const results = await delivery().deliver(
      { lookup: 'mx', host: 'multi.test', port: sink.port, tls: 'may' },
      transaction(['m@multi.test'], BODY),
    );
    assert.equal(results[0]!.status, 'sent', results[0]!.text);
    assert.equal(results[0]!.remoteMta, `mx2.multi.test[127.0.0.1]:${sink.port}`);
    assert.equal(sink.messages.length, before + 1);
  });

  it('returns permanent DNS failures as failed results, without connecting', async () => {
    const connections = sink.stats.connections;
    const results = await delivery().deliver(
      { lookup: 'mx', host: 'nx.test', port: sink.port, tls: 'may' },
      transaction(['a@nx.test'], BODY),
    );
    assert.deepEqual([results[0]!.status, results[0]!.code, results[0]!.enhanced], ['failed', 550, '5.1.2']);
    assert.equal(sink.stats.connections, connections);
  });

  it("uses STARTTLS when offered ('may')", async () => {
    const results = await delivery().deliver(hop(sink.port, 'may'), transaction(['tls@example.net'], BODY));
    assert.equal(results[0]!.status, 'sent', results[0]!.text);
    assert.equal(sink.messages.at(-1)!.secure, true);
  });

  it("verifies nothing for 'encrypt' and refuses the self-signed certificate for 'verify'", async () => {
    const ok = await delivery().deliver(hop(sink.port, 'encrypt'), transaction(['enc@example.net'], BODY));
    assert.equal(ok[0]!.status, 'sent', ok[0]!.text);
    assert.equal(sink.messages.at(-1)!.secure, true);

    const mailFrom = sink.stats.mailFrom;
    const results = await delivery().deliver(hop(sink.port, 'verify'), transaction(['ver@example.net'], BODY));
    assert.deepEqual([results[0]!.status, results[0]!.code, results[0]!.enhanced], ['deferred', 451, '4.7.5']);
    assert.match(results[0]!.text, /certificate/i);
    assert.equal(sink.stats.mailFrom, mailFrom, 'no transaction started');
  });

  it('speaks TLS from the first byte to a relay on the SMTPS port (implicitTls), with AUTH', async () => {
    const smtps = await startSmtpSink({ implicitTls: true, auth: { user: 'relayuser', pass: 's3cret' } });
    try {
      const auth = { user: 'relayuser', pass: 's3cret' };
      const sent = await delivery().deliver(hop(smtps.port, 'may', { auth, implicitTls: true }), transaction(['far@example.com'], BODY));
      assert.equal(sent[0]!.status, 'sent', sent[0]!.text);
      assert.equal(smtps.messages[0]!.secure, true);
      assert.equal(smtps.messages[0]!.authUser, 'relayuser');
    } finally {
      await smtps.close();
    }
  });

  it('relays with AUTH inside TLS, and refuses to send credentials otherwise', async () => {
    const relay = await startSmtpSink({ auth: { user: 'relayuser', pass: 's3cret' } });
    const plain = await startSmtpSink({ starttls: false, auth: { user: 'relayuser', pass: 's3cret' } });
    try {
      const auth = { user: 'relayuser', pass: 's3cret' };
      const sent = await delivery().deliver(hop(relay.port, 'encrypt', { auth }), transaction(['far@example.com'], BODY));
      assert.equal(sent[0]!.status, 'sent', sent[0]!.text);
      assert.equal(relay.messages.length, 1);
      assert.equal(relay.messages[0]!.authUser, 'relayuser');
      assert.equal(relay.messages[0]!.secure, true);

      const wrong = await delivery().deliver(
        hop(relay.port, 'encrypt', { auth: { user: 'relayuser', pass: 'nope' } }),
        transaction(['far@example.com'], BODY),
      );
      assert.deepEqual([wrong[0]!.status, wrong[0]!.enhanced], ['deferred', '4.7.8']);
      assert.match(wrong[0]!.text, /535/);
      assert.equal(relay.stats.authFailed, 1);

      // tls 'none' with credentials: no connection at all.
      const none = await delivery().deliver(hop(relay.port, 'none', { auth }), transaction(['far@example.com'], BODY));
      assert.deepEqual([none[0]!.status, none[0]!.enhanced], ['deferred', '4.7.0']);
      // 'may' against a server without STARTTLS: connected, but no AUTH in cleartext.
      const cleartext = await delivery().deliver(hop(plain.port, 'may', { auth }), transaction(['far@example.com'], BODY));
      assert.deepEqual([cleartext[0]!.status, cleartext[0]!.enhanced], ['deferred', '4.7.0']);
      assert.match(cleartext[0]!.text, /without TLS/);
      assert.equal(plain.stats.connections, 1);
      assert.equal(plain.stats.auth + plain.stats.authFailed + plain.stats.mailFrom, 0);
      assert.equal(relay.messages.length + plain.messages.length, 1);
    } finally {
      await relay.close();
      await plain.close();
    }
  });

  it("fails closed for 'encrypt' when the server offers no STARTTLS", async () => {
    const plain = await startSmtpSink({ starttls: false });
    try {
      const results = await delivery().deliver(hop(plain.port, 'encrypt'), transaction(['a@example.net', 'b@example.net'], BODY));
      for (const r of results) {
        assert.deepEqual([r.status, r.code, r.enhanced], ['deferred', 451, '4.7.4']);
        assert.match(r.text, /TLS is required, but was not offered by host/);
      }
      assert.equal(plain.stats.mailFrom, 0);
      assert.equal(plain.messages.length, 0);
      // 'may' falls back to cleartext against the same server.
      const may = await delivery().deliver(hop(plain.port, 'may'), transaction(['a@example.net'], BODY));
      assert.equal(may[0]!.status, 'sent');
      assert.equal(plain.messages[0]!.secure, false);
    } finally {
      await plain.close();
    }
  });

  it('defers (4.3.0) when the queued message cannot be read, without ending DATA', async () => {
    const before = sink.messages.length;
    const tx = transaction(['stream@example.net'], BODY);
    tx.open = () =>
      new Readable({
        read() {
          this.push(Buffer.from('Subject: partial\r\n\r\nfirst part\r\n'));
          setImmediate(() => this.destroy(new Error('EIO: disk trouble')));
        },
      });
    const results = await delivery().deliver(hop(sink.port), tx);
    assert.deepEqual([results[0]!.status, results[0]!.code, results[0]!.enhanced], ['deferred', 451, '4.3.0']);
    assert.match(results[0]!.text, /disk trouble/);
    // Give the sink a moment to process anything that might (wrongly) have completed the message.
    const probe = await delivery().deliver(hop(sink.port), transaction(['probe@example.net'], BODY));
    assert.equal(probe[0]!.status, 'sent');
    assert.deepEqual(
      sink.messages.slice(before).map((m) => m.to[0]),
      ['probe@example.net'],
      'the truncated message was not accepted',
    );
  });
});

describe('remote delivery: connection trouble', () => {
  it('defers (4.4.2) when the connection is lost in the middle of the transaction', async () => {
    const server = await rawServer('220 raw.test ESMTP\r\n', (line, socket) => {
      const verb = line.split(/[ :]/)[0]!.toUpperCase();
      if (verb === 'EHLO') socket.write('250-raw.test\r\n250 8BITMIME\r\n');
      else if (verb === 'MAIL') socket.write('250 2.1.0 Ok\r\n');
      else if (verb === 'RCPT') socket.write('250 2.1.5 Ok\r\n');
      else if (verb === 'DATA') {
        socket.write('354 go ahead\r\n');
        setImmediate(() => socket.destroy());
      }
    });
    try {
      const results = await delivery().deliver(hop(server.port), transaction(['a@example.net', 'b@example.net'], BODY));
      for (const r of results) assert.deepEqual([r.status, r.code, r.enhanced], ['deferred', 451, '4.4.2'], r.text);
    } finally {
      await server.close();
    }
  });

  it('moves on from a host that answers 421 at the greeting, and defers when none is left', async () => {
    const server = await rawServer('421 4.3.2 busy, come back later\r\n', () => undefined);
    try {
      const results = await delivery().deliver(hop(server.port, 'may'), transaction(['a@example.net'], BODY));
      assert.deepEqual([results[0]!.status, results[0]!.code, results[0]!.enhanced], ['deferred', 451, '4.4.1']);
      assert.match(results[0]!.text, /refused to talk to me: 421 4\.3\.2 busy/);
    } finally {
      await server.close();
    }
  });

  it('rejects an EHLO name with CR/LF at construction', () => {
    assert.throws(
      () =>
        new RemoteDelivery({
          heloName: 'me.test\r\nMAIL FROM:<x@y>',
          connectTimeoutMs: 1,
          commandTimeoutMs: 1,
          mx: new MxResolver(),
          logger: silentLogger,
        }),
      (err) => isMailError(err, 'CONFIG_INVALID'),
    );
  });
});

describe('remote delivery: SMTP smuggling and STARTTLS injection', () => {
  const variants: Array<[string, Array<string>, string]> = [
    // [name, body chunks as sent, what the receiver must get: the same text, dot-stuffed on the wire and line ends normalised]
    [
      'CRLF.CRLF',
      ['Subject: s1\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n.\r\n'],
      'Subject: s1\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n.\r\n',
    ],
    [
      'LF.LF',
      ['Subject: s2\n\nhello\n.\nMAIL FROM:<x@y>\nRCPT TO:<z@w>\nDATA\nsmuggled\n.\n'],
      'Subject: s2\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n.\r\n',
    ],
    [
      'CR.CR',
      ['Subject: s3\r\n\r\nhello\r.\rMAIL FROM:<x@y>\rRCPT TO:<z@w>\rDATA\rsmuggled\r.\r'],
      'Subject: s3\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n.\r\n',
    ],
    [
      'mixed, split across chunks',
      ['Subject: s4\r\n\r\nhello\r', '.', '\nMAIL FROM:<x@y>\n', '.', '\r', '\n.\rRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n', '.', '\r\n'],
      'Subject: s4\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@y>\r\n.\r\n.\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n.\r\n',
    ],
  ];

  for (const [name, chunks, expected] of variants) {
    it(`sends a body containing ${name} as exactly one message`, async () => {
      const sink = await startSmtpSink();
      const d = delivery();
      try {
        const results = await d.deliver(hop(sink.port), transaction(['victim@example.net'], chunks));
        assert.equal(results[0]!.status, 'sent', results[0]!.text);
      } finally {
        // Closing waits for the session to end, so anything smuggled would have been processed.
        await d.close();
        await sink.close();
      }
      assert.equal(sink.messages.length, 1, 'no second message');
      assert.equal(sink.stats.mailFrom, 1, 'no smuggled MAIL FROM');
      assert.deepEqual(sink.messages[0]!.to, ['victim@example.net']);
      assert.equal(sink.messages[0]!.data.toString('latin1'), expected);
    });
  }

  for (const inject of ['250 injected\r\n', '250-PIPELINING\r\n250 AUTH PLAIN\r\n550 5.0.0 unfinished line']) {
    it(`discards replies sent before the TLS handshake (${JSON.stringify(inject)})`, async () => {
      const server = await startStartTlsInjector({ inject });
      try {
        const results = await delivery().deliver(hop(server.port, 'encrypt'), transaction(['a@example.net', 'b@example.net'], BODY));
        for (const r of results) {
          assert.deepEqual([r.status, r.code, r.text], ['sent', 250, '250 2.0.0 Ok: queued as INJ1']);
        }
        assert.equal(server.messages.length, 1);
        assert.equal(server.messages[0]!.toString('latin1'), BODY);
        assert.deepEqual(server.commands.slice(0, 6), [
          'EHLO client.test',
          'STARTTLS',
          'tls:EHLO client.test',
          'tls:MAIL FROM:<sender@example.org>',
          'tls:RCPT TO:<a@example.net>',
          'tls:RCPT TO:<b@example.net>',
        ]);
        assert.equal(server.commands[6], 'tls:DATA');
      } finally {
        await server.close();
      }
    });
  }
});

/**
 * A minimal SMTP server (no PIPELINING, no STARTTLS) whose answers to RSET and MAIL FROM a test
 * decides, per connection (1, 2, ...) and per transaction on it; everything else is accepted.
 * Returning true from a hook means it answered (or closed) itself.
 */
async function scriptedServer(hooks: {
  rset?: (socket: net.Socket, conn: number) => boolean;
  mail?: (socket: net.Socket, conn: number, tx: number) => boolean;
}) {
  const messages: Array<{ conn: number; from: string; to: string[]; data: string }> = [];
  /** "<connection>:<verb>" of every command outside DATA. */
  const commands: string[] = [];
  let connections = 0;
  const state = new WeakMap<net.Socket, { conn: number; tx: number; data?: string[]; from: string; to: string[] }>();
  const server = await rawServer('220 scripted.test ESMTP\r\n', (line, socket) => {
    let st = state.get(socket);
    if (!st) state.set(socket, (st = { conn: ++connections, tx: 0, from: '', to: [] }));
    if (st.data) {
      if (line !== '.') return void st.data.push(line.startsWith('.') ? line.slice(1) : line);
      messages.push({ conn: st.conn, from: st.from, to: st.to, data: st.data.map((l) => `${l}\r\n`).join('') });
      st.data = undefined;
      st.to = [];
      return void socket.write(`250 2.0.0 Ok: queued as C${st.conn}T${st.tx}\r\n`);
    }
    const verb = line.split(/[ :]/)[0]!.toUpperCase();
    commands.push(`${st.conn}:${verb}`);
    if (verb === 'EHLO') socket.write('250-scripted.test\r\n250 8BITMIME\r\n');
    else if (verb === 'RSET') {
      if (!hooks.rset?.(socket, st.conn)) socket.write('250 2.0.0 Ok\r\n');
      st.to = [];
    } else if (verb === 'MAIL') {
      st.tx++;
      if (hooks.mail?.(socket, st.conn, st.tx)) return;
      st.from = /<([^>]*)>/.exec(line)?.[1] ?? '';
      socket.write('250 2.1.0 Ok\r\n');
    } else if (verb === 'RCPT') {
      st.to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
      socket.write('250 2.1.5 Ok\r\n');
    } else if (verb === 'DATA') {
      st.data = [];
      socket.write('354 go ahead\r\n');
    } else if (verb === 'QUIT') socket.end('221 2.0.0 Bye\r\n');
    else socket.write('502 5.5.2 unknown command\r\n');
  });
  return { ...server, messages, commands, connections: () => connections };
}

describe('remote delivery: connection reuse', () => {
  it('carries consecutive transactions to one hop over one session, each with its own envelope', async () => {
    const sink = await startSmtpSink();
    const d = delivery();
    try {
      const first = await d.deliver(hop(sink.port), transaction(['one@example.net'], 'Subject: one\r\n\r\nfirst\r\n'));
      const second = await d.deliver(
        hop(sink.port),
        transaction(['two@example.net', 'three@example.net'], 'Subject: two\r\n\r\nsecond \u00e9\r\n', {
          sender: '',
          eightBit: true,
          queueId: 'TESTQUEUE02',
        }),
      );
      assert.deepEqual(
        [...first, ...second].map((r) => [r.address, r.status, r.code, r.remoteMta]),
        ['one@example.net', 'two@example.net', 'three@example.net'].map((a) => [a, 'sent', 250, `127.0.0.1[127.0.0.1]:${sink.port}`]),
      );
      assert.equal(sink.stats.connections, 1, 'one connection');
      assert.equal(sink.stats.rset, 1, 'RSET before the second transaction');
      assert.deepEqual(
        sink.messages.map((m) => [m.from, m.to, m.data.toString(), m.mailParams.BODY, m.heloName]),
        [
          ['sender@example.org', ['one@example.net'], 'Subject: one\r\n\r\nfirst\r\n', undefined, 'client.test'],
          ['', ['two@example.net', 'three@example.net'], 'Subject: two\r\n\r\nsecond \u00e9\r\n', '8BITMIME', 'client.test'],
        ],
      );
      await d.close();
      await sink.waitForStats((s) => s.active === 0);
      assert.equal(sink.stats.quit, 1, 'close() ended the idle session with QUIT');
    } finally {
      await sink.close();
    }
  });

  it('opens a session per concurrent transaction and reuses each of them', async () => {
    const sink = await startSmtpSink();
    const d = delivery();
    try {
      for (let round = 0; round < 3; round++) {
        const results = await Promise.all(
          ['a', 'b'].map((n) =>
            d.deliver(hop(sink.port), transaction([`${n}${round}@example.net`], `Subject: ${n}${round}\r\n\r\nbody\r\n`)),
          ),
        );
        for (const r of results.flat()) assert.equal(r.status, 'sent', r.text);
      }
      assert.equal(sink.stats.connections, 2);
      assert.equal(sink.stats.maxActive, 2);
      assert.deepEqual(
        sink.messages.map((m) => m.to[0]).sort(),
        ['a0', 'a1', 'a2', 'b0', 'b1', 'b2'].map((n) => `${n}@example.net`),
      );
      for (const m of sink.messages) assert.equal(m.data.toString(), `Subject: ${m.to[0]!.split('@')[0]}\r\n\r\nbody\r\n`);
    } finally {
      await d.close();
      await sink.close();
    }
  });

  it('ends a session after reuseLimit transactions', async () => {
    const sink = await startSmtpSink();
    const d = delivery({ reuseLimit: 2 });
    try {
      for (let i = 0; i < 5; i++) {
        const [r] = await d.deliver(hop(sink.port), transaction([`n${i}@example.net`], BODY));
        assert.equal(r!.status, 'sent', r!.text);
      }
      assert.equal(sink.stats.connections, 3, '2 + 2 + 1 transactions');
      assert.equal(sink.stats.mailFrom, 5);
      await sink.waitForStats((s) => s.quit === 2 && s.active === 1);
      assert.deepEqual(
        sink.messages.map((m) => m.to[0]),
        [0, 1, 2, 3, 4].map((i) => `n${i}@example.net`),
      );
    } finally {
      await d.close();
      await sink.close();
    }
  });

  it('does not reuse with reuseIdleMs 0', async () => {
    const sink = await startSmtpSink();
    const d = delivery({ reuseIdleMs: 0 });
    try {
      for (const rcpt of ['x@example.net', 'y@example.net']) {
        assert.equal((await d.deliver(hop(sink.port), transaction([rcpt], BODY)))[0]!.status, 'sent');
      }
      assert.equal(sink.stats.connections, 2);
      assert.equal(sink.stats.rset, 0);
      await sink.waitForStats((s) => s.active === 0 && s.quit === 2);
    } finally {
      await sink.close();
    }
  });

  it('QUITs a session idle for reuseIdleMs; the next transaction connects anew', async () => {
    const sink = await startSmtpSink();
    const d = delivery({ reuseIdleMs: 30 });
    try {
      assert.equal((await d.deliver(hop(sink.port), transaction(['i1@example.net'], BODY)))[0]!.status, 'sent');
      await sink.waitForStats((s) => s.active === 0);
      assert.equal(sink.stats.quit, 1, 'ended with QUIT');
      assert.equal((await d.deliver(hop(sink.port), transaction(['i2@example.net'], BODY)))[0]!.status, 'sent');
      assert.equal(sink.stats.connections, 2);
      assert.equal(sink.stats.rset, 0, 'a new session needs no RSET');
    } finally {
      await d.close();
      await sink.close();
    }
  });

  for (const reply of [undefined, '421 4.4.2 sink.test Error: timeout exceeded']) {
    it(`delivers over a new connection when the server closed the idle session (${reply ? '421' : 'silently'})`, async () => {
      const sink = await startSmtpSink();
      const d = delivery();
      try {
        assert.equal((await d.deliver(hop(sink.port, 'may'), transaction(['d1@example.net'], BODY)))[0]!.status, 'sent');
        await sink.dropConnections(reply);
        const results = await d.deliver(hop(sink.port, 'may'), transaction(['d2@example.net', 'd3@example.net'], BODY));
        for (const r of results) assert.deepEqual([r.status, r.code], ['sent', 250], r.text);
        assert.equal(sink.stats.connections, 2);
        assert.deepEqual(
          sink.messages.map((m) => [m.to, m.secure]),
          [
            [['d1@example.net'], true],
            [['d2@example.net', 'd3@example.net'], true],
          ],
        );
      } finally {
        await d.close();
        await sink.close();
      }
    });
  }

  const stale: Array<[string, Parameters<typeof scriptedServer>[0], Partial<RemoteDeliveryOptions>?]> = [
    ['the server drops the connection at RSET', { rset: (socket) => (socket.destroy(), true) }],
    ['the server answers RSET with 421', { rset: (socket) => (socket.end('421 4.4.2 scripted.test closing\r\n'), true) }],
    ['the server does not answer RSET', { rset: () => true }, { commandTimeoutMs: 300 }],
    [
      'the server answers MAIL FROM with 421 on the second transaction',
      { mail: (socket, _conn, tx) => tx === 2 && (socket.end('421 4.7.0 too many messages\r\n'), true) },
    ],
    [
      'the server refuses MAIL FROM (452) on the second transaction',
      { mail: (socket, _conn, tx) => tx === 2 && (socket.write('452 4.5.3 too many messages in this session\r\n'), true) },
    ],
  ];
  for (const [name, hooks, options] of stale) {
    it(`falls back to a new connection when ${name}`, async () => {
      const server = await scriptedServer(hooks);
      const d = delivery(options);
      try {
        const first = await d.deliver(hop(server.port), transaction(['s1@example.net'], BODY));
        assert.equal(first[0]!.text, '250 2.0.0 Ok: queued as C1T1');
        const second = await d.deliver(
          hop(server.port),
          transaction(['s2@example.net', 's3@example.net'], BODY, { sender: 'other@example.org' }),
        );
        for (const r of second) assert.deepEqual([r.status, r.text], ['sent', '250 2.0.0 Ok: queued as C2T1']);
        assert.equal(server.connections(), 2);
        // The second transaction was tried on the first session: RSET (and maybe MAIL FROM) went there.
        const onFirst = server.commands.filter((c) => c.startsWith('1:'));
        assert.deepEqual(onFirst.slice(0, 6), ['1:EHLO', '1:MAIL', '1:RCPT', '1:DATA', '1:RSET', ...(hooks.mail ? ['1:MAIL'] : [])]);
        assert.ok(!server.commands.includes('2:RSET'), 'the new session needs no RSET');
        assert.deepEqual(
          server.messages.map((m) => [m.conn, m.from, m.to, m.data]),
          [
            [1, 'sender@example.org', ['s1@example.net'], BODY],
            [2, 'other@example.org', ['s2@example.net', 's3@example.net'], BODY],
          ],
        );
      } finally {
        await d.close();
        await server.close();
      }
    });
  }

  it('keeps the session after every recipient was refused at RCPT, or the message at the end of DATA', async () => {
    const sink = await startSmtpSink();
    sink.setRule('nobody@example.net', { rcpt: 550, text: '5.1.1 no such user' });
    sink.setRule('spam@example.net', { data: 554, text: '5.7.1 looks like spam' });
    const d = delivery();
    try {
      const refused = await d.deliver(hop(sink.port), transaction(['nobody@example.net'], BODY));
      assert.deepEqual([refused[0]!.status, refused[0]!.code], ['failed', 550]);
      const rejected = await d.deliver(hop(sink.port), transaction(['spam@example.net'], BODY));
      assert.deepEqual([rejected[0]!.status, rejected[0]!.code], ['failed', 554]);
      const ok = await d.deliver(hop(sink.port), transaction(['fine@example.net'], BODY));
      assert.equal(ok[0]!.status, 'sent', ok[0]!.text);
      assert.equal(sink.stats.connections, 1);
      assert.equal(sink.stats.rset, 2);
      assert.deepEqual(
        sink.messages.map((m) => [m.from, m.to]),
        [['sender@example.org', ['fine@example.net']]],
      );
    } finally {
      await d.close();
      await sink.close();
    }
  });

  it('shares a session between domains whose MX is the same host (reuse is per endpoint)', async () => {
    const sink = await startSmtpSink();
    const d = delivery();
    try {
      const a = await d.deliver({ lookup: 'mx', host: 'multi.test', port: sink.port, tls: 'may' }, transaction(['m@multi.test'], BODY));
      const b = await d.deliver({ lookup: 'mx', host: 'alias.test', port: sink.port, tls: 'may' }, transaction(['m@alias.test'], BODY));
      for (const r of [...a, ...b]) {
        assert.equal(r.status, 'sent', r.text);
        assert.equal(r.remoteMta, `mx2.multi.test[127.0.0.1]:${sink.port}`);
      }
      assert.equal(sink.stats.connections, 1);
      assert.deepEqual(
        sink.messages.map((m) => m.to),
        [['m@multi.test'], ['m@alias.test']],
      );
    } finally {
      await d.close();
      await sink.close();
    }
  });

  it('never shares a session between TLS policies', async () => {
    const sink = await startSmtpSink();
    const d = delivery();
    try {
      const send = async (tls: NextHop['tls'], rcpt: string) => (await d.deliver(hop(sink.port, tls), transaction([rcpt], BODY)))[0]!;
      assert.equal((await send('none', 'p1@example.net')).status, 'sent');
      assert.equal((await send('may', 'p2@example.net')).status, 'sent');
      assert.equal((await send('may', 'p3@example.net')).status, 'sent');
      assert.equal(sink.stats.connections, 2, "'may' did not take the cleartext session of 'none'; the second 'may' reused the first");
      assert.equal((await send('encrypt', 'p4@example.net')).status, 'sent');
      assert.equal(sink.stats.connections, 3);
      assert.deepEqual(
        sink.messages.map((m) => m.secure),
        [false, true, true, true],
      );
      // 'verify' must check the certificate itself, not ride on the unverified 'encrypt' session.
      const verify = await send('verify', 'p5@example.net');
      assert.deepEqual([verify.status, verify.enhanced], ['deferred', '4.7.5']);
      assert.equal(sink.stats.connections, 4);
      assert.equal(sink.messages.length, 4);
    } finally {
      await d.close();
      await sink.close();
    }
  });

  it('never shares a session between SMTP AUTH identities', async () => {
    const relay = await startSmtpSink({ auth: { user: 'relayuser', pass: 's3cret' } });
    const d = delivery();
    try {
      const auth = { user: 'relayuser', pass: 's3cret' };
      const sent = await d.deliver(hop(relay.port, 'encrypt', { auth }), transaction(['u1@example.com'], BODY));
      assert.equal(sent[0]!.status, 'sent', sent[0]!.text);
      const again = await d.deliver(hop(relay.port, 'encrypt', { auth }), transaction(['u2@example.com'], BODY));
      assert.equal(again[0]!.status, 'sent', again[0]!.text);
      assert.equal(relay.stats.connections, 1);
      assert.equal(relay.stats.auth, 1, 'authenticated once');

      // Without credentials: a session of its own, which the relay refuses to relay for.
      const anonymous = await d.deliver(hop(relay.port, 'encrypt'), transaction(['u3@example.com'], BODY));
      assert.notEqual(anonymous[0]!.status, 'sent');
      assert.equal(relay.stats.connections, 2);
      // Other credentials: a session of its own, and the relay's verdict on them.
      const wrong = await d.deliver(
        hop(relay.port, 'encrypt', { auth: { user: 'relayuser', pass: 'nope' } }),
        transaction(['u4@example.com'], BODY),
      );
      assert.deepEqual([wrong[0]!.status, wrong[0]!.enhanced], ['deferred', '4.7.8']);
      assert.equal(relay.stats.connections, 3);
      assert.deepEqual(
        relay.messages.map((m) => [m.to, m.authUser]),
        [
          [['u1@example.com'], 'relayuser'],
          [['u2@example.com'], 'relayuser'],
        ],
      );
    } finally {
      await d.close();
      await relay.close();
    }
  });

  it('QUITs idle sessions on close(), keeps none afterwards, and still delivers', async () => {
    const one = await startSmtpSink();
    const two = await startSmtpSink({ starttls: false });
    const d = delivery();
    try {
      for (const sink of [one, two])
        assert.equal((await d.deliver(hop(sink.port, 'may'), transaction(['c@example.net'], BODY)))[0]!.status, 'sent');
      assert.deepEqual([one.stats.active, two.stats.active], [1, 1]);
      await d.close();
      await one.waitForStats((s) => s.active === 0);
      await two.waitForStats((s) => s.active === 0);
      assert.deepEqual([one.stats.quit, two.stats.quit], [1, 1]);
      // After close(): delivered, then QUIT at once.
      assert.equal((await d.deliver(hop(one.port, 'may'), transaction(['late@example.net'], BODY)))[0]!.status, 'sent');
      await one.waitForStats((s) => s.active === 0 && s.quit === 2);
      assert.equal(one.stats.connections, 2);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('does not keep the process alive with idle sessions', { timeout: 30_000 }, async () => {
    const sink = await startSmtpSink();
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-reuse-'));
    try {
      const script = path.join(dir, 'child.mts');
      const src = (file: string) => JSON.stringify(path.join(root, 'src', file));
      await writeFile(
        script,
        [
          `import { Readable } from 'node:stream';`,
          `import { silentLogger } from ${src('log.ts')};`,
          `import { MxResolver } from ${src('queue/mx.ts')};`,
          `import { RemoteDelivery } from ${src('queue/remote.ts')};`,
          `const d = new RemoteDelivery({ heloName: 'child.test', connectTimeoutMs: 3000, commandTimeoutMs: 600000, mx: new MxResolver(), logger: silentLogger, reuseIdleMs: 600000 });`,
          `const tx = (to) => ({ queueId: 'CHILD', sender: 's@example.org', recipients: [to], open: () => Readable.from([Buffer.from('Subject: c\\r\\n\\r\\nchild\\r\\n')]), size: 24 });`,
          `for (const tls of ['none', 'may']) {`,
          `  const [r] = await d.deliver({ lookup: 'host', host: '127.0.0.1', port: ${sink.port}, tls }, tx(tls + '@example.net'));`,
          `  console.log(tls, r.status);`,
          `}`,
        ].join('\n'),
      );
      const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 0, out);
      assert.equal(out, 'none sent\nmay sent\n');
      assert.equal(sink.stats.connections, 2);
      assert.equal(sink.stats.quit, 0, 'the process ended with both sessions idle');
    } finally {
      await rm(dir, { recursive: true, force: true });
      await sink.close();
    }
  });
});

describe('reply parsing', () => {
  it('keeps the enhanced code of the reply class, joins continuation lines and caps the text', () => {
    assert.deepEqual(parseReply('550-5.1.1 The account does not exist.\n550-5.1.1 Please try\n550 5.1.1 again.'), {
      status: 'failed',
      code: 550,
      enhanced: '5.1.1',
      text: '550 5.1.1 The account does not exist. Please try again.',
    });
    assert.equal(parseReply('451 5.1.1 mismatched class').enhanced, '4.0.0');
    assert.equal(parseReply('250 ok').enhanced, '2.0.0');
    const long = parseReply(`554 5.7.1 ${'x'.repeat(2000)}\r\u0000`);
    assert.ok(long.text.length <= 500);
    assert.doesNotMatch(long.text, /[\x00-\x1f]/);
  });
});
