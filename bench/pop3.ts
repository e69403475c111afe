/**
 * POP3 figures of the compiled daemon:
 *   npm run bench:pop3 [-- --mailboxes 1000 --messages 3 --size 4096 --concurrency 20 --retr-mb 100 --retr-runs 3 --scheme PLAIN]
 *
 * 1. Logins: one session per mailbox (--mailboxes, each with --messages messages of --size
 *    bytes written as Maildir files), --concurrency at a time, each doing what a client checking
 *    for mail does: greeting, USER + PASS, STAT, UIDL, QUIT. Three passes: over implicit TLS on
 *    mailboxes never opened before (the first login gives the UIDs: dovecot-uidlist, new/ to
 *    cur/, maild-index), again over TLS, and in clear text (127.0.0.1 is trusted). Passwords are
 *    {PLAIN} by default so that the figure is POP3's; --scheme SHA512-CRYPT shows the cost of a
 *    real hash (about 17 ms each, in the worker pool).
 * 2. RETR: one message of --retr-mb MB, retrieved --retr-runs times over TLS and in clear text
 *    on one connection: MB/s of message bytes, timed at the client from RETR to the final ".".
 * 3. RETR of many small messages: one session (clear text) retrieves --small-messages messages of
 *    --size bytes one after the other, each answer awaited: messages per second (and, as the
 *    floor set by the client and the kernel, the time of a NOOP round trip). With
 *    --versus-dovecot (as root) the same pass also runs against Debian's Dovecot pop3 on its own
 *    copy of the mailbox, alternating with maild --rounds times, and the ratio is printed.
 * The daemon's peak RSS is printed at the end.
 */
import { spawn } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PasswordService } from '../src/directory/passwords/index.js';
import { selfSignedCert } from '../test/helpers/self-signed.js';
import { DOVECOT_UID, chownTree, startDovecot, type RunningServer } from './dovecot.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '..', path.basename(path.dirname(path.dirname(SELF))) === 'dist' ? '..' : '.');

const { values } = parseArgs({
  options: {
    mailboxes: { type: 'string', default: '1000' },
    messages: { type: 'string', default: '3' },
    size: { type: 'string', default: '4096' },
    concurrency: { type: 'string', default: '20' },
    'retr-mb': { type: 'string', default: '100' },
    'retr-runs': { type: 'string', default: '3' },
    scheme: { type: 'string', default: 'PLAIN' },
    'small-messages': { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    'versus-dovecot': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
});
const MAILBOXES = Number(values.mailboxes);
const MESSAGES = Number(values.messages);
const SIZE = Number(values.size);
const CONCURRENCY = Number(values.concurrency);
const RETR_BYTES = Math.round(Number(values['retr-mb']) * 1024 * 1024);
const RETR_RUNS = Number(values['retr-runs']);
const SMALL_MESSAGES = Number(values['small-messages']);
const ROUNDS = Number(values.rounds);

const now = () => performance.now();

// ---- a light POP3 client ---------------------------------------------------------------------

/** Reads status lines and multi-line responses without keeping message bytes. */
class Pop3Conn {
  readonly socket: net.Socket;
  #partial = '';
  #waiter: { multi: boolean; resolve: (r: { status: string; bytes: number }) => void; reject: (e: Error) => void } | undefined;
  #status: string | undefined;
  #bytes = 0;
  /** Last bytes of a multi-line body, to find "\r\n.\r\n" across chunks. */
  #tail = Buffer.alloc(0);

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#waiter?.reject(err));
    socket.on('close', () => this.#waiter?.reject(new Error('connection closed')));
  }

  static connect(port: number, secure: boolean): Promise<Pop3Conn> {
    return new Promise((resolve, reject) => {
      const socket = secure
        ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(new Pop3Conn(socket)))
        : net.connect(port, '127.0.0.1', () => resolve(new Pop3Conn(socket)));
      socket.once('error', reject);
    });
  }

  #onData(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && this.#waiter) {
      if (this.#status === undefined) {
        const nl = chunk.indexOf(10, pos);
        if (nl === -1) {
          this.#partial += chunk.toString('latin1', pos);
          return;
        }
        const line = (this.#partial + chunk.toString('latin1', pos, nl)).replace(/\r$/, '');
        this.#partial = '';
        pos = nl + 1;
        if (!this.#waiter.multi || !line.startsWith('+OK')) {
          this.#done(line);
          continue;
        }
        this.#status = line;
        this.#bytes = 0;
        this.#tail = Buffer.from('\r\n');
        continue;
      }
      // Inside a multi-line body: look for CRLF "." CRLF (the status line's CRLF counts as a start).
      const rest = chunk.subarray(pos);
      const joined = Buffer.concat([this.#tail, rest]);
      const end = joined.indexOf('\r\n.\r\n');
      if (end === -1) {
        this.#bytes += rest.length;
        this.#tail = Buffer.from(joined.subarray(Math.max(0, joined.length - 4)));
        return;
      }
      const consumed = end + 5 - this.#tail.length;
      this.#bytes += end + 2 - this.#tail.length;
      pos += consumed;
      const status = this.#status;
      this.#status = undefined;
      this.#done(status);
    }
  }

  #done(status: string): void {
    const w = this.#waiter!;
    this.#waiter = undefined;
    w.resolve({ status, bytes: Math.max(0, this.#bytes) });
    this.#bytes = 0;
  }

  /** Sends `line` (or nothing: the greeting) and reads one response. */
  send(line: string | null, multi = false): Promise<{ status: string; bytes: number }> {
    return new Promise((resolve, reject) => {
      this.#waiter = { multi, resolve, reject };
      if (line !== null) this.socket.write(`${line}\r\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

function expectOk(r: { status: string }, what: string): void {
  if (!r.status.startsWith('+OK')) throw new Error(`${what}: ${r.status}`);
}

// ---- setup -------------------------------------------------------------------------------------

function smallMessage(i: number): Buffer {
  const header = `From: bench@remote.example\nTo: user@bench.example\nSubject: bench ${i}\nMessage-ID: <${i}@bench.remote.example>\n\n`;
  const line = `${'x'.repeat(75)}\n`;
  let body = '';
  while (header.length + body.length + line.length <= SIZE) body += line;
  return Buffer.from(header + body, 'latin1');
}

async function writeMaildirMessage(
  maildir: string,
  unique: string,
  data: Buffer | ((fh: Awaited<ReturnType<typeof open>>) => Promise<{ size: number; lfs: number }>),
): Promise<void> {
  const tmp = path.join(maildir, 'tmp', unique);
  let size: number;
  let lfs: number;
  if (Buffer.isBuffer(data)) {
    await writeFile(tmp, data);
    size = data.length;
    lfs = data.toString('latin1').split('\n').length - 1;
  } else {
    const fh = await open(tmp, 'w');
    ({ size, lfs } = await data(fh));
    await fh.close();
  }
  const { rename } = await import('node:fs/promises');
  await rename(tmp, path.join(maildir, 'new', `${unique},S=${size},W=${size + lfs}`));
}

async function startDaemon(dir: string): Promise<{ daemon: ReturnType<typeof spawn>; ports: Record<string, number> }> {
  const profileArgs = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
  const daemon = spawn(process.execPath, [...profileArgs, path.join(ROOT, 'dist/src/main.js'), '--config', path.join(dir, 'maild.yaml')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    let buf = '';
    const found: Record<string, number> = {};
    daemon.stdout!.setEncoding('utf8');
    daemon.stdout!.on('data', (d: string) => {
      buf += d;
      for (const m of buf.matchAll(/"listener":"(pop3s?)"[^\n]*"port":(\d+)[^\n]*"msg":"listening"/g)) found[m[1]!] = Number(m[2]);
      if (found.pop3 && found.pop3s) resolve(found);
      if (buf.length > 1 << 20) buf = buf.slice(-4096);
    });
    daemon.on('exit', (code) => reject(new Error(`daemon exited with ${code}: ${buf.slice(-2000)}`)));
  });
  return { daemon, ports };
}

// ---- phases ------------------------------------------------------------------------------------

async function loginPass(
  port: number,
  secure: boolean,
  users: string[],
): Promise<{ seconds: number; sessions: number; perSecond: number; p50ms: number; p99ms: number }> {
  let next = 0;
  const latencies: number[] = [];
  const started = now();
  const worker = async () => {
    while (next < users.length) {
      const user = users[next++]!;
      const t0 = now();
      const c = await Pop3Conn.connect(port, secure);
      try {
        expectOk(await c.send(null), 'greeting');
        expectOk(await c.send(`USER ${user}`), 'USER');
        expectOk(await c.send('PASS x'), `PASS ${user}`);
        const stat = await c.send('STAT');
        expectOk(stat, 'STAT');
        if (Number(stat.status.split(' ')[1]) !== MESSAGES) throw new Error(`STAT of ${user}: ${stat.status}`);
        expectOk(await c.send('UIDL', true), 'UIDL');
        expectOk(await c.send('QUIT'), 'QUIT');
      } finally {
        c.close();
      }
      latencies.push(now() - t0);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    seconds: Number(seconds.toFixed(2)),
    sessions: users.length,
    perSecond: Math.round(users.length / seconds),
    p50ms: Number(latencies[Math.floor(latencies.length / 2)]!.toFixed(1)),
    p99ms: Number(latencies[Math.floor(latencies.length * 0.99)]!.toFixed(1)),
  };
}

async function retrRuns(port: number, secure: boolean, vsize: number): Promise<{ runs: number[]; best: number; median: number }> {
  const c = await Pop3Conn.connect(port, secure);
  expectOk(await c.send(null), 'greeting');
  expectOk(await c.send('USER big@bench.example'), 'USER');
  expectOk(await c.send('PASS x'), 'PASS big');
  const rates: number[] = [];
  for (let i = 0; i < RETR_RUNS; i++) {
    const t0 = now();
    const r = await c.send('RETR 1', true);
    const seconds = (now() - t0) / 1000;
    expectOk(r, 'RETR');
    // The body on the wire is the message plus one stuffing dot per line starting with "." (none here).
    if (r.bytes !== vsize) throw new Error(`RETR returned ${r.bytes} bytes, expected ${vsize}`);
    rates.push(Number((vsize / 1048576 / seconds).toFixed(1)));
  }
  expectOk(await c.send('QUIT'), 'QUIT');
  c.close();
  const sorted = [...rates].sort((a, b) => a - b);
  return { runs: rates, best: sorted.at(-1)!, median: sorted[Math.floor(sorted.length / 2)]! };
}

/** RETR 1..n in one session, each answer awaited: messages per second and the mean time per RETR. */
async function smallRetrPass(
  port: number,
  user: string,
  password: string,
): Promise<{ perSecond: number; msPerRetr: number; msPerNoop: number }> {
  const c = await Pop3Conn.connect(port, false);
  expectOk(await c.send(null), 'greeting');
  expectOk(await c.send(`USER ${user}`), 'USER');
  expectOk(await c.send(`PASS ${password}`), `PASS ${user}`);
  const stat = await c.send('STAT');
  if (Number(stat.status.split(' ')[1]) !== SMALL_MESSAGES) throw new Error(`STAT of ${user}: ${stat.status}`);
  // The floor: a round trip that reads nothing (the client's and the kernel's share of a RETR).
  const n0 = now();
  for (let i = 1; i <= SMALL_MESSAGES; i++) expectOk(await c.send('NOOP'), 'NOOP');
  const noopMs = (now() - n0) / SMALL_MESSAGES;
  const t0 = now();
  for (let i = 1; i <= SMALL_MESSAGES; i++) {
    const r = await c.send(`RETR ${i}`, true);
    expectOk(r, `RETR ${i}`);
    if (r.bytes < SIZE) throw new Error(`RETR ${i} returned ${r.bytes} bytes`);
  }
  const seconds = (now() - t0) / 1000;
  expectOk(await c.send('QUIT'), 'QUIT');
  c.close();
  return {
    perSecond: Math.round(SMALL_MESSAGES / seconds),
    msPerRetr: Number(((seconds * 1000) / SMALL_MESSAGES).toFixed(3)),
    msPerNoop: Number(noopMs.toFixed(3)),
  };
}

async function main(): Promise<void> {
  if (values['versus-dovecot'] && process.getuid?.() !== 0)
    throw new Error('--versus-dovecot runs as root (Dovecot serves the mail as nobody)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-bench-pop3-'));
  const users = Array.from({ length: MAILBOXES }, (_, i) => `user${i}@bench.example`);
  let hash = '{PLAIN}x';
  if (values.scheme !== 'PLAIN') {
    const passwords = new PasswordService({ defaultScheme: 'CRYPT', newScheme: values.scheme as never });
    hash = await passwords.hash('x', values.scheme as never);
    await passwords.close();
  }
  await writeFile(
    path.join(dir, 'directory.yaml'),
    `domains: [bench.example]\nusers:\n${[...users, 'big@bench.example', 'many@bench.example'].map((u) => `  ${u}: {password: ${JSON.stringify(hash)}}\n`).join('')}`,
  );
  await writeFile(
    path.join(dir, 'maild.yaml'),
    [
      'hostname: bench.test',
      // Serves as whoever runs the benchmark (root included: the daemon would refuse root without user:).
      'user: root',
      'data_dir: data',
      'mail: {root: mail}',
      'listeners:',
      '  - {name: pop3, protocol: pop3, address: 127.0.0.1, port: 0, tls: starttls}',
      '  - {name: pop3s, protocol: pop3, address: 127.0.0.1, port: 0, tls: implicit}',
      'directory: {file: {path: directory.yaml}}',
      `limits: {connections_per_ip: ${CONCURRENCY + 10}, connections: ${CONCURRENCY + 100}}`,
      'auth: {cleartext: trusted_networks}',
      'trusted_networks: [127.0.0.1]',
      'log: {level: info}',
      '',
    ].join('\n'),
  );
  // The mailboxes: Maildir files in new/, as a delivery leaves them.
  const t = Math.floor(Date.now() / 1000) - 3600;
  const payloads = Array.from({ length: MESSAGES }, (_, i) => smallMessage(i));
  for (const [n, u] of users.entries()) {
    const maildir = path.join(dir, 'mail/bench.example', u.split('@')[0]!);
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(maildir, sub), { recursive: true });
    for (let i = 0; i < MESSAGES; i++) await writeMaildirMessage(maildir, `${t + i}.M${n}P1Q${i}.bench`, payloads[i]!);
  }
  const bigDir = path.join(dir, 'mail/bench.example/big');
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(bigDir, sub), { recursive: true });
  let bigVsize = 0;
  await writeMaildirMessage(bigDir, `${t}.M0P1Q0.big`, async (fh) => {
    const header = Buffer.from('From: bench@remote.example\nTo: big@bench.example\nSubject: big\n\n', 'latin1');
    const block = Buffer.from(`${'y'.repeat(75)}\n`.repeat(13_981), 'latin1'); // ~1 MiB
    await fh.write(header);
    let size = header.length;
    let lfs = 4;
    while (size + block.length <= RETR_BYTES) {
      await fh.write(block);
      size += block.length;
      lfs += 13_981;
    }
    bigVsize = size + lfs;
    return { size, lfs };
  });

  const manyDir = path.join(dir, 'mail/bench.example/many');
  for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(manyDir, sub), { recursive: true });
  for (let i = 0; i < SMALL_MESSAGES; i++) await writeMaildirMessage(manyDir, `${t + i}.M${i}P2Q${i}.many`, smallMessage(i));
  let dovecot: RunningServer | undefined;
  if (values['versus-dovecot']) {
    // Dovecot's mail processes (nobody) reach their copy of the mailbox through the work folder.
    await chmod(dir, 0o755);
    const work = path.join(dir, 'dovecot');
    await mkdir(work, { mode: 0o755 });
    await cp(manyDir, path.join(work, 'mail/bench.example/many'), { recursive: true });
    await chownTree(path.join(work, 'mail'), DOVECOT_UID);
    const cert = await selfSignedCert(work, 'bench.test');
    dovecot = await startDovecot({
      work,
      mailRoot: path.join(work, 'mail'),
      protocol: 'pop3',
      tls: false,
      cert,
      users: ['many@bench.example'],
      password: 'x',
      connectionsPerUserIp: 10,
    });
  }

  const { daemon, ports } = await startDaemon(dir);
  try {
    const tlsFirst = await loginPass(ports.pop3s!, true, users);
    const tlsAgain = await loginPass(ports.pop3s!, true, users);
    const clear = await loginPass(ports.pop3!, false, users);
    const retrTls = await retrRuns(ports.pop3s!, true, bigVsize);
    const retrClear = await retrRuns(ports.pop3!, false, bigVsize);
    const small = { maild: [] as number[], dovecot: [] as number[], maildMs: [] as number[], dovecotMs: [] as number[] };
    const noop = { maild: [] as number[], dovecot: [] as number[] };
    for (let round = 0; round < (dovecot ? ROUNDS : 1); round++) {
      const m = await smallRetrPass(ports.pop3!, 'many@bench.example', 'x');
      small.maild.push(m.perSecond);
      small.maildMs.push(m.msPerRetr);
      noop.maild.push(m.msPerNoop);
      if (!dovecot) continue;
      const d = await smallRetrPass(dovecot.port, 'many@bench.example', 'x');
      small.dovecot.push(d.perSecond);
      small.dovecotMs.push(d.msPerRetr);
      noop.dovecot.push(d.msPerNoop);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const status = await readFile(`/proc/${daemon.pid}/status`, 'utf8').catch(() => '');
    const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    console.log(
      JSON.stringify(
        {
          benchmark: 'pop3',
          mailboxes: MAILBOXES,
          messages_per_mailbox: MESSAGES,
          message_bytes: SIZE,
          concurrency: CONCURRENCY,
          password_scheme: values.scheme,
          logins: {
            session: 'greeting, USER, PASS, STAT, UIDL, QUIT',
            tls_first_open: tlsFirst,
            tls_again: tlsAgain,
            cleartext_again: clear,
          },
          retr: {
            message_mb: Number((bigVsize / 1048576).toFixed(1)),
            tls_mb_per_s: retrTls,
            cleartext_mb_per_s: retrClear,
          },
          retr_small: {
            messages: SMALL_MESSAGES,
            message_bytes: SIZE,
            maild_messages_per_s: small.maild,
            maild_ms_per_retr: small.maildMs,
            maild_ms_per_noop: noop.maild,
            ...(dovecot
              ? {
                  dovecot_messages_per_s: small.dovecot,
                  dovecot_ms_per_retr: small.dovecotMs,
                  dovecot_ms_per_noop: noop.dovecot,
                  ratio_of_medians: Number((median(small.maild) / median(small.dovecot)).toFixed(2)),
                }
              : {}),
          },
          load_average: os.loadavg().map((l) => Number(l.toFixed(2))),
          daemon_peak_rss_mb: Number((peakKb / 1024).toFixed(1)),
          cpus: os.cpus().length,
          node: process.version,
        },
        null,
        2,
      ),
    );
  } finally {
    await dovecot?.stop();
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.on('exit', r));
    if (!values.keep) await rm(dir, { recursive: true, force: true });
    else console.error(`kept ${dir}`);
  }
}

await main();
