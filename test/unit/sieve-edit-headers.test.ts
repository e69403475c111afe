/** editheader at delivery (src/sieve/edit-headers.ts): the edits on the message's own bytes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyHeaderEdits } from '../../src/sieve/edit-headers.js';

const message = 'Received: x\r\n\tfolded\r\nX-A: 1\r\nSubject: s\r\nX-A: 2\r\nx-a: 3\r\n\r\nX-A: in the body\r\n';

test('adds at the top or with :last at the end of the header, in the message line ends', () => {
  const out = applyHeaderEdits(Buffer.from(message), [
    { type: 'addheader', name: 'X-Top', value: 'v', last: false },
    { type: 'addheader', name: 'X-End', value: 'a\r\n b', last: true },
  ]).toString();
  assert.equal(out, `X-Top: v\r\n${message.replace('\r\n\r\n', '\r\nX-End: a\r\n b\r\n\r\n')}`);
});

test('deletes every occurrence, or the n-th one counted when the command ran; never in the body', () => {
  const all = applyHeaderEdits(Buffer.from(message), [{ type: 'deleteheader', name: 'x-a' }]).toString();
  assert.equal(all, 'Received: x\r\n\tfolded\r\nSubject: s\r\n\r\nX-A: in the body\r\n');
  // The interpreter gives each removal its occurrence after the earlier removals of the command.
  const second = applyHeaderEdits(Buffer.from(message), [
    { type: 'deleteheader', name: 'X-A', index: 2 },
    { type: 'deleteheader', name: 'X-A', index: 2 },
  ]).toString();
  assert.equal(second, 'Received: x\r\n\tfolded\r\nX-A: 1\r\nSubject: s\r\n\r\nX-A: in the body\r\n');
});

test('keeps the bytes of untouched fields (8-bit, folding) and works on LF messages', () => {
  const lf = Buffer.concat([Buffer.from('Subject: caf'), Buffer.from([0xe9]), Buffer.from('\n x\nX-B: 1\n\nbody\n')]);
  const out = applyHeaderEdits(lf, [
    { type: 'deleteheader', name: 'X-B' },
    { type: 'addheader', name: 'X-Ü', value: 'ü', last: true },
  ]);
  assert.deepEqual(out, Buffer.concat([lf.subarray(0, 17), Buffer.from('X-Ü: ü\n\nbody\n')]));
  assert.deepEqual(applyHeaderEdits(lf, []), lf);
});
