/**
 * The POP3 building blocks without a socket: the message encoder (LF to CRLF, dot-stuffing, TOP's
 * line count, the final "."), checked against a whole-buffer reference at every chunk split, and
 * the bounded line reader.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageEncoder } from '../../src/pop3/encoder.js';
import { LineReader } from '../../src/session/line-reader.js';
import { lfToCrlf } from '../../src/store/line-ends.js';

/** What RETR must send for a stored message: CRLF lines, stuffed, CRLF at the end, ".". */
function reference(stored: string, bodyLines?: number): string {
  let text = lfToCrlf(Buffer.from(stored, 'latin1')).toString('latin1');
  if (bodyLines !== undefined) {
    const lines = text.split(/(?<=\r\n)/);
    const blank = lines.findIndex((l) => l === '\r\n');
    if (blank !== -1) text = lines.slice(0, blank + 1 + bodyLines).join('');
  }
  const stuffed = text.replace(/^\./gm, '..');
  return (stuffed === '' || stuffed.endsWith('\r\n') ? stuffed : `${stuffed}\r\n`) + '.\r\n';
}

function encode(stored: Buffer, chunkSizes: number[], bodyLines?: number): { out: string; bytes: number } {
  const enc = new MessageEncoder(bodyLines === undefined ? {} : { bodyLines });
  const parts: Buffer[] = [];
  let pos = 0;
  let i = 0;
  while (pos < stored.length && !enc.done) {
    const n = chunkSizes[i++ % chunkSizes.length]!;
    parts.push(enc.push(stored.subarray(pos, pos + n)));
    pos += n;
  }
  parts.push(enc.finish());
  return { out: Buffer.concat(parts).toString('latin1'), bytes: enc.messageBytes };
}

const SAMPLES = [
  'Subject: hi\n\nbody\n',
  'Subject: dots\n\n.\n..two\n.leading\nmid.dle\n.',
  'Subject: crlf already\r\n\r\nline\r\n.dot\r\n',
  'Subject: mixed\n\r\nbody with bare\rCR\nand\r\nCRLF\n',
  'Subject: no final newline\n\nlast line',
  'Subject: no body\n',
  'No-Blank: line\nOther: x',
  '\n\n\n',
  '.\n.\n.\n',
  '',
  'Subject: many\n\n' + Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? `.line ${i}` : `line ${i}`)).join('\n') + '\n',
];

describe('POP3 message encoder', () => {
  it('converts LF to CRLF and stuffs dots exactly like the whole-buffer reference, at every chunk split', () => {
    for (const sample of SAMPLES) {
      const stored = Buffer.from(sample, 'latin1');
      const expected = reference(sample);
      for (const sizes of [[stored.length || 1], [1], [2], [3], [7, 1, 5]]) {
        assert.equal(encode(stored, sizes).out, expected, `${JSON.stringify(sample)} in chunks of ${sizes}`);
      }
      for (let split = 1; split < stored.length; split++) {
        assert.equal(encode(stored, [split, stored.length]).out, expected, `${JSON.stringify(sample)} split at ${split}`);
      }
    }
  });

  it('counts the message bytes with CRLF line ends and without the stuffing (what LIST reports)', () => {
    const stored = Buffer.from('Subject: x\n\n.a\r\n..b\nc', 'latin1');
    const crlf = lfToCrlf(stored);
    assert.equal(encode(stored, [3]).bytes, crlf.length);
    // The same as the W= size the store computes: stored size + bare LFs.
    assert.equal(crlf.length, stored.length + 3);
  });

  it('TOP: the header, the blank line and n body lines; all of a shorter message; n = 0 gives the header only', () => {
    const msg = 'A: 1\nB: 2\n\n.one\ntwo\nthree\n';
    for (const n of [0, 1, 2, 3, 4, 100]) {
      const expected = reference(msg, n);
      for (const sizes of [[1], [4], [100]])
        assert.equal(encode(Buffer.from(msg), sizes, n).out, expected, `TOP ${n} in chunks of ${sizes}`);
    }
    assert.equal(encode(Buffer.from(msg), [100], 0).out, 'A: 1\r\nB: 2\r\n\r\n.\r\n');
    assert.equal(encode(Buffer.from(msg), [100], 1).out, 'A: 1\r\nB: 2\r\n\r\n..one\r\n.\r\n');
    // A header-only message with no blank line: all of it.
    assert.equal(encode(Buffer.from('A: 1\nB: 2'), [3], 5).out, 'A: 1\r\nB: 2\r\n.\r\n');
    // CRLF blank line recognised.
    assert.equal(encode(Buffer.from('A: 1\r\n\r\nx\r\ny\r\n'), [1], 1).out, 'A: 1\r\n\r\nx\r\n.\r\n');
  });

  it('stops reading once TOP has its lines (done)', () => {
    const enc = new MessageEncoder({ bodyLines: 1 });
    enc.push(Buffer.from('H: v\n\nfirst\nsecond\n'));
    assert.equal(enc.done, true);
    assert.equal(enc.push(Buffer.from('more\n')).length, 0);
  });
});

describe('POP3 line reader', () => {
  it('splits lines on CRLF or LF, across chunks', () => {
    const r = new LineReader(20);
    const got = [...r.push(Buffer.from('USER a\r\nPA')), ...r.push(Buffer.from('SS b c\r')), ...r.push(Buffer.from('\nNOOP\n'))];
    assert.deepEqual(
      got.map((x) => ('line' in x ? x.line.toString() : 'TOO LONG')),
      ['USER a', 'PASS b c', 'NOOP'],
    );
  });

  it('reports an over-long line once, drops the rest of it, and goes on after it, holding no more than the limit', () => {
    const r = new LineReader(10);
    const out = [...r.push(Buffer.alloc(5000, 0x61)), ...r.push(Buffer.alloc(5000, 0x62)), ...r.push(Buffer.from('xx\r\nSTAT\r\n'))];
    assert.deepEqual(
      out.map((x) => ('line' in x ? x.line.toString() : 'TOO LONG')),
      ['TOO LONG', 'STAT'],
    );
    // Exactly the limit is fine, CR not counted; one more is too long.
    assert.deepEqual(
      r.push(Buffer.from('0123456789\r\n01234567890\r\n')).map((x) => ('line' in x ? x.line.toString() : 'TOO LONG')),
      ['0123456789', 'TOO LONG'],
    );
  });
});
