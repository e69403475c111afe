/**
 * Password hashing costs: node --import tsx bench/passwords.ts
 *
 *  1. Candidate libraries called directly on this thread (how the implementations were chosen).
 *  2. Verify latency per scheme through PasswordService with one worker, calls one at a time.
 *  3. Verifications/s with the default pool during a burst, and the main thread's event-loop
 *     delay meanwhile (what every other connection would feel).
 * Hashes come from test/fixtures/passwords.json (doveadm and friends) or PasswordService.hash().
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import unixCryptTD from 'unix-crypt-td-js';
import { encrypt as unixcryptEncrypt } from 'unixcrypt';
import { PasswordService } from '../src/directory/passwords/index.js';
import { md5Crypt } from '../src/directory/passwords/md5crypt.js';

const require = createRequire(import.meta.url);
const sha512cryptNode = require('sha512crypt-node') as { sha512crypt(pw: string, salt: string): string };

interface Fixture {
  tool: string;
  scheme: string;
  password: string;
  stored: string;
}
const fixtures: Fixture[] = JSON.parse(readFileSync(new URL('../test/fixtures/passwords.json', import.meta.url), 'utf8')).entries;
const doveadm = (scheme: string, password = 'secret'): string => {
  const f = fixtures.find((x) => x.tool.startsWith('doveadm') && x.scheme === scheme && x.password === password);
  if (!f) throw new Error(`no doveadm fixture for ${scheme}`);
  return f.stored;
};

/** Mean ms per call: at least `min` calls, then until ~budget ms have passed (at most `max`). */
async function perCall(fn: () => unknown, { min = 3, max = 200, budgetMs = 1000 } = {}): Promise<number> {
  await fn(); // warm-up
  let n = 0;
  const t0 = performance.now();
  while (n < min || (n < max && performance.now() - t0 < budgetMs)) {
    await fn();
    n++;
  }
  return (performance.now() - t0) / n;
}

const fmt = (ms: number) => (ms >= 10 ? ms.toFixed(0) : ms.toFixed(2)).padStart(8);

console.log(`node ${process.version}, ${availableParallelism()} CPUs\n`);

// 1. Libraries, directly on this thread.
console.log('1. Candidate implementations, direct call on the main thread (ms per hash)');
const salt16 = 'abcdefghijklmnop';
const libs: [string, () => unknown][] = [
  ['SHA512-CRYPT unixcrypt (node:crypto)', () => unixcryptEncrypt('secret', `$6$${salt16}`)],
  ['SHA512-CRYPT sha512crypt-node (pure JS)', () => sha512cryptNode.sha512crypt('secret', salt16)],
  ['SHA256-CRYPT unixcrypt', () => unixcryptEncrypt('secret', `$5$${salt16}`)],
  ['BLF-CRYPT bcryptjs cost 10', () => bcrypt.hashSync('secret', '$2y$10$abcdefghijklmnopqrstuu')],
  ['BLF-CRYPT bcryptjs cost 5 (doveadm default)', () => bcrypt.hashSync('secret', '$2y$05$abcdefghijklmnopqrstuu')],
  ['MD5-CRYPT md5crypt.ts (node:crypto)', () => md5Crypt(Buffer.from('secret'), 'abcdefgh')],
  ['DES-CRYPT unix-crypt-td-js', () => unixCryptTD(Array.from(Buffer.from('secret')), 'ab')],
  ['ARGON2ID argon2 m=64MiB,t=3,p=4 (async, libuv pool)', () => argon2.hash('secret', { raw: true })],
];
for (const [name, fn] of libs) console.log(`${fmt(await perCall(fn))} ms  ${name}`);

// 2. Latency through the service, one worker, one call at a time.
console.log('\n2. verify() latency per scheme, PasswordService threads=1, sequential (ms per call)');
const single = new PasswordService({ threads: 1 });
const ours = async (scheme: 'ARGON2ID' | 'BLF-CRYPT' | 'SSHA512') => single.hash('secret', scheme);
const cases: [string, string][] = [
  ['SHA512-CRYPT (doveadm, 5000 rounds)', doveadm('SHA512-CRYPT')],
  ['SHA512-CRYPT (doveadm, rounds=10000)', fixtures.find((f) => f.stored.includes('$6$rounds=10000$') && f.password === 'secret')!.stored],
  ['SHA256-CRYPT (doveadm)', doveadm('SHA256-CRYPT')],
  ['MD5-CRYPT (doveadm)', doveadm('MD5-CRYPT')],
  ['DES-CRYPT (doveadm)', doveadm('DES-CRYPT')],
  ['BLF-CRYPT (doveadm, cost 5)', doveadm('BLF-CRYPT')],
  ['BLF-CRYPT (ours, cost 10)', await ours('BLF-CRYPT')],
  ['ARGON2I (doveadm, m=32MiB,t=4,p=1)', doveadm('ARGON2I')],
  ['ARGON2ID (doveadm, m=64MiB,t=3,p=1)', doveadm('ARGON2ID')],
  ['ARGON2ID (ours, m=64MiB,t=3,p=1)', await ours('ARGON2ID')],
  ['PBKDF2 (doveadm, 5000 rounds)', doveadm('PBKDF2')],
  ['SSHA512 (ours)', await ours('SSHA512')],
  ['SSHA (doveadm)', doveadm('SSHA')],
  ['SHA512 (doveadm)', doveadm('SHA512')],
  ['PLAIN-MD5 (doveadm)', doveadm('PLAIN-MD5')],
  ['PLAIN (doveadm)', doveadm('PLAIN')],
];
for (const [name, stored] of cases) {
  const r = await single.verify(stored, 'secret');
  if (!r.ok) throw new Error(`${name}: fixture does not verify (${r.reason ?? 'mismatch'})`);
  console.log(`${fmt(await perCall(() => single.verify(stored, 'secret')))} ms  ${name}`);
}
await single.close();

// 3. Throughput with the pool, and the main thread meanwhile.
const pool = new PasswordService();
console.log(`\n3. Burst through the pool (threads=${pool.threads}): verifications/s and main-thread event-loop delay`);
const bursts: [string, string, number][] = [
  ['SHA512-CRYPT 5000 rounds', doveadm('SHA512-CRYPT'), 200],
  ['SHA512-CRYPT rounds=10000', cases[1]![1], 100],
  ['BLF-CRYPT cost 10', cases[6]![1], 40],
  ['ARGON2ID m=64MiB,t=3,p=1 (doveadm)', doveadm('ARGON2ID'), 30],
  ['ARGON2ID m=64MiB,t=3,p=1 (ours)', cases[9]![1], 30],
];
for (const [name, stored, n] of bursts) {
  await Promise.all(Array.from({ length: pool.threads }, () => pool.verify(stored, 'secret'))); // workers up
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let maxGap = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 5);
  histogram.enable();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, () => pool.verify(stored, 'secret')));
  const ms = performance.now() - t0;
  histogram.disable();
  clearInterval(tick);
  console.log(
    `${name.padEnd(36)} ${String(n).padStart(4)} in ${ms.toFixed(0).padStart(5)} ms = ${((n * 1000) / ms).toFixed(0).padStart(5)}/s;` +
      ` event loop delay max ${(histogram.max / 1e6).toFixed(1)} ms, p99 ${(histogram.percentile(99) / 1e6).toFixed(1)} ms, 5 ms timer max gap ${maxGap.toFixed(1)} ms`,
  );
}
await pool.close();
