/**
 * IMAP side by side with Dovecot: the same mixed workload against maild and against Dovecot
 * (Debian's dovecot-imapd, started here with a passwd-file and a configuration of its own), each
 * on its own copy of the same Maildirs and users, in alternating runs:
 *   npm run bench:imap-mix [-- --clients 20 --users 100 --messages 200 --seconds 30 --rounds 2
 *                              --mode long|short --tls off|on --seed 1 --server both|maild|dovecot
 *                              --blocking-reads on|off]
 * `long`: every client logs in once and keeps its session (as mail clients do all day), selects
 * INBOX and runs commands; `short`: every command is a session of its own (login, SELECT, the
 * command, LOGOUT). The mix: LIST, STATUS, UID FETCH of all flags, FETCH of a body, STORE of a
 * flag, APPEND, and STORE \Deleted + EXPUNGE. Prints operations per second per command for each
 * server, the ratio maild/Dovecot, errors (NO/BAD/failures) and mismatches (a FETCH without its
 * body), and the machine's load average.
 */
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DOVECOT_UID, chownTree, processCpu, startDovecot } from './dovecot.js';
import { startDaemon, stopDaemon } from './lib.js';
import { ImapTestClient } from '../test/helpers/imap-client.js';
import { selfSignedCert } from '../test/helpers/self-signed.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '20' },
    users: { type: 'string', default: '100' },
    messages: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '1' },
    mode: { type: 'string', default: 'long' },
    tls: { type: 'string', default: 'off' },
    seed: { type: 'string', default: '1' },
    server: { type: 'string', default: 'both' },
    keep: { type: 'boolean', default: false },
    'blocking-reads': { type: 'string', default: 'on' },
  },
});
const CLIENTS = Number(values.clients);
const USERS = Number(values.users);
const MESSAGES = Number(values.messages);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const LONG = values.mode !== 'short';
const TLS = values.tls === 'on';
const DOMAIN = 'bench.example';
const PASSWORD = 'bench-pw';

const COMMANDS = ['list', 'status', 'fetch_flags', 'fetch_body', 'store', 'append', 'expunge'] as const;
type Command = (typeof COMMANDS)[number];
/** How often each command comes up, as a mail client's day mixes them. */
const WEIGHTS: Record<Command, number> = { list: 10, status: 10, fetch_flags: 20, fetch_body: 25, store: 15, append: 10, expunge: 10 };

/** A small deterministic generator (the same sequence of commands for both servers). */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function pick(random: () => number): Command {
  const total = Object.values(WEIGHTS).reduce((a, b) => a + b, 0);
  let r = random() * total;
  for (const c of COMMANDS) {
    r -= WEIGHTS[c];
    if (r < 0) return c;
  }
  return 'fetch_flags';
}

function message(n: number, size = 4096): string {
  const header = `From: sender${n % 17}@remote.example\nTo: user@${DOMAIN}\nSubject: message ${n}\nMessage-ID: <${n}.${Date.now()}@remote.example>\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n\n`;
  let body = '';
  const line = `${'lorem ipsum '.repeat(6).trim()}\n`;
  while (header.length + body.length + line.length <= size) body += line;
  return header + body;
}

/** The Maildirs of every user: INBOX with `messages` messages (some seen, some flagged), Sent and Archive. */
async function makeMaildirs(root: string): Promise<void> {
  for (let u = 0; u < USERS; u++) {
    const home = path.join(root, DOMAIN, `u${u}`);
    for (const folder of ['', '.Sent', '.Archive'])
      for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(home, folder, sub), { recursive: true });
    const now = Math.floor(Date.now() / 1000) - MESSAGES;
    for (let i = 0; i < MESSAGES; i++) {
      const text = message(i);
      const size = Buffer.byteLength(text);
      const lines = text.split('\n').length - 1;
      const flags = i % 3 === 0 ? 'S' : i % 11 === 0 ? 'FS' : '';
      const name = `${now + i}.M${i}P1.bench,S=${size},W=${size + lines}:2,${flags}`;
      await writeFile(path.join(home, 'cur', name), text);
    }
    for (let i = 0; i < 20; i++) {
      const text = message(1000 + i);
      const size = Buffer.byteLength(text);
      await writeFile(path.join(home, '.Sent', 'cur', `${now + i}.M${i}P2.bench,S=${size}:2,S`), text);
    }
  }
}

interface Target {
  name: 'maild' | 'dovecot';
  port: number;
  stop(): Promise<void>;
  pid: number | undefined;
}

async function startMaild(work: string, mailRoot: string, cert: { cert: string; key: string }): Promise<Target> {
  const users = Array.from({ length: USERS }, (_, u) => `  u${u}@${DOMAIN}: {password: "{PLAIN}${PASSWORD}"}`).join('\n');
  await writeFile(path.join(work, 'directory.yaml'), `domains: [${DOMAIN}]\nusers:\n${users}\n`);
  const listener = TLS
    ? '{name: imaps, protocol: imap, address: 127.0.0.1, port: 0, tls: implicit}'
    : '{name: imap, protocol: imap, address: 127.0.0.1, port: 0, tls: none}';
  await writeFile(
    path.join(work, 'maild.yaml'),
    [
      'hostname: bench.test',
      'user: root',
      `data_dir: ${path.join(work, 'data')}`,
      `mail: {root: ${mailRoot}, blocking_reads: ${values['blocking-reads'] !== 'off'}}`,
      `listeners:\n  - ${listener}`,
      `directory: {file: {path: ${path.join(work, 'directory.yaml')}}}`,
      `tls: {cert: ${cert.cert}, key: ${cert.key}}`,
      'trusted_networks: [127.0.0.0/8]',
      'auth: {cleartext: trusted_networks, failure_delay: 0}',
      `limits: {connections_per_ip: ${CLIENTS * 4 + 20}}`,
      `imap: {hierarchy_separator: "/", connections_per_user_ip: ${CLIENTS + 10}}`,
      'log: {level: info}',
      '',
    ].join('\n'),
  );
  // BENCH_DAEMON_NODE_ARGS: Node options for the daemon (--cpu-prof --cpu-prof-dir=DIR, say).
  const nodeArgs = process.env.BENCH_DAEMON_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const { daemon, port } = await startDaemon(path.join(work, 'maild.yaml'), nodeArgs);
  return { name: 'maild', port, pid: daemon.pid, stop: () => stopDaemon(daemon) };
}

async function dovecotTarget(work: string, mailRoot: string, cert: { cert: string; key: string }): Promise<Target> {
  const users = Array.from({ length: USERS }, (_, u) => `u${u}@${DOMAIN}`);
  const server = await startDovecot({
    work,
    mailRoot,
    protocol: 'imap',
    tls: TLS,
    cert,
    users,
    password: PASSWORD,
    connectionsPerUserIp: CLIENTS + 10,
  });
  return { name: 'dovecot', ...server };
}

interface Tally {
  ops: Record<Command, number>;
  latencyMs: Record<Command, number>;
  logins: number;
  errors: number;
  mismatches: number;
  firstError?: string;
  firstMismatch?: string;
}

const newTally = (): Tally => ({
  ops: Object.fromEntries(COMMANDS.map((c) => [c, 0])) as Record<Command, number>,
  latencyMs: Object.fromEntries(COMMANDS.map((c) => [c, 0])) as Record<Command, number>,
  logins: 0,
  errors: 0,
  mismatches: 0,
});

async function session(target: Target, user: string, tally: Tally): Promise<{ client: ImapTestClient; exists: number }> {
  const client = await ImapTestClient.connect(target.port, { implicitTls: TLS, timeoutMs: 60_000 });
  await client.greeting();
  const login = await client.login(user, PASSWORD);
  if (login.status !== 'OK') throw new Error(`LOGIN ${user}: ${login.status} ${login.text}`);
  const selected = await client.cmd('SELECT INBOX');
  if (selected.status !== 'OK') throw new Error(`SELECT: ${selected.status} ${selected.text}`);
  tally.logins++;
  const exists = Number(/^(\d+) EXISTS/m.exec(selected.untagged.join('\n'))?.[1] ?? 0);
  return { client, exists };
}

/** Did the server report (or hint at) an expunge by another session during this command? */
function expunged(result: { untagged: string[]; text: string }): boolean {
  return result.untagged.some((l) => /^\d+ EXPUNGE$|^VANISHED /.test(l)) || /EXPUNGEISSUED/.test(result.text);
}

function mismatch(tally: Tally, what: string): void {
  tally.mismatches++;
  tally.firstMismatch ??= what;
}

/** One command of the mix in a selected INBOX; returns the message count it leaves. */
async function runCommand(client: ImapTestClient, command: Command, exists: number, random: () => number, tally: Tally): Promise<number> {
  const seq = () => 1 + Math.floor(random() * Math.max(1, exists));
  const started = performance.now();
  let result;
  switch (command) {
    case 'list':
      result = await client.cmd('LIST "" "*"');
      break;
    case 'status':
      result = await client.cmd('STATUS Sent (MESSAGES UNSEEN UIDNEXT)');
      break;
    case 'fetch_flags':
      result = await client.cmd('UID FETCH 1:* (UID FLAGS)');
      // Fewer messages than this session knows of is a mismatch, unless another session expunged some meanwhile.
      if (result.status === 'OK' && !expunged(result) && result.untagged.filter((l) => / FETCH /.test(l)).length < exists)
        mismatch(tally, `UID FETCH 1:* gave fewer than ${exists} messages`);
      break;
    case 'fetch_body': {
      if (exists === 0) return exists;
      const n = seq();
      result = await client.cmd(`FETCH ${n} (BODY.PEEK[])`);
      if (result.status === 'OK' && !expunged(result) && !result.untagged.some((l) => /BODY\[\] \{\d+\}/.test(l)))
        mismatch(tally, `FETCH ${n} (BODY.PEEK[]) of ${exists}: no body (${result.untagged.join(' | ').slice(0, 200)})`);
      break;
    }
    case 'store':
      if (exists === 0) return exists;
      result = await client.cmd(`STORE ${seq()} ${random() < 0.5 ? '+' : '-'}FLAGS.SILENT (\\Seen)`);
      break;
    case 'append': {
      const text = message(Math.floor(random() * 1e6)).replace(/\n/g, '\r\n');
      result = await client.cmd(`APPEND INBOX (\\Seen) {${Buffer.byteLength(text)}+}\r\n${text}`);
      if (result.status === 'OK') exists++;
      break;
    }
    case 'expunge': {
      if (exists === 0) return exists;
      const stored = await client.cmd(`STORE ${exists} +FLAGS.SILENT (\\Deleted)`);
      result = stored.status === 'OK' ? await client.cmd('EXPUNGE') : stored;
      if (result.status === 'OK') exists--;
      break;
    }
  }
  // EXISTS and EXPUNGE responses of other sessions' changes keep the count right.
  for (const l of result.untagged) {
    const m = /^(\d+) EXISTS$/.exec(l);
    if (m) exists = Number(m[1]);
  }
  if (result.status !== 'OK') {
    tally.errors++;
    tally.firstError ??= `${command}: ${result.status} ${result.text}`;
  } else {
    tally.ops[command]++;
    tally.latencyMs[command] += performance.now() - started;
  }
  return exists;
}

async function drive(target: Target): Promise<{ tally: Tally; seconds: number; cpu: number }> {
  const tally = newTally();
  const stopAt = Date.now() + SECONDS * 1000;
  const cpuBefore = await processCpu(target.pid);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const random = prng(Number(values.seed) * 1000 + i);
      if (LONG) {
        const user = `u${i % USERS}@${DOMAIN}`;
        let { client, exists } = await session(target, user, tally);
        while (Date.now() < stopAt) {
          try {
            exists = await runCommand(client, pick(random), exists, random, tally);
          } catch (err) {
            tally.errors++;
            tally.firstError ??= String(err);
            client.destroy();
            ({ client, exists } = await session(target, user, tally));
          }
        }
        await client.logout();
        return;
      }
      while (Date.now() < stopAt) {
        const user = `u${Math.floor(random() * USERS)}@${DOMAIN}`;
        try {
          const { client, exists } = await session(target, user, tally);
          await runCommand(client, pick(random), exists, random, tally);
          await client.logout();
        } catch (err) {
          tally.errors++;
          tally.firstError ??= String(err);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { tally, seconds, cpu: (await processCpu(target.pid)) - cpuBefore };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:imap-mix runs as root (Dovecot serves the mail as nobody)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-imap-mix-'));
  // Dovecot's mail processes (nobody) reach the Maildirs through it.
  await chmod(dir, 0o755);
  const cert = await selfSignedCert(dir, 'bench.test');
  const master = path.join(dir, 'maildirs');
  console.error(`writing ${USERS} x ${MESSAGES} messages...`);
  await makeMaildirs(master);

  const servers = values.server === 'both' ? (['maild', 'dovecot'] as const) : ([values.server as 'maild' | 'dovecot'] as const);
  const results: Record<string, Array<{ opsPerSecond: Record<string, number>; tally: Tally; cpu: number; seconds: number }>> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of servers) {
      // Each run starts from the same Maildirs, in a fresh copy.
      const work = path.join(dir, `${name}-${round}`);
      const mailRoot = path.join(work, 'mail');
      await mkdir(work, { recursive: true, mode: 0o755 });
      await cp(master, mailRoot, { recursive: true });
      if (name === 'dovecot') await chownTree(mailRoot, DOVECOT_UID);
      const target = name === 'maild' ? await startMaild(work, mailRoot, cert) : await dovecotTarget(work, mailRoot, cert);
      console.error(
        `${name}, round ${round + 1}: ${SECONDS} s, ${CLIENTS} clients, ${LONG ? 'long sessions' : 'a session per command'}${TLS ? ', TLS' : ''}`,
      );
      const { tally, seconds, cpu } = await drive(target);
      await target.stop();
      const opsPerSecond: Record<string, number> = {};
      for (const c of COMMANDS) opsPerSecond[c] = Number((tally.ops[c] / seconds).toFixed(1));
      opsPerSecond.total = Number((COMMANDS.reduce((a, c) => a + tally.ops[c], 0) / seconds).toFixed(1));
      if (!LONG) opsPerSecond.logins = Number((tally.logins / seconds).toFixed(1));
      (results[name] ??= []).push({ opsPerSecond, tally, cpu, seconds });
      await rm(work, { recursive: true, force: true });
    }
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary: Record<string, unknown> = {};
  for (const [name, runs] of Object.entries(results)) {
    const keys = Object.keys(runs[0]!.opsPerSecond);
    summary[name] = {
      ops_per_second: Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r.opsPerSecond[k]!))])),
      mean_latency_ms: Object.fromEntries(
        COMMANDS.map((c) => [
          c,
          Number(
            (
              runs.reduce((a, r) => a + r.tally.latencyMs[c], 0) /
              Math.max(
                1,
                runs.reduce((a, r) => a + r.tally.ops[c], 0),
              )
            ).toFixed(2),
          ),
        ]),
      ),
      server_cpu_seconds_per_run: runs.map((r) => Number(r.cpu.toFixed(1))),
      errors: runs.reduce((a, r) => a + r.tally.errors, 0),
      mismatches: runs.reduce((a, r) => a + r.tally.mismatches, 0),
      ...(runs.some((r) => r.tally.firstError) ? { first_error: runs.find((r) => r.tally.firstError)!.tally.firstError } : {}),
      ...(runs.some((r) => r.tally.firstMismatch) ? { first_mismatch: runs.find((r) => r.tally.firstMismatch)!.tally.firstMismatch } : {}),
    };
  }
  if (results.maild && results.dovecot) {
    const m = summary.maild as { ops_per_second: Record<string, number> };
    const d = summary.dovecot as { ops_per_second: Record<string, number> };
    summary.ratio_maild_to_dovecot = Object.fromEntries(
      Object.keys(m.ops_per_second).map((k) => [
        k,
        d.ops_per_second[k] ? Number((m.ops_per_second[k]! / d.ops_per_second[k]!).toFixed(2)) : null,
      ]),
    );
  }
  console.log(
    JSON.stringify(
      {
        benchmark: 'imap-mix',
        mode: LONG ? 'long' : 'short',
        tls: TLS,
        clients: CLIENTS,
        users: USERS,
        messages_per_user: MESSAGES,
        seconds: SECONDS,
        rounds: ROUNDS,
        seed: Number(values.seed),
        ...summary,
        load_average: os.loadavg().map((l) => Number(l.toFixed(2))),
        cpus: os.cpus().length,
        node: process.version,
      },
      null,
      2,
    ),
  );
  if (!values.keep) await rm(dir, { recursive: true, force: true });
  else console.error(`kept ${dir}`);
}

await main();
