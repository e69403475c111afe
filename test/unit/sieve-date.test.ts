import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { datePart, parseRfc5322Date } from '../../src/sieve/date.js';
import { compileSieve, runSieve } from '../../src/sieve/index.js';

describe('sieve date extension (RFC 5260)', () => {
  it('parses RFC 5322 dates, with comments, obsolete zones and two-digit years', () => {
    assert.deepEqual(parseRfc5322Date('Mon, 7 Dec 2026 12:00:00 +0100'), { time: Date.UTC(2026, 11, 7, 11), offset: 60 });
    assert.deepEqual(parseRfc5322Date('7 Dec 26 12:00 EST (Eastern)'), { time: Date.UTC(2026, 11, 7, 17), offset: -300 });
    assert.equal(parseRfc5322Date('yesterday'), undefined);
    assert.equal(parseRfc5322Date('Mon, 7 Foo 2026 12:00:00 +0100'), undefined);
  });

  it('gives each date part in the requested zone', () => {
    const d = parseRfc5322Date('Sun, 31 Dec 2028 23:30:05 -0200')!;
    assert.equal(datePart(d, 'iso8601', 0), '2029-01-01T01:30:05Z');
    assert.equal(datePart(d, 'iso8601', d.offset), '2028-12-31T23:30:05-02:00');
    assert.equal(datePart(d, 'std11', 60), 'Mon, 01 Jan 2029 02:30:05 +0100');
    assert.equal(datePart(d, 'weekday', d.offset), '0');
    assert.equal(datePart(d, 'julian', 0), '62137');
    assert.equal(datePart(d, 'zone', -210), '-0330');
    assert.equal(datePart(d, 'century', 0), undefined);
  });

  it('currentdate uses the input time', () => {
    const c = compileSieve(
      'require ["date","variables","fileinto"]; if currentdate :zone "+0000" :matches "date" "*" { fileinto "${1}"; }',
    );
    assert.ok(c.ok);
    const r = runSieve(c.script, {
      message: Buffer.from('Subject: x\r\n\r\n'),
      envelope: { from: 'a@b.c', to: 'd@e.f' },
      now: new Date(Date.UTC(2030, 0, 2, 3, 4, 5)),
    });
    assert.deepEqual(r.actions, [{ type: 'fileinto', mailbox: '2030-01-02', create: false, copy: false }]);
  });

  it(':index and :last pick one occurrence of a field (RFC 5260 6)', () => {
    const c = compileSieve('require ["index","fileinto"]; if header :index 1 :last :is "x" "three" { fileinto "last"; }');
    assert.ok(c.ok);
    const r = runSieve(c.script, { message: Buffer.from('X: one\r\nX: two\r\nX: three\r\n\r\n'), envelope: { from: '', to: 'a@b' } });
    assert.equal(r.actions[0]!.type, 'fileinto');
    const e = compileSieve('require "index"; if header :last :is "x" "y" { keep; }');
    assert.ok(!e.ok && /cannot be specified without the :index tag/.test(e.errors[0]!.message));
  });
});
