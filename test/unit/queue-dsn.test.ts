/**
 * Delivery status notifications (RFC 3464, RFC 6522), parsed back with mailparser and by hand.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import { buildDsn, headerBlock, type DsnInput } from '../../src/queue/dsn.js';

const ORIGINAL = [
  'Received: from client.example by mx.example.com',
  'From: Alice <alice@example.com>',
  'To: bob@remote.example, carol@remote.example',
  'Subject: Quarterly report =?utf-8?q?Gr=C3=BC=C3=9Fe?=',
  'Message-ID: <orig@example.com>',
  '',
  'the body, which is not returned',
  '',
].join('\n');

function input(overrides: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx.example.com',
    queueId: 'Q1A2B3',
    originalSender: 'alice@example.com',
    arrivalDate: new Date('2024-10-01T10:00:00Z'),
    now: new Date('2024-10-01T12:30:00Z'),
    originalHeaders: headerBlock(Buffer.from(ORIGINAL)),
    kind: 'failure',
    recipients: [
      {
        address: 'bob@remote.example',
        original: 'bobby@example.com',
        action: 'failed',
        status: '5.1.1',
        diagnostic: 'smtp; 550 5.1.1 <bob@remote.example>: Recipient address rejected: User unknown in virtual mailbox table',
        remoteMta: 'mx1.remote.example[192.0.2.1]:25',
        lastAttempt: new Date('2024-10-01T12:29:00Z'),
      },
      { address: 'carol@remote.example', action: 'failed', status: '5.2.2', diagnostic: 'smtp; 552 5.2.2 mailbox full' },
    ],
    ...overrides,
  };
}

interface Part {
  headers: Map<string, string>;
  body: string;
}

/** Splits a multipart body by hand, so the number and order of parts is checked exactly. */
function parts(dsn: Buffer): { headers: Map<string, string>; parts: Part[] } {
  const text = dsn.toString('utf8');
  const [head, ...rest] = text.split('\r\n\r\n');
  const headers = fields(head!);
  const boundary = /boundary="([^"]+)"/.exec(headers.get('content-type')!)![1]!;
  const body = rest.join('\r\n\r\n');
  const chunks = body.split(`\r\n--${boundary}`);
  assert.equal(chunks.pop(), '--\r\n', 'closed by the final delimiter');
  chunks.shift(); // preamble
  return {
    headers,
    parts: chunks.map((c) => {
      const [h, ...b] = c.replace(/^\r\n/, '').split('\r\n\r\n');
      return { headers: fields(h!), body: b.join('\r\n\r\n') };
    }),
  };
}

/** Header-style fields (unfolded), names lower-cased; a repeated name is an error here. */
function fields(block: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of block.replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
    if (!line) continue;
    const i = line.indexOf(':');
    assert.ok(i > 0, `not a field: ${JSON.stringify(line)}`);
    const name = line.slice(0, i).toLowerCase();
    assert.ok(!map.has(name), `field ${name} twice`);
    map.set(name, line.slice(i + 1).trim());
  }
  return map;
}

/** The per-message block and the per-recipient blocks of a message/delivery-status body. */
function statusBlocks(body: string): Map<string, string>[] {
  return body
    .replace(/\r\n$/, '')
    .split('\r\n\r\n')
    .map((b) => fields(b));
}

function assertLines(dsn: Buffer) {
  const text = dsn.toString('latin1');
  assert.ok(text.endsWith('\r\n'));
  for (const line of text.slice(0, -2).split('\r\n')) {
    assert.ok(!line.includes('\n') && !line.includes('\r'), `bare line end in ${JSON.stringify(line.slice(0, 80))}`);
    assert.ok(line.length <= 998, `line of ${line.length} octets`);
  }
}

describe('delivery status notifications', () => {
  it('builds a multipart/report that mailparser reads as one', async () => {
    const dsn = buildDsn(input());
    assertLines(dsn);
    const parsed = await simpleParser(dsn);
    const ct = parsed.headers.get('content-type') as { value: string; params: Record<string, string> };
    assert.equal(ct.value, 'multipart/report');
    assert.equal(ct.params['report-type'], 'delivery-status');
    assert.equal(parsed.subject, 'Undelivered Mail Returned to Sender');
    assert.equal(parsed.from?.value[0]?.address, 'MAILER-DAEMON@mx.example.com');
    assert.equal(parsed.from?.value[0]?.name, 'Mail Delivery System');
    assert.equal((parsed.to as { value: { address: string }[] }).value[0]?.address, 'alice@example.com');
    assert.equal(parsed.headers.get('auto-submitted'), 'auto-replied');
    assert.match(parsed.messageId ?? '', /^<[^<>@\s]+@mx\.example\.com>$/);
    assert.equal(parsed.date?.toISOString(), '2024-10-01T12:30:00.000Z');
    assert.match(parsed.text ?? '', /This is the mail system at host mx\.example\.com\./);
    assert.match(parsed.text ?? '', /could not\s+be delivered/);
    const headersPart = parsed.attachments.find((a) => a.contentType === 'text/rfc822-headers');
    assert.ok(headersPart);
    assert.match(headersPart.content.toString(), /^Subject: Quarterly report =\?utf-8\?q\?Gr=C3=BC=C3=9Fe\?=\r$/m);
    assert.doesNotMatch(headersPart.content.toString(), /the body/, 'headers only');
  });

  it('has the three parts with the RFC 3464 fields per message and per recipient', () => {
    const { headers, parts: p } = parts(buildDsn(input()));
    assert.equal(headers.get('mime-version'), '1.0');
    assert.equal(p.length, 3);
    assert.match(p[0]!.headers.get('content-type')!, /^text\/plain; charset=utf-8$/);
    assert.match(
      p[0]!.body,
      /^<bob@remote\.example> \(expanded from <bobby@example\.com>\): host\r\n {4}mx1\.remote\.example\[192\.0\.2\.1\]:25 said: 550 5\.1\.1/m,
    );
    assert.match(p[0]!.body, /^<carol@remote\.example>: 552 5\.2\.2 mailbox full$/m);
    assert.equal(p[1]!.headers.get('content-type'), 'message/delivery-status');
    assert.equal(p[2]!.headers.get('content-type'), 'text/rfc822-headers');
    assert.equal(p[2]!.body, headerBlock(Buffer.from(ORIGINAL)).toString().replace(/\n/g, '\r\n'));

    const [message, bob, carol, ...more] = statusBlocks(p[1]!.body);
    assert.equal(more.length, 0);
    assert.equal(message!.get('reporting-mta'), 'dns; mx.example.com');
    assert.equal(message!.get('x-maild-queue-id'), 'Q1A2B3');
    assert.equal(message!.get('arrival-date'), 'Tue, 01 Oct 2024 10:00:00 +0000');
    assert.deepEqual(Object.fromEntries(bob!), {
      'final-recipient': 'rfc822; bob@remote.example',
      'original-recipient': 'rfc822; bobby@example.com',
      action: 'failed',
      status: '5.1.1',
      'remote-mta': 'dns; mx1.remote.example',
      'diagnostic-code': 'smtp; 550 5.1.1 <bob@remote.example>: Recipient address rejected: User unknown in virtual mailbox table',
      'last-attempt-date': 'Tue, 01 Oct 2024 12:29:00 +0000',
    });
    assert.deepEqual(Object.fromEntries(carol!), {
      'final-recipient': 'rfc822; carol@remote.example',
      action: 'failed',
      status: '5.2.2',
      'diagnostic-code': 'smtp; 552 5.2.2 mailbox full',
    });
  });

  it('a delay warning says delayed and until when it is retried', async () => {
    const dsn = buildDsn(
      input({
        kind: 'delay',
        recipients: [
          {
            address: 'bob@remote.example',
            action: 'delayed',
            status: '4.4.1',
            diagnostic: 'connect to mx1.remote.example[192.0.2.1]:25: Connection timed out',
            willRetryUntil: new Date('2024-10-06T10:00:00Z'),
          },
        ],
      }),
    );
    assertLines(dsn);
    assert.equal((await simpleParser(dsn)).subject, 'Delayed Mail (still being retried)');
    const { parts: p } = parts(dsn);
    assert.match(p[0]!.body, /THIS IS A WARNING ONLY/);
    assert.match(p[0]!.body, /for more than 2 hours\.\r\nIt will be retried until it is 5 days old\./);
    const [, bob] = statusBlocks(p[1]!.body);
    assert.equal(bob!.get('action'), 'delayed');
    assert.equal(bob!.get('status'), '4.4.1');
    assert.equal(bob!.get('will-retry-until'), 'Sun, 06 Oct 2024 10:00:00 +0000');
    assert.equal(bob!.get('diagnostic-code'), 'X-Maild; connect to mx1.remote.example[192.0.2.1]:25: Connection timed out');
  });

  it('values from outside cannot add fields, lines or parts', async () => {
    const evil = '\r\nX-Injected: yes\r\n\r\n--';
    const dsn = buildDsn(
      input({
        originalSender: `alice@example.com${evil}`,
        queueId: `Q1${evil}`,
        reportingMta: `mx.example.com${evil}`,
        recipients: [
          {
            address: `bob@remote.example${evil}`,
            original: `bobby@example.com\nAction: delivered`,
            action: 'failed',
            status: '5.1.1\r\nStatus: 2.0.0',
            diagnostic: `smtp; 550 no\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822; x@y\x00\x1b[31m`,
            remoteMta: `mx1.remote.example\r\nX-Injected: yes`,
          },
        ],
      }),
    );
    assertLines(dsn);
    const text = dsn.toString();
    assert.doesNotMatch(text, /^X-Injected/im);
    assert.doesNotMatch(text, /^Action: delivered/im);
    assert.doesNotMatch(text, /[\x00\x1b]/);
    const { headers, parts: p } = parts(dsn);
    assert.equal(p.length, 3);
    assert.equal(headers.get('to'), '<alice@example.com X-Injected: yes -->');
    const [message, bob, ...more] = statusBlocks(p[1]!.body);
    assert.equal(more.length, 0, 'one recipient block');
    assert.equal(message!.size, 4);
    assert.deepEqual([...bob!.keys()], ['final-recipient', 'original-recipient', 'action', 'status', 'remote-mta', 'diagnostic-code']);
    assert.equal(bob!.get('action'), 'failed');
    assert.equal(bob!.get('status'), '5.0.0', 'a malformed status is replaced');
    assert.equal(bob!.get('remote-mta'), 'dns; mx1.remote.example');
    assert.equal(bob!.get('diagnostic-code'), 'smtp; 550 no Action: delivered Final-Recipient: rfc822; x@y [31m');
    const parsed = await simpleParser(dsn);
    assert.equal(parsed.attachments.filter((a) => a.contentType === 'text/rfc822-headers').length, 1);
  });

  it('folds long diagnostics and cuts oversized values and headers', () => {
    const long = `smtp; 550 ${'word '.repeat(400)}${'x'.repeat(3000)}`;
    const hugeHeaders = Buffer.from(
      `Subject: big\n${'X-Long: ' + 'y'.repeat(2000)}\n${Array.from({ length: 3000 }, (_, i) => `X-Filler-${i}: ${'z'.repeat(40)}`).join('\n')}\n`,
    );
    const dsn = buildDsn(
      input({
        originalHeaders: hugeHeaders,
        recipients: [{ address: `${'ü'.repeat(600)}@remote.example`, action: 'failed', status: '5.0.0', diagnostic: long }],
      }),
    );
    assertLines(dsn);
    const { parts: p } = parts(dsn);
    const [, r] = statusBlocks(p[1]!.body);
    assert.ok(r!.get('diagnostic-code')!.startsWith('smtp; 550 word word'));
    assert.ok(r!.get('diagnostic-code')!.endsWith('...'));
    assert.ok(Buffer.byteLength(r!.get('final-recipient')!) <= 998);
    assert.ok(!r!.get('final-recipient')!.includes('\ufffd'), 'cut between characters');
    const original = p[2]!.body;
    assert.ok(original.length <= 64 * 1024 + 3000, `${original.length} bytes of headers`);
    assert.ok(original.length > 60 * 1024);
    assert.match(original, /^Subject: big\r\n/);
    assert.match(original, /X-Filler-\d+: z{40}\r\n$/, 'cut at a line boundary');
  });

  it('refuses to bounce to the null sender', () => {
    assert.throws(() => buildDsn(input({ originalSender: '' })), /null sender/);
  });

  it('headerBlock cuts at the first empty line, CRLF or LF', () => {
    assert.equal(headerBlock(Buffer.from('A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore')).toString(), 'A: 1\r\nB: 2\r\n');
    assert.equal(headerBlock(Buffer.from('A: 1\nB: 2\n\nbody\n')).toString(), 'A: 1\nB: 2\n');
    assert.equal(headerBlock(Buffer.from('A: 1\nB: 2\n\r\nbody')).toString(), 'A: 1\nB: 2\n');
    assert.equal(headerBlock(Buffer.from('A: 1\r\nB: 2\r\n')).toString(), 'A: 1\r\nB: 2\r\n', 'no body');
    assert.equal(headerBlock(Buffer.from('\r\nbody')).length, 0);
    assert.equal(headerBlock(Buffer.from('\nbody')).length, 0);
  });
});
