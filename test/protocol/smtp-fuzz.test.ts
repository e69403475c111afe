/**
 * Randomised hostile sessions against the MX and LMTP listeners for a bounded time: random
 * bytes, command fragments with random arguments, pipelined bursts, abrupt disconnects. The
 * server must answer or close every session, never crash (it runs in this process, so an
 * uncaught exception fails the test run), and serve a normal session afterwards.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { seededRandom as rng } from '../helpers/prng.js';

const VERBS = [
  'HELO',
  'EHLO',
  'LHLO',
  'MAIL FROM:',
  'RCPT TO:',
  'DATA',
  'RSET',
  'NOOP',
  'QUIT',
  'VRFY',
  'EXPN',
  'HELP',
  'STARTTLS',
  'AUTH PLAIN',
  'BDAT',
  'XCLIENT',
  'ETRN',
];
const PIECES = [
  '<',
  '>',
  '@',
  '<>',
  '<alice@example.test>',
  '<a%b@example.test>',
  '"q@x"@example.test',
  'SIZE=',
  'SIZE=99999999999999999999',
  'BODY=8BITMIME',
  'SMTPUTF8',
  '\u00e9',
  '.',
  '..',
  '\r',
  '\n',
  ' ',
  '\t',
  '\u0000',
  ':',
  '[127.0.0.1]',
  '@a,@b:',
  'x'.repeat(600),
];

function randomLine(r: () => number): Buffer {
  const kind = r();
  if (kind < 0.2) return Buffer.from(Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256)));
  let line = VERBS[Math.floor(r() * VERBS.length)]!;
  const n = Math.floor(r() * 5);
  for (let i = 0; i < n; i++) line += PIECES[Math.floor(r() * PIECES.length)]!;
  return Buffer.from(`${line}\r\n`, 'utf8');
}

async function hostileSession(port: number, r: () => number): Promise<void> {
  await new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const lines = 1 + Math.floor(r() * 40);
    let sent = 0;
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.on('data', () => undefined);
    s.on('connect', () => {
      const burst = () => {
        if (s.destroyed) return;
        const pipelined = 1 + Math.floor(r() * 8);
        for (let i = 0; i < pipelined && sent < lines; i++, sent++) s.write(randomLine(r));
        if (sent >= lines) {
          if (r() < 0.5) s.destroy();
          else s.end();
          return;
        }
        setTimeout(burst, Math.floor(r() * 5));
      };
      burst();
    });
  });
}

describe('hostile input fuzzing', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { limits: { connections_per_ip: 1000, message_size: '1M', idle_timeout: '2s' } } });
  });
  after(async () => {
    await srv.stop();
  });

  it('survives a few seconds of random sessions and still delivers', async (t) => {
    const seed = Number(process.env.MAILD_FUZZ_SEED ?? Date.now() % 1_000_000);
    t.diagnostic(`seed ${seed} (MAILD_FUZZ_SEED=${seed} repeats this run)`);
    const r = rng(seed);
    const deadline = Date.now() + 4000;
    let sessions = 0;
    while (Date.now() < deadline) {
      await Promise.all(Array.from({ length: 20 }, () => hostileSession(r() < 0.7 ? srv.smtpPort : srv.lmtpPort, r)));
      sessions += 20;
    }
    t.diagnostic(`${sessions} hostile sessions`);
    const c = await SmtpClient.connect(srv.smtpPort);
    assert.equal((await c.greeting()).code, 220);
    await c.command('EHLO after.fuzz.example');
    const res = await c.sendMail('s@remote.example', ['alice@example.test'], simpleMessage('after fuzzing'));
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    assert.ok(!srv.logs.some((l) => l.level === 50 || l.level === 60), 'no error-level log lines');
  });
});
