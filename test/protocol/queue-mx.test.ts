/**
 * The outbound queue's MX path end to end: the real server resolves recipients' domains through
 * a test DNS server (queue.resolver) and contacts the MX hosts on the test sink's port
 * (queue.mx_port). Covers MX preference and fallback (RFC 5321 section 5.1), the implicit MX,
 * null MX (RFC 7505), NXDOMAIN, SERVFAIL and grouping of recipients by destination domain.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type DnsServer, type DnsZone } from '../helpers/dns-server.js';
import { message, settled, setup, teardown, type QueueEnv as Env } from '../helpers/queue-env.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';
import { start as startProxy } from '../helpers/tcp-proxy.js';

const MINUTE = 60_000;

const ZONE: DnsZone = {
  // Two MX hosts; the preferred one resolves to an address where nothing listens on mx_port.
  'two-mx.example': {
    mx: [
      { preference: 20, exchange: 'mx2.two-mx.example' },
      { preference: 10, exchange: 'mx1.two-mx.example' },
    ],
  },
  'mx1.two-mx.example': { a: ['127.0.0.3'] },
  'mx2.two-mx.example': { a: ['127.0.0.1'] },
  // No MX records (NODATA): the domain's own address is the implicit MX.
  'implicit.example': { a: ['127.0.0.1'] },
  // RFC 7505 null MX; the A record must not be used as an implicit MX.
  'nullmx.example': { mx: [{ preference: 0, exchange: '' }], a: ['127.0.0.1'] },
  // NXDOMAIN, although it has an A record in the table.
  'nxdomain.example': { nxdomain: true, a: ['127.0.0.1'] },
  'servfail.example': { servfail: true },
  // Two domains served by one MX host.
  'shared-a.example': { mx: [{ preference: 10, exchange: 'mx.shared.example' }] },
  'shared-b.example': { mx: [{ preference: 10, exchange: 'mx.shared.example' }] },
  'mx.shared.example': { a: ['127.0.0.1'] },
};

describe('outbound queue: MX resolution through DNS', () => {
  let env: Env;
  let dns: DnsServer;
  before(async () => {
    dns = await startDnsServer(ZONE);
    // The sink's port is needed in the config (mx_port), so it is started here and handed to setup.
    const sink = await startSmtpSink();
    const proxy = await startProxy(sink.port);
    env = await setup({ resolver: [`127.0.0.1:${dns.port}`], mx_port: sink.port }, undefined, { sink, proxy });
  });
  after(async () => {
    await teardown(env);
    await dns.close();
  });

  const send = async (subject: string, recipients: string[]) => {
    const { queueId } = await env.server.runtime.queue.enqueue({
      sender: 'alice@example.test',
      recipients: recipients.map((address) => ({ address })),
      message: message(subject),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    return queueId;
  };
  /** The questions the DNS server answered since `from` (an index into dns.queries), as "TYPE name RCODE". */
  const asked = (from: number) => dns.queries.slice(from).map((q) => `${q.type} ${q.name} ${q.rcode}`);
  /** The reports in alice's Maildir about `address`, with folded lines unfolded (RFC 5322 section 2.2.3). */
  const reportsAbout = async (address: string) => {
    const escaped = address.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return (await env.server.read('example.test/alice'))
      .map((m) => m.replace(/\r?\n(?=[ \t])/g, ''))
      .filter((m) => new RegExp(`^Final-Recipient: rfc822; ?${escaped}$`, 'mi').test(m));
  };
  /**
   * Once the queue is idle: what is left of this message and of reports (null sender) queued since
   * `since`, so that one failing test does not fail the others.
   */
  const left = async (queueId: string, since: number) =>
    (await settled(env)).filter((m) => m.id === queueId || (m.sender === '' && m.created >= since)).map((m) => m.id);
  const now = () => Date.now() + env.clock.offset;
  const logsOf = (queueId: string, msg: string) => env.server.logs.filter((l) => l.qid === queueId && l.msg === msg);
  /** "ip:port" of the relay= of the message's (only) delivery: "name[ip]:port" in the log. */
  const relayAddress = (queueId: string) => {
    const relays = logsOf(queueId, 'delivered').map((l) => String(l.relay));
    assert.equal(relays.length, 1, `one delivery: ${relays.join(', ')}`);
    return relays[0]!.replace(/^[^[]*\[([^\]]+)\]/, '$1');
  };

  it('tries MX hosts in order of preference and delivers through the second when the first refuses', async () => {
    const q0 = dns.queries.length;
    const m0 = env.sink.messages.length;
    const t0 = now();
    const queueId = await send('two mx', ['rcpt@two-mx.example']);
    assert.deepEqual(await left(queueId, t0), [], 'delivered and removed');

    const got = env.sink.messages.slice(m0);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0]!.to, ['rcpt@two-mx.example']);

    const questions = asked(q0);
    assert.equal(questions[0], 'MX two-mx.example NOERROR', 'the MX records are asked for first');
    assert.ok(questions.includes('A mx1.two-mx.example NOERROR'), questions.join(', '));
    assert.ok(questions.includes('A mx2.two-mx.example NOERROR'), questions.join(', '));

    const port = env.sink.port;
    const attempts = logsOf(queueId, 'delivery attempt').map((l) => `${String(l.host)} ${String(l.result)}`);
    assert.equal(attempts.length, 2, attempts.join('\n'));
    assert.match(attempts[0]!, new RegExp(`^mx1\\.two-mx\\.example\\[127\\.0\\.0\\.3\\]:${port} 451 4\\.4\\.1 .*Connection refused`));
    // The session to an address may be one kept open from an earlier delivery (connection reuse),
    // named after the host it was opened for: only the address tells which MX took the message.
    assert.match(attempts[1]!, new RegExp(`\\[127\\.0\\.0\\.1\\]:${port} sent=1 `));
    assert.equal(relayAddress(queueId), `127.0.0.1:${port}`);
  });

  it('uses the domain itself as the implicit MX when it has no MX records (RFC 5321 section 5.1)', async () => {
    const q0 = dns.queries.length;
    const m0 = env.sink.messages.length;
    const t0 = now();
    const queueId = await send('implicit mx', ['rcpt@implicit.example']);
    assert.deepEqual(await left(queueId, t0), []);

    const got = env.sink.messages.slice(m0);
    assert.deepEqual(
      got.map((m) => m.to),
      [['rcpt@implicit.example']],
    );
    const questions = asked(q0);
    assert.equal(questions[0], 'MX implicit.example NOERROR');
    assert.equal(dns.queries[q0]!.answers, 0, 'NODATA for MX');
    assert.ok(questions.includes('A implicit.example NOERROR'), questions.join(', '));
    assert.equal(relayAddress(queueId), `127.0.0.1:${env.sink.port}`);
  });

  it('bounces at once for a null MX (RFC 7505) without contacting anyone', async () => {
    const q0 = dns.queries.length;
    const m0 = env.sink.messages.length;
    const f0 = env.sink.stats.mailFrom;
    const t0 = now();
    const queueId = await send('null mx', ['nobody@nullmx.example']);
    assert.deepEqual(await left(queueId, t0), [], 'the message and its report left the queue');

    assert.equal(env.sink.messages.length, m0, 'nothing delivered');
    assert.equal(env.sink.stats.mailFrom, f0, 'no transaction begun (a reused session would not show as a connection)');
    assert.deepEqual(asked(q0), ['MX nullmx.example NOERROR'], 'no address lookup for a null MX domain');

    const reports = await reportsAbout('nobody@nullmx.example');
    assert.equal(reports.length, 1, 'one report to the sender');
    const raw = reports[0]!;
    assert.match(raw, /^Return-Path: <>$/m);
    assert.match(raw, /^Action: failed$/m);
    assert.match(raw, /^Status: 5\.1\.10$/m);
    assert.match(raw, /^Diagnostic-Code: smtp; ?556 5\.1\.10 .*null MX/m);
    assert.match(raw, new RegExp(queueId));
  });

  it('bounces when the domain does not exist (NXDOMAIN)', async () => {
    const q0 = dns.queries.length;
    const m0 = env.sink.messages.length;
    const t0 = now();
    const queueId = await send('no such domain', ['nobody@nxdomain.example']);
    assert.deepEqual(await left(queueId, t0), [], 'the message and its report left the queue');

    assert.equal(env.sink.messages.length, m0, 'nothing delivered');
    assert.deepEqual(asked(q0), ['MX nxdomain.example NXDOMAIN'], 'no implicit MX lookup after NXDOMAIN');
    const reports = await reportsAbout('nobody@nxdomain.example');
    assert.equal(reports.length, 1, 'one report to the sender');
    assert.match(reports[0]!, /^Action: failed$/m);
    assert.match(reports[0]!, /^Status: 5\.1\.2$/m);
    assert.match(reports[0]!, /^Diagnostic-Code: smtp; ?550 5\.1\.2 .*NXDOMAIN/m);
  });

  it('defers on SERVFAIL and delivers once DNS answers again after the retry time', async () => {
    const q0 = dns.queries.length;
    const m0 = env.sink.messages.length;
    const t0 = now();
    const queueId = await send('servfail', ['rcpt@servfail.example']);
    const queued = (await settled(env)).find((m) => m.id === queueId);
    assert.ok(queued, 'the message stays queued');
    assert.equal(queued.recipients.length, 1);
    assert.match(queued.recipients[0]!.lastError ?? '', /^451 4\.4\.3 .*servfail\.example.*ESERVFAIL/);
    assert.ok(asked(q0).length > 0 && asked(q0).every((q) => q === 'MX servfail.example SERVFAIL'), asked(q0).join(', '));
    assert.equal(env.sink.messages.length, m0);
    assert.deepEqual(await reportsAbout('rcpt@servfail.example'), [], 'no report for a temporary failure');

    dns.setZone({
      ...ZONE,
      'servfail.example': { mx: [{ preference: 10, exchange: 'mx.servfail.example' }] },
      'mx.servfail.example': { a: ['127.0.0.1'] },
    });
    const q1 = dns.queries.length;
    env.server.runtime.queue.wake();
    assert.deepEqual(await left(queueId, t0), [queueId], 'not retried before its time');
    assert.equal(dns.queries.length, q1, 'no lookup before the retry time');

    env.clock.offset += 5 * MINUTE;
    env.server.runtime.queue.wake();
    assert.deepEqual(await left(queueId, t0), [], 'delivered on retry');
    assert.equal(asked(q1)[0], 'MX servfail.example NOERROR');
    const got = env.sink.messages.slice(m0);
    assert.deepEqual(
      got.map((m) => m.to),
      [['rcpt@servfail.example']],
      'delivered once',
    );
    assert.equal(relayAddress(queueId), `127.0.0.1:${env.sink.port}`);
    dns.setZone(ZONE);
  });

  it('sends one transaction per destination domain even when two domains share an MX host', async () => {
    const q0 = dns.queries.length;
    const m0 = env.sink.messages.length;
    const f0 = env.sink.stats.mailFrom;
    const recipients = ['a1@shared-a.example', 'b1@shared-b.example', 'a2@shared-a.example', 'b2@shared-b.example'];
    const t0 = now();
    const queueId = await send('shared mx', recipients);
    assert.deepEqual(await left(queueId, t0), []);

    // As Postfix's qmgr: recipients are grouped by next hop, and the next hop of an MX lookup is the domain.
    const got = env.sink.messages.slice(m0);
    assert.equal(env.sink.stats.mailFrom - f0, 2, 'two transactions');
    assert.deepEqual(got.map((m) => [...m.to].sort()).sort(), [
      ['a1@shared-a.example', 'a2@shared-a.example'],
      ['b1@shared-b.example', 'b2@shared-b.example'],
    ]);
    assert.deepEqual(got.flatMap((m) => m.to).sort(), [...recipients].sort(), 'each recipient exactly once');
    const questions = asked(q0);
    assert.ok(questions.includes('MX shared-a.example NOERROR'), questions.join(', '));
    assert.ok(questions.includes('MX shared-b.example NOERROR'), questions.join(', '));
  });
});
