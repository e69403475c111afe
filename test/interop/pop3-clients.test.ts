/**
 * Real POP3 clients from Debian against the POP3 listeners: Python's poplib (POP3_SSL on the
 * implicit-TLS port, stls() on the STLS port) and fetchmail with an MDA that writes files,
 * each downloading with keep and with delete. CI installs fetchmail (.ci/run); without it the
 * fetchmail test fails and says so, it is not skipped.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { loggedIn as imapLoggedIn } from '../helpers/imap-client.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { isPop3Locked } from '../../src/store/mail/pop3-lock.js';

const run = promisify(execFile);

async function deliver(srv: TestServer, to: string, subject: string, body: string): Promise<void> {
  const c = await SmtpClient.connect(srv.lmtpPort);
  await c.greeting();
  await c.command('LHLO interop.test');
  const message = `From: sender@remote.example\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@remote.example>\r\n\r\n${body}`;
  const r = await c.sendMail('sender@remote.example', [to], message);
  assert.equal(r.final?.[0]?.code, 250);
  await c.quit();
}

/** Stored messages of a Maildir with CRLF line ends (what RETR sends, un-stuffed), by file name. */
async function storedCrlf(srv: TestServer, mailbox: string): Promise<string[]> {
  return (await srv.read(mailbox)).map((m) => m.replace(/\r?\n/g, '\r\n')).sort();
}

const POPLIB = `
import base64, json, poplib, ssl, sys
mode, port, user, password, delete = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "delete"
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
if mode == "ssl":
    p = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=20)
else:
    p = poplib.POP3("127.0.0.1", port, timeout=20)
    before = sorted(p.capa().keys())
    p.stls(context=ctx)
caps = p.capa()
p.user(user)
p.pass_(password)
count, size = p.stat()
uidl = [l.decode() for l in p.uidl()[1]]
listing = [l.decode() for l in p.list()[1]]
messages = []
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    data = b"\\r\\n".join(lines) + b"\\r\\n"
    messages.append({"octets": octets, "data": base64.b64encode(data).decode(), "resp": resp.decode()})
    if delete:
        p.dele(i)
top = [l.decode("latin1") for l in p.top(1, 0)[1]] if count and not delete else []
print(json.dumps({"welcome": p.getwelcome().decode(), "caps": sorted(caps.keys()), "sasl": caps.get("SASL", []), "stat": [count, size],
                  "uidl": uidl, "list": listing, "messages": messages, "top": top, "quit": p.quit().decode(),
                  "before_tls": before if mode != "ssl" else None}))
`;

interface PoplibResult {
  welcome: string;
  caps: string[];
  sasl: string[];
  stat: [number, number];
  uidl: string[];
  list: string[];
  messages: Array<{ octets: number; data: string; resp: string }>;
  top: string[];
  quit: string;
  before_tls: string[] | null;
}

async function poplib(
  mode: 'ssl' | 'stls',
  port: number,
  user: string,
  password: string,
  action: 'keep' | 'delete',
): Promise<PoplibResult> {
  const { stdout } = await run('python3', ['-c', POPLIB, mode, String(port), user, password, action], { timeout: 60_000 });
  return JSON.parse(stdout) as PoplibResult;
}

describe('interop with real POP3 clients', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  it("Python's poplib over POP3_SSL downloads and keeps; over STLS downloads and deletes (IMAP sees the EXPUNGEs)", async () => {
    await deliver(srv, 'alice@example.test', 'poplib one', 'First.\r\n.dot line\r\n');
    await deliver(srv, 'alice@example.test', 'poplib two', 'Second.\r\n');
    const expected = await storedCrlf(srv, 'example.test/alice');
    const kept = await poplib('ssl', srv.pop3sPort, 'alice@example.test', 'alice-pw', 'keep');
    assert.match(kept.welcome, /^\+OK /);
    assert.deepEqual(kept.caps, ['AUTH-RESP-CODE', 'CAPA', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'SASL', 'TOP', 'UIDL', 'USER']);
    assert.deepEqual(kept.sasl, ['PLAIN', 'LOGIN']);
    assert.equal(kept.stat[0], 2);
    const got = kept.messages.map((m) => Buffer.from(m.data, 'base64').toString('latin1'));
    assert.deepEqual([...got].sort(), expected, 'byte for byte, dot line un-stuffed');
    for (const [i, m] of kept.messages.entries()) {
      assert.equal(m.octets, Buffer.byteLength(got[i]!, 'latin1'), 'poplib counts what LIST announced');
      assert.equal(m.resp, `+OK ${m.octets} octets`);
      assert.equal(kept.list[i], `${i + 1} ${m.octets}`);
    }
    assert.equal(
      kept.stat[1],
      kept.messages.reduce((n, m) => n + m.octets, 0),
    );
    assert.equal(kept.top.at(-1), '', 'TOP 1 0 ends with the blank line after the header');
    assert.match(kept.quit, /^\+OK/);
    await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, 'example.test/alice')), 5000, 'lock released');
    assert.equal((await srv.messages('example.test/alice')).length, 2, 'kept');

    const imap = await imapLoggedIn(srv, 'alice@example.test', 'alice-pw');
    await imap.cmd('SELECT INBOX');
    const deleted = await poplib('stls', srv.pop3Port, 'alice@example.test', 'alice-pw', 'delete');
    assert.ok(deleted.before_tls!.includes('STLS') && !deleted.before_tls!.includes('USER'));
    assert.deepEqual(deleted.uidl, kept.uidl, 'the same UIDLs in the next session');
    assert.deepEqual(
      deleted.messages.map((m) => m.data),
      kept.messages.map((m) => m.data),
    );
    assert.equal(deleted.quit, '+OK Logging out, messages deleted.');
    assert.deepEqual(await srv.messages('example.test/alice'), [], 'deleted after QUIT');
    const noop = await imap.cmd('NOOP');
    assert.equal(noop.untagged.filter((l) => /^[12] EXPUNGE$/.test(l)).length, 2, noop.untagged.join('\n'));
    await imap.logout();
  });

  it('fetchmail (with an MDA writing files) downloads with keep and UIDL, then with delete over STLS', async () => {
    const fetchmail = await run('sh', ['-c', 'command -v fetchmail']).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    if (!fetchmail) throw new Error('fetchmail is not installed: apt-get install fetchmail (.ci/run installs it)');
    await deliver(srv, 'bob@example.test', 'fetchmail one', 'One.\r\n..two dots\r\n');
    await deliver(srv, 'bob@example.test', 'fetchmail two', 'Two.\r\n');
    const work = await mkdtemp(path.join(os.tmpdir(), 'maild-fetchmail-'));
    const out = path.join(work, 'out');
    await mkdir(out);
    // Server options (port, uidl) before the user, user options (ssl, keep, mda) after it.
    const rc = (server: string, user: string) =>
      `set no syslog\npoll 127.0.0.1 with proto POP3 ${server}\n` +
      `  user "bob@example.test" there with password "bob-pw" is "${os.userInfo().username}" here\n` +
      `  options ${user} no sslcertck mda "/bin/sh -c 'cat > $(mktemp ${out}/msg.XXXXXX)'"\n`;
    const fetch = async (server: string, user: string): Promise<number> => {
      const file = path.join(work, 'fetchmailrc');
      await writeFile(file, rc(server, user));
      await chmod(file, 0o600);
      const args = ['-N', '--nosyslog', '-f', file, '-i', path.join(work, 'idfile'), '--pidfile', path.join(work, 'pid')];
      return run(fetchmail, args, { timeout: 60_000, env: { ...process.env, HOME: work } }).then(
        () => 0,
        (err: { code?: number; stderr?: string }) => {
          if (err.code === 1) return 1; // "no mail"
          throw new Error(`fetchmail exited with ${err.code}: ${err.stderr}`);
        },
      );
    };
    const downloaded = async () => {
      const names = (await readdir(out)).sort();
      return Promise.all(names.map((n) => readFile(path.join(out, n), 'latin1')));
    };
    try {
      // Keep, remembering UIDLs: a second run fetches nothing new.
      assert.equal(await fetch(`port ${srv.pop3sPort} uidl`, 'ssl keep'), 0);
      let files = await downloaded();
      assert.equal(files.length, 2);
      assert.ok(
        files.some((f) => /Subject: fetchmail one/.test(f) && /\n\.\.two dots\r?\n/.test(f)),
        'the dotted line arrives un-stuffed',
      );
      assert.ok(files.some((f) => /Subject: fetchmail two/.test(f)));
      assert.equal((await srv.messages('example.test/bob')).length, 2, 'kept on the server');
      await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, 'example.test/bob')), 5000, 'lock released');
      assert.equal(await fetch(`port ${srv.pop3sPort} uidl`, 'ssl keep'), 1, 'nothing new by UIDL');
      assert.equal((await downloaded()).length, 2);
      // Then a new message and a run that deletes, over STLS on the plain port.
      await deliver(srv, 'bob@example.test', 'fetchmail three', 'Three.\r\n');
      await waitFor(() => !isPop3Locked(path.join(srv.mailRoot, 'example.test/bob')), 5000, 'lock released');
      assert.equal(await fetch(`port ${srv.pop3Port}`, 'sslproto "tls1.2+" nokeep fetchall'), 0);
      files = await downloaded();
      assert.equal(files.length, 5);
      assert.ok(files.some((f) => /Subject: fetchmail three/.test(f)));
      assert.deepEqual(await srv.messages('example.test/bob'), [], 'deleted on the server');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
