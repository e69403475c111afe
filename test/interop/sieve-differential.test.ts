/**
 * Differential test of the Sieve interpreter against Pigeonhole's sieve-test (Debian package
 * dovecot-sieve): every script of test/fixtures/sieve/scripts on every message of
 * test/fixtures/sieve/messages, same envelope; both must compile or fail alike, fail at run time
 * alike, and otherwise print the same actions (our renderer imitates sieve-test's output).
 * Scripts of test/fixtures/sieve/include are what `include` finds (personal and global).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileSieve, runSieve } from '../../src/sieve/index.js';
import { renderSieveResult } from '../../src/sieve/render.js';
import { Pigeonhole, pool, SIEVE_TEST, type PigeonholeRun } from '../helpers/pigeonhole.js';

const FIXTURES = path.resolve('test/fixtures/sieve');
const ENVELOPE = { from: 'sender@example.org', to: 'user@example.com' };
/** sieve-test's extensions beyond its defaults; ereject is not in Pigeonhole 0.5 (we have it). */
const EXTENSIONS = '+vacation-seconds +editheader';

/**
 * Scripts where Pigeonhole 0.5.19 is wrong and we follow the RFC (not compared; each has a unit
 * test of our behaviour in test/unit/sieve-interpreter.test.ts).
 */
const KNOWN_DIFFERENCES: Record<string, string> = {
  // RFC 5228 2.7.1: "?x*" needs an "x" after the first character; sieve-test 0.5.19 matches
  // "Monthly report" with "?e*" (a literal right after a "?" before a "*" is not checked).
  'vars-match-q.sieve': 'Pigeonhole matches "?e*" against any value',
  // RFC 7352 asks for the same answer twice; sieve-test 0.5.19 fails the run (implicit keep) when
  // one script checks the same unique ID twice with the same options.
  'dup-twice-same.sieve': 'Pigeonhole fails on a second identical duplicate test',
};

interface Outcome {
  status: PigeonholeRun['status'];
  stdout: string;
}

type Includes = { personal: Record<string, string>; global: Record<string, string> };

async function readIncludes(): Promise<Includes> {
  const includes: Includes = { personal: {}, global: {} };
  for (const location of ['personal', 'global'] as const) {
    const dir = path.join(FIXTURES, 'include', location);
    for (const f of await readdir(dir))
      if (f.endsWith('.sieve')) includes[location][f.slice(0, -'.sieve'.length)] = await readFile(path.join(dir, f), 'utf8');
  }
  return includes;
}

function ours(script: string, message: Buffer, includes: Includes): Outcome {
  const compiled = compileSieve(script, { include: (name, location) => includes[location][name] });
  if (!compiled.ok) return { status: 'compile-error', stdout: `line ${compiled.errors[0]!.line}` };
  const result = runSieve(compiled.script, { message, envelope: ENVELOPE });
  if (result.error) return { status: 'runtime-error', stdout: '' };
  return { status: 'ok', stdout: renderSieveResult(result) };
}

const normalize = (s: string): string => s.replace(/\r\n/g, '\n').replace(/\n+$/, '\n');

describe('Sieve interpreter against Pigeonhole sieve-test', () => {
  let pigeonhole: Pigeonhole;
  let includes: Includes;
  before(async () => {
    // No silent skip: without the oracle this test fails and says what to install.
    assert.ok(existsSync(SIEVE_TEST), `${SIEVE_TEST} is missing: this test needs Debian's dovecot-sieve (.ci/run installs it)`);
    includes = await readIncludes();
    pigeonhole = await Pigeonhole.start(includes);
  });
  after(async () => {
    await pigeonhole?.stop();
  });

  it('prints the same actions for every script on every message', async () => {
    const scripts = (await readdir(path.join(FIXTURES, 'scripts'))).filter((f) => f.endsWith('.sieve') && !(f in KNOWN_DIFFERENCES)).sort();
    const messages = (await readdir(path.join(FIXTURES, 'messages'))).filter((f) => f.endsWith('.eml')).sort();
    assert.ok(scripts.length >= 100, `corpus has ${scripts.length} scripts`);
    const scriptText = new Map<string, string>();
    const messageData = new Map<string, Buffer>();
    const scriptFile = new Map<string, string>();
    const messageFile = new Map<string, string>();
    for (const s of scripts) {
      const text = await readFile(path.join(FIXTURES, 'scripts', s), 'utf8');
      scriptText.set(s, text);
      scriptFile.set(s, await pigeonhole.put(s, text));
    }
    for (const m of messages) {
      const data = await readFile(path.join(FIXTURES, 'messages', m));
      messageData.set(m, data);
      messageFile.set(m, await pigeonhole.put(m, data));
    }
    // a script sieve-test does not compile fails alike on every message: one message tells
    const run = (s: string, m: string) => () => pigeonhole.run(scriptFile.get(s)!, messageFile.get(m)!, ENVELOPE, EXTENSIONS);
    const firstRuns = await pool(
      scripts.map((s) => run(s, messages[0]!)),
      4,
    );
    const compiling = scripts.filter((_s, i) => firstRuns[i]!.status !== 'compile-error');
    const restPairs = compiling.flatMap((s) => messages.slice(1).map((m) => [s, m] as const));
    const restRuns = await pool(
      restPairs.map(([s, m]) => run(s, m)),
      4,
    );
    const pairs = [...scripts.map((s) => [s, messages[0]!] as const), ...restPairs];
    const theirs = [...firstRuns, ...restRuns];
    const mismatches: string[] = [];
    pairs.forEach(([s, m], i) => {
      const t = theirs[i]!;
      const o = ours(scriptText.get(s)!, messageData.get(m)!, includes);
      // a compile error must be reported on the same line as sieve-test's first error
      const theirLine = new RegExp(`^${s.replace(/\.sieve$/, '')}: line (\\d+): error:`, 'm').exec(t.stderr)?.[1];
      const same =
        t.status === o.status &&
        (o.status === 'runtime-error' ||
          (o.status === 'compile-error' ? o.stdout === `line ${theirLine}` : normalize(t.stdout) === normalize(o.stdout)));
      if (!same)
        mismatches.push(
          `${s} × ${m}: sieve-test ${t.status}${t.status === 'ok' ? `\n${t.stdout}` : `\n${t.stderr}`}\n-- ours ${o.status}\n${o.stdout}`,
        );
    });
    const summary =
      `${pairs.length - mismatches.length}/${pairs.length} pairs match (${scripts.length} scripts, ` +
      `${scripts.length - compiling.length} of them compile errors run on one message, ${messages.length} messages)`;
    if (process.env.SIEVE_DIFF_VERBOSE) console.log(summary, mismatches.map((x) => x.split(':')[0]).join('\n'));
    assert.deepEqual(mismatches.slice(0, 10), [], `${summary}; first mismatches:\n${mismatches.slice(0, 10).join('\n====\n')}`);
  });
});
