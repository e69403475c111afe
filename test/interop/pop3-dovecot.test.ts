/**
 * maild's POP3 against Dovecot's own pop3 on the same Maildir: the same commands, pipelined,
 * to both servers must get the same answers byte for byte (UIDL, LIST and STAT sizes, RETR and
 * TOP content, the error texts), whichever of the two gave the messages their UIDs first. This
 * is what lets a client that downloaded from Dovecot switch to maild without downloading again.
 * And the session lock: maild and a Dovecot with pop3_lock_session = yes exclude each other;
 * without it (both defaults) each finishes its session when the other deleted messages.
 * Dovecot's pop3 runs preauthenticated on pipes with in-memory indexes, so only the Maildir
 * files can have told it anything. CI installs dovecot-pop3d (.ci/run); without it the test
 * fails and says so, it is not skipped.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chownForDovecot, writeDovecotConfig } from '../helpers/dovecot.js';
import { Pop3TestClient } from '../helpers/pop3-client.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { isPop3Locked } from '../../src/store/mail/pop3-lock.js';

const DOVECOT_POP3 = '/usr/lib/dovecot/pop3';

async function deliver(srv: TestServer, to: string, subject: string, body: string): Promise<void> {
  const c = await SmtpClient.connect(srv.lmtpPort);
  await c.greeting();
  await c.command('LHLO dovecot.test');
  const r = await c.sendMail(
    'sender@remote.example',
    [to],
    `From: sender@remote.example\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\n${body}`,
  );
  assert.equal(r.final?.[0]?.code, 250);
  await c.quit();
}

/** Files as other programs leave them: no S=/W= in the name, no final line end, CRLF inside. */
async function placeOddFiles(maildir: string): Promise<void> {
  const t = Math.floor(Date.now() / 1000);
  await writeFile(path.join(maildir, 'new', `${t + 5}.M1P1.other`), 'Subject: no sizes, no final newline\n\n.starts with a dot\nlast line');
  await writeFile(path.join(maildir, 'new', `${t + 6}.M2P1.other`), 'Subject: crlf\r\nX-Mixed: yes\n\r\nbody\r\n.\r\nend\n');
}

/** The pipelined commands both servers answer (CAPA, the greeting and login differ by design). */
function script(count: number): string {
  const lines = ['STAT', 'LIST', 'UIDL', 'LIST 0', 'LIST 99', 'LIST x', 'RETR 0', `TOP ${count + 1} 1`];
  for (let i = 1; i <= count; i++) lines.push(`LIST ${i}`, `UIDL ${i}`, `RETR ${i}`, `TOP ${i} 0`, `TOP ${i} 1`, `TOP ${i} 3`);
  lines.push('NOOP', 'QUIT');
  return lines.map((l) => `${l}\r\n`).join('');
}

interface DovecotProcess {
  write(data: string): void;
  /** What it answered so far. */
  output(): string;
  /** Sends the rest of the input, closes it, waits for the exit; all its answers. */
  finish(input?: string): Promise<string>;
}

/**
 * Dovecot's pop3, preauthenticated, on the Maildir (handed to nobody: Dovecot refuses root).
 * `lockSession`: Dovecot's pop3_lock_session = yes.
 */
async function dovecotProcess(work: string, maildir: string, top: string, opts: { lockSession?: boolean } = {}): Promise<DovecotProcess> {
  await access(DOVECOT_POP3).catch(() => {
    throw new Error(
      `${DOVECOT_POP3} is missing: the Dovecot interop test needs the dovecot-pop3d package (apt-get install dovecot-pop3d; .ci/run installs it)`,
    );
  });
  await mkdir(work, { recursive: true });
  await chmod(work, 0o755);
  const conf = await writeDovecotConfig(work, maildir, [`pop3_lock_session = ${opts.lockSession ? 'yes' : 'no'}`]);
  await chownForDovecot(maildir);
  // Dovecot (as nobody) must reach the Maildir through the test's private directories (up to `top`).
  for (let dir = path.dirname(maildir); dir.startsWith(top); dir = path.dirname(dir)) await chmod(dir, 0o755);
  // Through pipes, as Dovecot's own tests drive a preauthenticated process.
  const child = spawn('sh', ['-c', `cat | ${DOVECOT_POP3} -c "$0" | cat`, conf], { env: { ...process.env, USER: 'fixture', HOME: work } });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    write: (data) => child.stdin.write(data),
    output: () => Buffer.concat(out).toString('latin1'),
    async finish(input = '') {
      child.stdin.end(input);
      const code = await exited;
      assert.equal(code, 0, `dovecot pop3 exited with ${code}: ${err}`);
      return Buffer.concat(out).toString('latin1');
    },
  };
}

async function dovecotPop3(work: string, maildir: string, input: string, top: string): Promise<string> {
  const text = await (await dovecotProcess(work, maildir, top)).finish(input);
  assert.doesNotMatch(text, /^-ERR \[SYS/m, 'dovecot pop3 failed');
  return text;
}

/** maild's answers to the same script, after a login over implicit TLS. */
async function maildPop3(srv: TestServer, user: string, pass: string, input: string): Promise<string> {
  const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
  await c.greeting();
  assert.equal((await c.login(user, pass)).ok, true);
  c.write(input);
  assert.equal(await c.waitClosed(30_000), true, 'QUIT closes the connection');
  const text = c.pending.toString('latin1');
  await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, 'example.test', user.split('@')[0]!)), 5000, 'lock released');
  return text;
}

describe('POP3 answers identical to Dovecot on the same Maildir', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ config: { pop3: { lock_session: true } } });
  });
  after(async () => {
    await srv.stop();
  });

  it("excludes Dovecot's pop3 with pop3_lock_session = yes, and is excluded by it: [IN-USE] both ways", async () => {
    const maildir = path.join(srv.mailRoot, 'example.test', 'bob');
    await deliver(srv, 'bob@example.test', 'locked', 'x\r\n');
    const work = path.join(srv.dir, 'dovecot-lock');
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    assert.equal((await c.login('bob@example.test', 'bob-pw')).ok, true);
    // Dovecot waits up to 10 s for the lock, then gives up with the same words maild uses.
    const refused = await (await dovecotProcess(work, maildir, srv.dir, { lockSession: true })).finish('STAT\r\nQUIT\r\n');
    assert.equal(refused, '-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n');
    assert.equal((await c.quit())?.line, '+OK Logging out.');
    // Now Dovecot holds the session (it answered STAT), and maild refuses the login.
    const dovecot = await dovecotProcess(work, maildir, srv.dir, { lockSession: true });
    dovecot.write('STAT\r\n');
    await waitFor(() => dovecot.output().startsWith('+OK 1 '), 10_000, "Dovecot's session");
    const d = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await d.greeting();
    assert.equal((await d.login('bob@example.test', 'bob-pw')).line, '-ERR [IN-USE] Mailbox is locked by another POP3 session.');
    assert.match(await dovecot.finish('QUIT\r\n'), /\+OK Logging out\.\r\n$/);
    assert.equal((await d.login('bob@example.test', 'bob-pw')).line, '+OK Logged in.');
    await d.quit();
  });

  for (const first of ['maild', 'dovecot'] as const) {
    const user = first === 'maild' ? 'alice' : 'carol';
    it(`${first} sees the messages first (and gives the UIDs), then the other answers the same`, async () => {
      const maildir = path.join(srv.mailRoot, 'example.test', user);
      await deliver(srv, `${user}@example.test`, 'plain', 'Hello.\r\nSecond line.\r\nThird line.\r\n');
      await deliver(srv, `${user}@example.test`, 'dots', '.leading\r\n..two\r\n.\r\nafter\r\n');
      await deliver(srv, `${user}@example.test`, 'header only', '');
      await placeOddFiles(maildir);
      const count = 5;
      const work = path.join(srv.dir, `dovecot-${user}`);
      const input = script(count);
      let maild: string;
      let dovecot: string;
      if (first === 'maild') {
        maild = await maildPop3(srv, `${user}@example.test`, `${user}-pw`, input);
        dovecot = await dovecotPop3(work, maildir, input, srv.dir);
      } else {
        dovecot = await dovecotPop3(work, maildir, input, srv.dir);
        maild = await maildPop3(srv, `${user}@example.test`, `${user}-pw`, input);
      }
      assert.match(maild, /^\+OK 5 \d+\r\n/);
      assert.match(maild, /\r\n\+OK 5 messages:\r\n1 \d+\r\n/);
      assert.match(maild, /\r\n1 [0-9a-f]{16}\r\n/);
      if (process.env.POP3_DEBUG) {
        await writeFile(`/tmp/pop3-${first}-maild.txt`, maild, 'latin1');
        await writeFile(`/tmp/pop3-${first}-dovecot.txt`, dovecot, 'latin1');
      }
      assert.equal(maild, dovecot, `${first} first: the transcripts differ`);
      // DELE and the UPDATE state: both servers remove the message and say so the same way.
      const after = await maildPop3(srv, `${user}@example.test`, `${user}-pw`, 'DELE 1\r\nDELE 1\r\nRETR 1\r\nSTAT\r\nQUIT\r\n');
      assert.match(
        after,
        /^\+OK Marked to be deleted\.\r\n-ERR Message is deleted\.\r\n-ERR Message is deleted\.\r\n\+OK 4 \d+\r\n\+OK Logging out, messages deleted\.\r\n$/,
      );
      const dovecotAfter = await dovecotPop3(work, maildir, 'STAT\r\nUIDL\r\nQUIT\r\n', srv.dir);
      const maildAfter = await maildPop3(srv, `${user}@example.test`, `${user}-pw`, 'STAT\r\nUIDL\r\nQUIT\r\n');
      assert.equal(maildAfter, dovecotAfter);
      assert.match(maildAfter, /^\+OK 4 /);
      await rm(work, { recursive: true, force: true });
    });
  }
});

describe("POP3 sessions next to Dovecot's without a session lock (both defaults)", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  /** Names of the messages in the Maildir, by their Subject. */
  async function subjects(user: string): Promise<string[]> {
    return (await srv.read(`example.test/${user}`)).map((m) => /^Subject: (.*)$/m.exec(m)![1]!).sort();
  }

  it('serves a session while Dovecot deletes from the same INBOX, and skips what Dovecot removed', async () => {
    const maildir = path.join(srv.mailRoot, 'example.test', 'bob');
    for (const s of ['d1', 'd2', 'd3']) await deliver(srv, 'bob@example.test', s, 'x\r\n');
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    assert.equal((await c.login('bob@example.test', 'bob-pw')).line, '+OK Logged in.');
    assert.match((await c.cmd('STAT')).line, /^\+OK 3 /);
    // Dovecot (pop3_lock_session = no) logs in meanwhile and deletes the first message.
    const dovecot = await (await dovecotProcess(path.join(srv.dir, 'dovecot-bob'), maildir, srv.dir)).finish('DELE 1\r\nQUIT\r\n');
    assert.match(dovecot, /^\+OK .*\r\n\+OK Logging out, messages deleted\.\r\n$/);
    assert.deepEqual(await subjects('bob'), ['d2', 'd3']);
    // maild deletes the same one and the second: no error, the third stays.
    assert.equal((await c.cmd('DELE 1')).ok, true);
    assert.equal((await c.cmd('DELE 2')).ok, true);
    assert.equal((await c.quit())?.ok, true);
    assert.deepEqual(await subjects('bob'), ['d3']);
  });

  it('lets Dovecot finish its session after maild removed what it had marked', async () => {
    const maildir = path.join(srv.mailRoot, 'example.test', 'carol');
    for (const s of ['e1', 'e2']) await deliver(srv, 'carol@example.test', s, 'x\r\n');
    const dovecot = await dovecotProcess(path.join(srv.dir, 'dovecot-carol'), maildir, srv.dir);
    dovecot.write('STAT\r\n');
    await waitFor(() => dovecot.output().startsWith('+OK 2 '), 10_000, "Dovecot's session");
    const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true });
    await c.greeting();
    assert.equal((await c.login('carol@example.test', 'carol-pw')).line, '+OK Logged in.');
    assert.equal((await c.cmd('DELE 1')).ok, true);
    assert.equal((await c.quit())?.line, '+OK Logging out, messages deleted.');
    assert.deepEqual(await subjects('carol'), ['e2']);
    const rest = await dovecot.finish('DELE 1\r\nDELE 2\r\nQUIT\r\n');
    assert.doesNotMatch(rest, /^-ERR/m, 'Dovecot has no complaint either');
    assert.deepEqual(await subjects('carol'), []);
  });
});
