/**
 * The ManageSieve command reader (src/managesieve/reader.ts): commands with literals come out
 * the same however the bytes are split; over-long lines and over-size literals are reported
 * once, their octets skipped (a literal inside an over-long line too), the next command read
 * whole; an absurd literal length is fatal.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommandReader, type ReaderOutput } from '../../src/managesieve/reader.js';
import { tokenize } from '../../src/managesieve/parser.js';

const INPUT = Buffer.from('PUTSCRIPT "a b" {7+}\r\nkeep;\r\n\r\nNOOP "t\\"x"\r\nCHECKSCRIPT {3}\r\nxyz\r\n');

/** What came out, as readable values. */
function show(outputs: ReaderOutput[]): unknown[] {
  return outputs.map((o) =>
    'command' in o ? tokenize(o.command).map((t) => (t.kind === 'atom' ? t.text : `s:${t.data.toString()}`)) : Object.keys(o)[0],
  );
}

function feed(reader: CommandReader, data: Buffer, step: number): ReaderOutput[] {
  const out: ReaderOutput[] = [];
  for (let i = 0; i < data.length; i += step) out.push(...reader.push(data.subarray(i, i + step)));
  return out;
}

describe('ManageSieve command reader', () => {
  it('reads commands with literals the same in one chunk and byte by byte', () => {
    const expected = [
      ['PUTSCRIPT', 's:a b', 's:keep;\r\n'],
      ['NOOP', 's:t"x'],
      ['CHECKSCRIPT', 's:xyz'],
    ];
    for (const step of [INPUT.length, 1, 2, 5])
      assert.deepEqual(show(feed(new CommandReader(100, 100), INPUT, step)), expected, `step ${step}`);
  });

  it('skips an over-size literal and reports it once; the next command is read whole', () => {
    const data = Buffer.from(`PUTSCRIPT "a" {20+}\r\n${'NOOP\r\n'.repeat(3)}xx\r\nNOOP\r\n`);
    for (const step of [data.length, 1, 3]) {
      assert.deepEqual(show(feed(new CommandReader(100, 10), data, step)), ['literalTooLarge', ['NOOP']], `step ${step}`);
    }
  });

  it('skips an over-long line, and the literal it announces', () => {
    const data = Buffer.from(`NOOP "${'a'.repeat(200)}" {6+}\r\nNOOP\r\n\r\nNOOP\r\n`);
    for (const step of [data.length, 1, 7]) {
      assert.deepEqual(show(feed(new CommandReader(100, 100), data, step)), ['tooLong', ['NOOP']], `step ${step}`);
    }
  });

  it('ends the connection on a literal far beyond the largest script', () => {
    const out = new CommandReader(100, 1000).push(Buffer.from('PUTSCRIPT "a" {999999999+}\r\nkeep;\r\n'));
    assert.deepEqual(show(out), ['fatal']);
  });
});
