/**
 * The milter client's pure parts: framing with hostile input (oversized, empty and truncated
 * frames, malformed reply data), reply validation, endpoint syntax, the edits applied to a
 * message file and the envelope, and the config schema.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  decodeReply,
  encodeFrame,
  FrameDecoder,
  MAX_FRAME,
  MilterProtocolError,
  parseSmtpReply,
  type Frame,
} from '../../src/inbound/milter/codec.js';
import { MilterIoError, parseMilterAddress } from '../../src/inbound/milter/connection.js';
import { applyEnvelopeEdits, applyMilterEdits, type MilterEdit } from '../../src/inbound/milter/edits.js';
import { miltersSchema } from '../../src/inbound/milter/config.js';
import { headerValueForMilter, parseHeaderSection } from '../../src/inbound/milter/message.js';

const protocolError = (code: string) => (err: unknown) => err instanceof MilterProtocolError && err.code === code;

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};
const frame = (command: string, ...parts: Array<Buffer | string>): Frame => ({
  command,
  data: Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p))),
});

describe('milter framing', () => {
  it('splits a byte stream into frames wherever the chunks are cut', () => {
    const stream = Buffer.concat([encodeFrame('c'), encodeFrame('h', Buffer.from('X-A\0one\0')), encodeFrame('a')]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = new FrameDecoder();
      const frames = [...decoder.push(stream.subarray(0, cut)), ...decoder.push(stream.subarray(cut))];
      decoder.end();
      assert.deepEqual(
        frames.map((f) => [f.command, f.data.toString('latin1')]),
        [
          ['c', ''],
          ['h', 'X-A\0one\0'],
          ['a', ''],
        ],
      );
    }
  });

  it('refuses an oversized length prefix at once, before its data arrives', () => {
    const decoder = new FrameDecoder();
    assert.throws(() => decoder.push(u32(0x7fffffff)), protocolError('FRAME_TOO_LARGE'));
    assert.throws(() => new FrameDecoder().push(u32(MAX_FRAME + 1)), protocolError('FRAME_TOO_LARGE'));
  });

  it('refuses a frame of length 0 (no command byte)', () => {
    assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0, 0x61])), protocolError('FRAME_EMPTY'));
  });

  it('reports a connection that ends inside a frame as TRUNCATED', () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(encodeFrame('h', Buffer.from('X-A\0one\0')).subarray(0, 9)), []);
    assert.throws(() => decoder.end(), protocolError('TRUNCATED'));
    const headerOnly = new FrameDecoder();
    headerOnly.push(Buffer.from([0, 0]));
    assert.throws(() => headerOnly.end(), protocolError('TRUNCATED'));
  });
});

describe('milter replies', () => {
  it('decodes header edits, recipients, sender and the OPTNEG macro lists', () => {
    assert.deepEqual(decodeReply(frame('h', 'X-Spam\0yes\0')), { type: 'addheader', name: 'X-Spam', value: 'yes' });
    assert.deepEqual(decodeReply(frame('i', u32(0), 'DKIM-Signature\0v=1;\n\tb=x\0')), {
      type: 'insheader',
      index: 0,
      name: 'DKIM-Signature',
      value: 'v=1;\n\tb=x',
    });
    assert.deepEqual(decodeReply(frame('m', u32(2), 'Subject\0\0')), { type: 'chgheader', index: 2, name: 'Subject', value: '' });
    assert.deepEqual(decodeReply(frame('+', '<x@example.test>\0')), { type: 'addrcpt', recipient: '<x@example.test>' });
    assert.deepEqual(decodeReply(frame('2', '<x@example.test>\0NOTIFY=NEVER\0')), {
      type: 'addrcpt',
      recipient: '<x@example.test>',
      args: 'NOTIFY=NEVER',
    });
    assert.deepEqual(decodeReply(frame('e', '<new@example.test>\0')), { type: 'chgfrom', sender: '<new@example.test>', args: undefined });
    const neg = decodeReply(frame('O', u32(6), u32(0x1), u32(0x80), u32(0), '{client_addr} j\0', u32(5), 'i\0'));
    assert.equal(neg.type, 'optneg');
    assert.deepEqual(neg.type === 'optneg' && [...neg.macros], [
      [0, '{client_addr} j'],
      [5, 'i'],
    ]);
  });

  it('refuses malformed reply data with a typed error', () => {
    assert.throws(() => decodeReply(frame('h', 'X-Spam\0yes')), protocolError('BAD_REPLY'), 'value without NUL');
    assert.throws(() => decodeReply(frame('i', Buffer.from([0, 0]))), protocolError('BAD_REPLY'), 'short index');
    assert.throws(() => decodeReply(frame('a', 'junk')), protocolError('BAD_REPLY'), 'trailing data');
    assert.throws(() => decodeReply(frame('h', 'Bad Name\0v\0')), protocolError('BAD_REPLY'), 'space in a header name');
    assert.throws(
      () => decodeReply(frame('h', 'X-A\0one\r\nX-Injected: two\0')),
      protocolError('BAD_REPLY'),
      'a new field smuggled in a value',
    );
    assert.throws(() => decodeReply(frame('h', 'X-A\0one\rtwo\0')), protocolError('BAD_REPLY'), 'bare CR');
    assert.throws(() => decodeReply(frame('+', 'a@b\r\nRCPT TO:<c@d>\0')), protocolError('BAD_REPLY'), 'CRLF in an address');
    assert.throws(() => decodeReply(frame('O', u32(6), u32(0))), protocolError('BAD_REPLY'), 'short OPTNEG');
    assert.throws(() => decodeReply(frame('y', '250 2.0.0 fine\0')), protocolError('BAD_REPLY'), 'a 2xx reply code');
    assert.throws(() => decodeReply(frame('Z')), protocolError('UNEXPECTED_REPLY'), 'unknown reply');
  });

  it('validates a milter SMTP reply: 4xx/5xx, enhanced code of the same class, printable text', () => {
    assert.deepEqual(parseSmtpReply('554 5.7.1 Gtube pattern'), { code: 554, enhanced: '5.7.1', text: 'Gtube pattern' });
    assert.deepEqual(parseSmtpReply('450 Try later'), { code: 450, enhanced: '4.7.1', text: 'Try later' });
    // An enhanced code of another class is dropped for x.7.1 of the reply's class.
    assert.deepEqual(parseSmtpReply('451 5.7.1 mismatched class'), { code: 451, enhanced: '4.7.1', text: 'mismatched class' });
    assert.deepEqual(parseSmtpReply('550-5.7.1 first\r\n550 5.7.1 second'), { code: 550, enhanced: '5.7.1', text: 'first second' });
    assert.deepEqual(parseSmtpReply('550'), { code: 550, enhanced: '5.7.1', text: 'Message rejected' });
    assert.equal(parseSmtpReply('55'), undefined);
    assert.equal(parseSmtpReply('250 ok'), undefined);
    assert.equal(parseSmtpReply('550 bad\x07bell'), undefined);
    assert.equal(parseSmtpReply('550-first\r\n551 second'), undefined, 'codes differ between lines');
    assert.equal(parseSmtpReply('550 first\r\n550 second'), undefined, 'a non-last line without -');
  });
});

describe('milter endpoints', () => {
  it("parses Postfix's smtpd_milters forms", () => {
    assert.deepEqual(parseMilterAddress('inet:127.0.0.1:11332'), { kind: 'inet', host: '127.0.0.1', port: 11332 });
    assert.deepEqual(parseMilterAddress('localhost:8891'), { kind: 'inet', host: 'localhost', port: 8891 });
    assert.deepEqual(parseMilterAddress('inet:[::1]:8891'), { kind: 'inet', host: '::1', port: 8891 });
    assert.deepEqual(parseMilterAddress('unix:/run/opendkim/opendkim.sock'), { kind: 'unix', path: '/run/opendkim/opendkim.sock' });
    for (const bad of ['', 'inet:host', 'host:0', 'host:70000', 'unix:relative', 'tcp:host:1']) {
      assert.throws(
        () => parseMilterAddress(bad),
        (err: unknown) => err instanceof MilterIoError && err.code === 'BAD_ADDRESS',
        bad,
      );
    }
  });

  it('config: Postfix defaults, durations in ms, bad addresses refused', () => {
    const [m] = miltersSchema.parse([{ address: 'inet:127.0.0.1:11332' }]);
    assert.deepEqual(m, {
      address: 'inet:127.0.0.1:11332',
      default_action: 'tempfail',
      connect_timeout: 30_000,
      command_timeout: 30_000,
      content_timeout: 300_000,
    });
    const [n] = miltersSchema.parse([
      { address: 'unix:/s', name: 'dkim', default_action: 'accept', command_timeout: '5s', content_timeout: '2m' },
    ]);
    assert.equal(n!.command_timeout, 5000);
    assert.equal(n!.content_timeout, 120_000);
    assert.equal(miltersSchema.safeParse([{ address: 'nonsense' }]).success, false);
    assert.equal(miltersSchema.safeParse([{ address: 'a:1', default_action: 'discard' }]).success, false);
    assert.equal(miltersSchema.safeParse([{ address: 'a:1', timeout: 5 }]).success, false, 'unknown key');
  });
});

describe('milter message and edits', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-milter-edits-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const MESSAGE = [
    'Subject: one',
    'X-Tag: a',
    'To: b@example.test,',
    '\tc@example.test',
    'X-Tag: b',
    '',
    'Body line 1',
    'Body line 2',
    '',
  ].join('\r\n');

  it('gives milters header values without the first space, folds as LF', () => {
    const parsed = parseHeaderSection(Buffer.from(MESSAGE), MESSAGE.length);
    assert.deepEqual(
      parsed.headers.map((h) => [h.name, headerValueForMilter(h, false).toString('latin1')]),
      [
        ['Subject', 'one'],
        ['X-Tag', 'a'],
        ['To', 'b@example.test,\n\tc@example.test'],
        ['X-Tag', 'b'],
      ],
    );
    assert.equal(headerValueForMilter(parsed.headers[0]!, true).toString(), ' one');
    assert.equal(MESSAGE.slice(parsed.bodyOffset), 'Body line 1\r\nBody line 2\r\n');
  });

  it('applies header edits in order (change by index, delete, insert at index, add) and a new body', async () => {
    const file = path.join(dir, 'm1');
    await writeFile(file, MESSAGE);
    const edits: MilterEdit[] = [
      { type: 'chgheader', index: 2, name: 'X-Tag', value: ' B' },
      { type: 'chgheader', index: 1, name: 'subject', value: '' },
      { type: 'chgheader', index: 1, name: 'X-Absent', value: ' added' },
      { type: 'insheader', index: 0, name: 'X-Top', value: ' top' },
      { type: 'insheader', index: 3, name: 'X-Third', value: ' before To' },
      { type: 'addheader', name: 'X-Folded', value: ' a\n\tb' },
      { type: 'replbody', body: Buffer.from('New\nbody\r\n') },
      { type: 'addrcpt', recipient: '<d@example.test>' },
      { type: 'delrcpt', recipient: '<B@example.test>' },
      { type: 'chgfrom', sender: '<new@example.test>', args: 'SIZE=10' },
    ];
    const out = path.join(dir, 'm1.out');
    const { envelope, size } = await applyMilterEdits(
      file,
      { sender: 'a@example.test', recipients: ['b@example.test', 'c@example.test'] },
      edits,
      out,
    );
    const text = await readFile(out, 'utf8');
    assert.equal(
      text,
      [
        'X-Top: top',
        'X-Tag: a',
        'X-Third: before To',
        'To: b@example.test,',
        '\tc@example.test',
        'X-Tag: B',
        'X-Absent: added',
        'X-Folded: a',
        '\tb',
        '',
        'New',
        'body',
        '',
      ].join('\r\n'),
    );
    assert.equal(size, Buffer.byteLength(text));
    assert.deepEqual(envelope, { sender: 'new@example.test', senderArgs: 'SIZE=10', recipients: ['c@example.test', 'd@example.test'] });
  });

  it('keeps the body byte for byte when only headers change', async () => {
    const file = path.join(dir, 'm2');
    const body = Buffer.concat([Buffer.from('\r\n'), Buffer.alloc(200_000, 0x41), Buffer.from('\r\n.\r\n\xff')]);
    await writeFile(file, Buffer.concat([Buffer.from('Subject: big\r\n'), body]));
    const out = path.join(dir, 'm2.out');
    await applyMilterEdits(file, { sender: '', recipients: [] }, [{ type: 'addheader', name: 'X-A', value: ' 1' }], out);
    assert.deepEqual(await readFile(out), Buffer.concat([Buffer.from('Subject: big\r\nX-A: 1\r\n'), body]));
  });

  it('adds a recipient once, and with its parameters', () => {
    const env = applyEnvelopeEdits(
      'a@x',
      ['b@x'],
      [
        { type: 'addrcpt', recipient: 'B@x' },
        { type: 'addrcpt', recipient: '<e@x>', args: 'NOTIFY=NEVER' },
      ],
    );
    assert.deepEqual(env, { sender: 'a@x', recipients: ['b@x', 'e@x'], recipientArgs: { 'e@x': 'NOTIFY=NEVER' } });
  });
});
