/**
 * Hostile scripts: corpus scripts with random insertions and random token soup. Compiling must
 * return a script or errors with positions (never throw), and running a script that compiled
 * must return a result.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { compileSieve, runSieve } from '../../src/sieve/index.js';

const FIXTURES = path.resolve('test/fixtures/sieve');
const PIECES = [
  'if',
  'true',
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ',',
  ';',
  '"x"',
  ':is',
  ':matches',
  ':regex',
  'header',
  'text:\n',
  '\n.\n',
  '/*',
  '*/',
  '#',
  '"',
  '\\',
  '${',
  '${1}',
  '1K',
  '99999999999G',
  'anyof',
  'not',
  'require',
  '"variables"',
  'set',
  'fileinto',
  'vacation',
  ':days',
  'redirect',
  '"a@b.c"',
  ' ',
  '\n',
  '\u0000',
  'é',
];

describe('sieve compiler on hostile input', () => {
  it('never throws and reports errors with a line and column', () => {
    const dir = path.join(FIXTURES, 'scripts');
    const scripts = readdirSync(dir).map((f) => readFileSync(path.join(dir, f), 'utf8'));
    const message = readFileSync(path.join(FIXTURES, 'messages', 'multipart.eml'));
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    let compiled = 0;
    for (let i = 0; i < 4000; i++) {
      let script: string;
      if (i % 2) {
        const base = scripts[random(scripts.length)]!;
        const at = random(base.length + 1);
        script = base.slice(0, at) + PIECES[random(PIECES.length)] + base.slice(at + random(3));
      } else script = Array.from({ length: random(30) }, () => PIECES[random(PIECES.length)]).join(' ');
      const c = compileSieve(script);
      if (c.ok) {
        compiled++;
        const r = runSieve(c.script, { message, envelope: { from: 'a@b.c', to: 'user@example.com' } });
        assert.ok(r.actions.length > 0 || !r.implicitKeep, script);
      } else {
        for (const e of c.errors)
          assert.ok(e.line >= 1 && e.column >= 1 && e.message.length > 0, `${JSON.stringify(script)}: ${JSON.stringify(e)}`);
      }
    }
    assert.ok(compiled > 100, `only ${compiled} scripts compiled`);
  });
});
