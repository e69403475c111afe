/**
 * Delivery throughput of the MX listener to durable Maildir:
 *   npm run bench:smtp [-- --messages 10000 --connections 20 --mailboxes 20 --size 4096]
 * Starts the compiled daemon on a fresh mail root, sends the messages over N concurrent
 * connections (MAIL/RCPT/DATA pipelined, as Postfix's smtp client does), checks that every
 * acknowledged message is in new/, and prints messages/s and the daemon's peak RSS.
 * `--checks on` runs the inbound sender authentication (SPF, DKIM, DMARC, ARC) on every message,
 * against a DNS server in this process that publishes the sender's SPF, DKIM key and DMARC
 * policy; the messages are DKIM-signed, so every check passes. `--checks off` (the default)
 * measures the delivery path alone. `--sieve N` gives every mailbox an active Sieve script of N
 * rules (header, address and size tests that do not match, so each message is kept in INBOX).
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { peakRssMb, runSender, startDaemon, stopDaemon } from './lib.js';
import { DkimKeys, generateKey } from '../src/queue/dkim.js';
import { startDnsServer, type DnsServer } from '../test/helpers/dns-server.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '20' },
    mailboxes: { type: 'string', default: '20' },
    size: { type: 'string', default: '4096' },
    keep: { type: 'boolean', default: false },
    /** Write a V8 CPU profile of the daemon into this directory. */
    profile: { type: 'string' },
    checks: { type: 'string', default: 'off' },
    sieve: { type: 'string', default: '0' },
  },
});
const CHECKS = values.checks === 'on';
const SIEVE_RULES = Number(values.sieve);

/** A filter of `rules` rules as mail clients write them; none matches the benchmark's messages. */
function sieveScript(rules: number): string {
  const lines = ['require ["fileinto", "imap4flags", "reject"];'];
  for (let i = 0; i < rules; i++) {
    if (i % 3 === 0) lines.push(`if header :contains "subject" "project-${i}" { fileinto "Projects/P${i}"; stop; }`);
    else if (i % 3 === 1) lines.push(`if address :is "from" "sender${i}@lists.example" { addflag "\\Seen"; fileinto "Lists"; }`);
    else lines.push(`if allof (size :over 10M, header :matches "x-mailer" "*bulk-${i}*") { discard; stop; }`);
  }
  return `${lines.join('\n')}\n`;
}
const MESSAGES = Number(values.messages);
const CONNECTIONS = Number(values.connections);
const MAILBOXES = Number(values.mailboxes);
const SIZE = Number(values.size);

function message(i: number): string {
  const header = `From: bench@remote.example\r\nTo: user@bench.example\r\nSubject: bench ${i}\r\nMessage-ID: <${i}@bench.remote.example>\r\n\r\n`;
  const line = `${'x'.repeat(76)}\r\n`;
  let body = '';
  while (header.length + body.length + line.length <= SIZE) body += line;
  return header + body + '.'.repeat(Math.max(0, SIZE - header.length - body.length - 2)) + '\r\n';
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-bench-'));
  const users = Array.from({ length: MAILBOXES }, (_, i) => `user${i}@bench.example`);
  await writeFile(
    path.join(dir, 'directory.yaml'),
    `domains: [bench.example]\nusers:\n${users.map((u) => `  ${u}: {password: "{PLAIN}x"}\n`).join('')}`,
  );
  let dns: DnsServer | undefined;
  let payloads = Array.from({ length: 16 }, (_, i) => message(i));
  if (CHECKS) {
    const key = await generateKey(path.join(dir, 'sender-keys'), 'remote.example', 'bench');
    dns = await startDnsServer({
      'remote.example': { txt: ['v=spf1 ip4:127.0.0.1 -all'] },
      '_dmarc.remote.example': { txt: ['v=DMARC1; p=reject'] },
      [key.name]: { txt: [key.record] },
    });
    const signer = new DkimKeys({ dir: path.join(dir, 'sender-keys'), selector: 'bench', logger: pino({ level: 'silent' }) });
    payloads = await Promise.all(payloads.map(async (p) => (await signer.signatureFor('remote.example', Buffer.from(p)))! + p));
  }
  const inbound = CHECKS ? `dns: {servers: ["127.0.0.1:${dns!.port}"]}\n` : 'inbound: {authentication: {enabled: false}}\n';
  await writeFile(
    path.join(dir, 'maild.yaml'),
    `hostname: bench.test\nuser: root\ndata_dir: data\nmail: {root: mail}\nlisteners:\n  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}\ndirectory: {file: {path: directory.yaml}}\nlimits: {connections_per_ip: ${CONNECTIONS + 5}}\nlog: {level: info}\n${inbound}`,
  );
  if (SIEVE_RULES > 0) {
    const { mkdir, symlink } = await import('node:fs/promises');
    for (const u of users) {
      const home = path.join(dir, 'mail/bench.example', u.split('@')[0]!);
      await mkdir(path.join(home, 'sieve'), { recursive: true });
      await writeFile(path.join(home, 'sieve', 'rules.sieve'), sieveScript(SIEVE_RULES));
      await symlink('sieve/rules.sieve', path.join(home, '.dovecot.sieve'));
    }
  }
  const extraNode = process.env.BENCH_DAEMON_NODE_ARGS ? process.env.BENCH_DAEMON_NODE_ARGS.split(' ') : [];
  const profileArgs = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile)}`] : [];
  const { daemon, port } = await startDaemon(path.join(dir, 'maild.yaml'), [...extraNode, ...profileArgs]);

  let next = 0;
  let acknowledged = 0;
  let failed = 0;
  const started = process.hrtime.bigint();

  const runConnection = () =>
    runSender({
      port,
      sender: 'bench@remote.example',
      next: () => {
        if (next >= MESSAGES) return undefined;
        const i = next++;
        return { rcpt: users[i % users.length]!, payload: payloads[i % payloads.length]! };
      },
      onResult: (ok) => (ok ? acknowledged++ : failed++),
    });

  await Promise.all(Array.from({ length: CONNECTIONS }, runConnection));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks (100/s on Linux).
  const statFields = (await readFile(`/proc/${daemon.pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ') ?? [];
  const daemonCpu = { user: Number(statFields[11]) / 100, system: Number(statFields[12]) / 100 };
  const clientCpu = process.cpuUsage();
  const peakMb = await peakRssMb(daemon.pid);
  await stopDaemon(daemon);
  await dns?.close();

  let stored = 0;
  for (const u of users) stored += (await readdir(path.join(dir, 'mail/bench.example', u.split('@')[0]!, 'new')).catch(() => [])).length;
  console.log(
    JSON.stringify(
      {
        benchmark: 'smtp-delivery',
        messages: MESSAGES,
        connections: CONNECTIONS,
        mailboxes: MAILBOXES,
        message_bytes: SIZE,
        inbound_checks: CHECKS ? 'spf, dkim, dmarc, arc (all pass; local DNS server)' : 'off',
        sieve_rules: SIEVE_RULES,
        acknowledged,
        failed,
        stored_in_new: stored,
        seconds: Number(seconds.toFixed(2)),
        messages_per_second: Math.round(acknowledged / seconds),
        peak_rss_mb: peakMb,
        daemon_cpu_seconds: daemonCpu,
        loadgen_cpu_seconds: { user: Number((clientCpu.user / 1e6).toFixed(2)), system: Number((clientCpu.system / 1e6).toFixed(2)) },
        cpus: os.cpus().length,
        node: process.version,
      },
      null,
      2,
    ),
  );
  if (stored !== acknowledged) {
    console.error(`MISMATCH: ${acknowledged} acknowledged but ${stored} stored`);
    process.exitCode = 1;
  }
  if (!values.keep) await rm(dir, { recursive: true, force: true });
  else console.error(`kept ${dir}`);
}

await main();
