/**
 * POP3 fed garbage: random command names, arguments, bytes (NUL, 8-bit, bare CR), long lines and
 * abrupt disconnects, before and after login, from a fixed seed. Every line gets one status line
 * back (or a multi-line response), the server never crashes, logs no internal error, and the
 * mailbox is as it was (nothing deleted without a QUIT that follows a DELE).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Pop3TestClient } from '../helpers/pop3-client.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { seededRandom as prng } from '../helpers/prng.js';

const COMMANDS = [
  'USER',
  'PASS',
  'STAT',
  'LIST',
  'RETR',
  'DELE',
  'NOOP',
  'RSET',
  'TOP',
  'UIDL',
  'CAPA',
  'AUTH',
  'STLS',
  'APOP',
  'LAST',
  'XTND',
  '',
];
const ARGS = [
  '',
  '0',
  '1',
  '2',
  '3',
  '-1',
  '4294967296',
  '99999999999999999999',
  'x',
  '1 1',
  '1 -1',
  '1 0',
  '=',
  '*',
  'PLAIN',
  'LOGIN',
  'PLAIN =',
  'PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==',
  '  ',
  '\t1',
];

function randomLine(rand: () => number): Buffer {
  const r = rand();
  if (r < 0.6) {
    const cmd = COMMANDS[Math.floor(rand() * COMMANDS.length)]!;
    const arg = ARGS[Math.floor(rand() * ARGS.length)]!;
    const cased = rand() < 0.5 ? cmd.toLowerCase() : cmd;
    return Buffer.from(`${cased}${arg ? ` ${arg}` : ''}\r\n`, 'latin1');
  }
  if (r < 0.9) {
    const len = Math.floor(rand() * 60);
    const bytes = Buffer.alloc(len);
    for (let i = 0; i < len; i++) {
      let b = Math.floor(rand() * 256);
      if (b === 0x0a) b = 0x20; // one line per command, so that replies can be counted
      bytes[i] = b;
    }
    return Buffer.concat([bytes, Buffer.from('\r\n')]);
  }
  return Buffer.from(`NOOP ${'z'.repeat(1000 + Math.floor(rand() * 3000))}\r\n`);
}

/** Reads the reply to one line: a status line, plus the body for +OK of a multi-line command. */
async function readReply(c: Pop3TestClient, line: Buffer, loggedIn: boolean): Promise<string> {
  const status = await c.line();
  if (status === null) throw new Error(`closed after ${JSON.stringify(line.toString('latin1').slice(0, 60))}`);
  assert.match(status, /^(\+OK|-ERR)( |$)/, `a status line for ${JSON.stringify(line.toString('latin1').slice(0, 60))}`);
  const text = line.toString('latin1').trim();
  const [cmd = '', ...rest] = text.split(/ +/);
  const name = cmd.toUpperCase();
  const multi =
    status.startsWith('+OK') &&
    (name === 'CAPA' ||
      (name === 'AUTH' && rest.length === 0 && !loggedIn) ||
      ((name === 'LIST' || name === 'UIDL') && rest.length === 0) ||
      name === 'RETR' ||
      name === 'TOP');
  if (multi)
    for (let l = await c.line(); l !== '.'; l = await c.line()) if (l === null) throw new Error('closed inside a multi-line response');
  return status;
}

describe('POP3 fuzz', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { auth: { failure_delay: '1ms', failure_delay_max: '2ms' }, pop3: { bad_commands: 100_000 } } });
    for (const subject of ['a', 'b', 'c']) {
      const c = await SmtpClient.connect(srv.lmtpPort);
      await c.greeting();
      await c.command('LHLO fuzz.test');
      await c.sendMail('x@remote.example', ['bob@example.test'], `Subject: ${subject}\r\n\r\n.${subject}\r\nbody\r\n`);
      await c.quit();
    }
  });
  after(async () => {
    await srv.stop();
  });

  it('answers every random line with a status line and never crashes', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const rand = prng(seed);
      const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
      await c.greeting();
      const loggedIn = seed % 2 === 0;
      if (loggedIn) assert.equal((await c.login('bob@example.test', 'bob-pw')).ok, true);
      for (let i = 0; i < 300; i++) {
        let line = randomLine(rand);
        // An AUTH exchange would take the next line as its response; QUIT ends the test session.
        if (/^(auth (plain|login)\s*\r|quit)/i.test(line.toString('latin1'))) line = Buffer.from('NOOP\r\n');
        c.write(line);
        await readReply(c, line, loggedIn);
      }
      if (seed % 3 === 0) c.destroy();
      else await c.cmd('RSET').then(() => c.quit());
      await waitFor(() => srv.runtime.pop3Sessions.size === 0, 5000, 'session closed');
    }
    const errors = srv.logs.filter((l) => (l.level as number) >= 50);
    assert.deepEqual(errors, [], 'no internal errors logged');
    // Nothing was deleted: every DELE was followed by RSET or a dropped connection.
    assert.equal((await srv.messages('example.test/bob')).length, 3);
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    assert.equal((await c.login('bob@example.test', 'bob-pw')).ok, true);
    assert.match((await c.cmd('STAT')).line, /^\+OK 3 \d+$/);
    await c.quit();
  });
});
