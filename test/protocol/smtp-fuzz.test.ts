/**
 * Randomised hostile sessions against the MX, LMTP and submission listeners (before and after
 * AUTH) for a bounded time: random
 * bytes, command fragments with random arguments, pipelined bursts, abrupt disconnects. The
 * server must answer or close every session, never crash (it runs in this process, so an
 * uncaught exception fails the test run), and serve a normal session afterwards.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
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

/** What a logged-in client might send: whole transactions with odd senders, recipients and messages, or noise. */
function submissionLine(r: () => number): Buffer {
  if (r() < 0.5) return randomLine(r);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const sender = pick(['alice@example.test', 'bob@example.test', '', 'team@example.test']);
  const rcpts = Array.from({ length: 1 + Math.floor(r() * 3) }, () =>
    pick(['x@remote.example', 'bob@example.test', 'nobody@example.test', 'all@example.test']),
  );
  // The header section may lie about From:, be broken, or be missing.
  const from = pick([
    'alice@example.test',
    'ceo@bank.example',
    '',
    '<>',
    '"x" <alice@example.test>, evil@x',
    '=?utf-8?q?=E9?= <alice@example.test>',
  ]);
  const header = r() < 0.8 ? `From: ${from}\r\n` : '';
  const noise = r() < 0.5 ? randomLine(r).toString('latin1') : '';
  return Buffer.from(
    `MAIL FROM:<${sender}>\r\n${rcpts.map((a) => `RCPT TO:<${a}>\r\n`).join('')}DATA\r\n${header}${noise}Subject: fuzz\r\n\r\nbody\r\n.\r\n`,
    'latin1',
  );
}

const AUTH_LINE = Buffer.from(`AUTH PLAIN ${Buffer.from('\0alice@example.test\0alice-pw').toString('base64')}\r\n`);

async function hostileSession(port: number, r: () => number, opts: { tls?: boolean; login?: boolean } = {}): Promise<void> {
  await new Promise<void>((resolve) => {
    const s: net.Socket = opts.tls ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
    const lines = 1 + Math.floor(r() * 40);
    let sent = 0;
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    // Most sessions wait for the greeting (a client talking first only ever gets "421 You talk
    // too soon", so it reaches none of the command handling); a few talk first on purpose.
    const talkFirst = r() < 0.1;
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      if (opts.login) s.write(Buffer.concat([Buffer.from('EHLO fuzz.example\r\n'), AUTH_LINE]));
      const burst = () => {
        if (s.destroyed) return;
        const pipelined = 1 + Math.floor(r() * 8);
        for (let i = 0; i < pipelined && sent < lines; i++, sent++) s.write(opts.login ? submissionLine(r) : randomLine(r));
        if (sent >= lines) {
          if (r() < 0.5) s.destroy();
          else s.end();
          return;
        }
        setTimeout(burst, Math.floor(r() * 5));
      };
      burst();
    };
    s.on(opts.tls ? 'secureConnect' : 'connect', () => {
      if (talkFirst) start();
    });
    s.once('data', () => start());
  });
}

describe('hostile input fuzzing', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      config: {
        limits: { connections_per_ip: 1000, message_size: '1M', idle_timeout: '2s' },
        // Queued mail goes to a port where nothing listens: refused at once, retried later.
        queue: { relayhost: '[127.0.0.1]:9' },
        submission: { rate_limit: { recipients: 0 } },
        auth: { failure_delay: '1ms', failure_delay_max: '2ms' },
      },
    });
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

  it('survives random submission sessions, before and after AUTH, and still takes a submission', async (t) => {
    const seed = Number(process.env.MAILD_FUZZ_SEED ?? Date.now() % 1_000_000);
    t.diagnostic(`seed ${seed} (MAILD_FUZZ_SEED=${seed} repeats this run)`);
    const r = rng(seed);
    const deadline = Date.now() + 3000;
    let sessions = 0;
    while (Date.now() < deadline) {
      await Promise.all(
        Array.from({ length: 10 }, () => {
          const k = r();
          if (k < 0.3) return hostileSession(srv.submissionPort, r);
          return hostileSession(srv.submissionsPort, r, { tls: true, login: k < 0.9 });
        }),
      );
      sessions += 10;
    }
    const queued = srv.logs.filter((l) => l.msg === 'queued' && l.origin === 'submission').length;
    t.diagnostic(`${sessions} hostile submission sessions; ${queued} messages accepted into the queue`);
    const c = await SmtpClient.connect(srv.submissionsPort, { implicitTls: true });
    assert.equal((await c.greeting()).code, 220);
    await c.command('EHLO after.fuzz.example');
    assert.equal((await c.command(AUTH_LINE.toString().trim())).code, 235);
    const res = await c.sendMail(
      'alice@example.test',
      ['bob@example.test'],
      'From: alice@example.test\nSubject: after submission fuzzing\n\nhi\n',
    );
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    assert.ok(!srv.logs.some((l) => l.level === 50 || l.level === 60), 'no error-level log lines');
  });
});
