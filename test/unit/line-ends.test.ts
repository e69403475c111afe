/**
 * The store's CRLF -> LF conversion (src/store/line-ends.ts) against the plain definition (every
 * CRLF becomes LF, a CR or LF alone stays), for messages cut into chunks at every point, and the
 * counts it reports (bytes stored, line feeds for W=).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineEndConverter } from '../../src/store/line-ends.js';

function convert(chunks: Buffer[]): { text: string; bytes: number; lineFeeds: number } {
  const converter = new LineEndConverter();
  const out: Buffer[] = [];
  for (const chunk of chunks) converter.push(chunk, out);
  converter.end(out);
  return { text: Buffer.concat(out).toString('latin1'), bytes: converter.bytes, lineFeeds: converter.lineFeeds };
}

function expected(text: string) {
  const converted = text.replaceAll('\r\n', '\n');
  return { text: converted, bytes: converted.length, lineFeeds: converted.split('\n').length - 1 };
}

test('CRLF becomes LF at every chunk boundary; a CR or LF alone stays', () => {
  const samples = ['a\r\nb\r\n', '\r\n\r\n', '\r\r\n\n', 'x\ry\nz\r\n', '\r', '\n', 'no line end', '\r\n', 'end with CR\r', '\n\r\n\r'];
  for (const text of samples) {
    const whole = Buffer.from(text, 'latin1');
    assert.deepEqual(convert([whole]), expected(text), JSON.stringify(text));
    for (let i = 0; i <= whole.length; i++)
      for (let j = i; j <= whole.length; j++) {
        const chunks = [whole.subarray(0, i), whole.subarray(i, j), whole.subarray(j)];
        assert.deepEqual(convert(chunks), expected(text), `${JSON.stringify(text)} cut at ${i}, ${j}`);
      }
  }
});

test('random text of CR, LF and letters, in random chunks', () => {
  let seed = 11;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const alphabet = ['\r', '\n', '\r\n', 'a', 'bc'];
  for (let n = 0; n < 2000; n++) {
    let text = '';
    for (let i = Math.floor(random() * 60); i > 0; i--) text += alphabet[Math.floor(random() * alphabet.length)];
    const whole = Buffer.from(text, 'latin1');
    const chunks: Buffer[] = [];
    for (let at = 0; at < whole.length;) {
      const size = 1 + Math.floor(random() * 10);
      chunks.push(whole.subarray(at, at + size));
      at += size;
    }
    assert.deepEqual(convert(chunks), expected(text), JSON.stringify(text));
  }
});

test('large chunks (beyond the shared slabs) convert the same way', () => {
  const text = `${'line of text\r\n'.repeat(5000)}last`;
  assert.deepEqual(convert([Buffer.from(text, 'latin1')]), expected(text));
  const pieces = Array.from({ length: 200 }, (_, i) => Buffer.from(`${i}\r\n`.repeat(300), 'latin1'));
  assert.deepEqual(convert(pieces), expected(Buffer.concat(pieces).toString('latin1')));
});
