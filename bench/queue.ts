/**
 * Submission into the outbound queue, and the queue's drain rate:
 *   npm run bench:queue [-- --messages 5000 --connections 20 --size 4096]
 * Starts the compiled daemon on a fresh mail root with a relayhost pointing at a loopback SMTP
 * sink in this process. Phase 1: N authenticated clients submit 4 KB messages to remote
 * recipients over implicit TLS (AUTH PLAIN, MAIL/RCPT/DATA pipelined); every 250 means the
 * message and its envelope were fsynced in the spool. Meanwhile the sink holds its greeting, so
 * nothing leaves and submission is measured alone. Phase 2: the sink starts answering and the
 * time until it has every message (and the spool is empty) gives the drain rate.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { peakRssMb, runSender, startDaemon, stopDaemon } from './lib.js';
import { SMTPServer } from 'smtp-server';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    connections: { type: 'string', default: '20' },
    size: { type: 'string', default: '4096' },
    keep: { type: 'boolean', default: false },
  },
});
const MESSAGES = Number(values.messages);
const CONNECTIONS = Number(values.connections);
const SIZE = Number(values.size);

function message(i: number): string {
  const header = `From: sender@bench.example\r\nTo: someone@remote.example\r\nSubject: bench ${i}\r\nMessage-ID: <${i}@bench.example>\r\nDate: Sun, 29 Nov 2026 07:00:00 +0000\r\n\r\n`;
  const line = `${'x'.repeat(76)}\r\n`;
  let body = '';
  while (header.length + body.length + line.length <= SIZE) body += line;
  return header + body + 'y'.repeat(Math.max(0, SIZE - header.length - body.length - 2)) + '\r\n';
}

/** The remote side: accepts everything, counts messages; holds its greeting until released. */
async function startSink(): Promise<{ port: number; received: () => number; release: () => void; close: () => Promise<void> }> {
  let received = 0;
  let released = false;
  const waiting: Array<() => void> = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    size: 10 * 1024 * 1024,
    maxClients: 1000,
    onConnect: (_session, cb) => (released ? cb() : waiting.push(() => cb())),
    onData: (stream, _session, cb) => {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        received++;
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as net.AddressInfo).port;
  return {
    port,
    received: () => received,
    release: () => {
      released = true;
      for (const w of waiting.splice(0)) w();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-bench-queue-'));
  const sink = await startSink();
  await writeFile(
    path.join(dir, 'directory.yaml'),
    `domains: [bench.example]\nusers:\n  sender@bench.example: {password: "{PLAIN}bench-pw"}\n`,
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
      '  - {name: submissions, protocol: submission, address: 127.0.0.1, port: 0, tls: implicit}',
      'directory: {file: {path: directory.yaml}}',
      `limits: {connections_per_ip: ${CONNECTIONS + 5}}`,
      'submission: {rate_limit: {recipients: 0}}',
      `queue: {relayhost: "[127.0.0.1]:${sink.port}", tls: none, concurrency: 20, destination_concurrency: 20}`,
      'log: {level: info}',
      '',
    ].join('\n'),
  );
  const { daemon, port } = await startDaemon(path.join(dir, 'maild.yaml'));

  const payloads = Array.from({ length: 16 }, (_, i) => message(i));
  let next = 0;
  let acknowledged = 0;
  let failed = 0;
  const started = process.hrtime.bigint();

  const runConnection = () =>
    runSender({
      port,
      tls: true,
      auth: { user: 'sender@bench.example', pass: 'bench-pw' },
      sender: 'sender@bench.example',
      next: () => {
        if (next >= MESSAGES) return undefined;
        const i = next++;
        return { rcpt: `rcpt${i}@remote.example`, payload: payloads[i % payloads.length]! };
      },
      onResult: (ok) => (ok ? acknowledged++ : failed++),
    });

  await Promise.all(Array.from({ length: CONNECTIONS }, runConnection));
  const submitSeconds = Number(process.hrtime.bigint() - started) / 1e9;

  const drainStart = process.hrtime.bigint();
  sink.release();
  while (sink.received() < acknowledged) await new Promise((r) => setTimeout(r, 20));
  const drainSeconds = Number(process.hrtime.bigint() - drainStart) / 1e9;
  // The spool empties once the last envelopes are removed.
  const envDir = path.join(dir, 'mail/.queue/env');
  while ((await readdir(envDir).catch(() => [])).length > 0) await new Promise((r) => setTimeout(r, 20));
  const emptySeconds = Number(process.hrtime.bigint() - drainStart) / 1e9;

  const peakMb = await peakRssMb(daemon.pid);
  await stopDaemon(daemon);
  await sink.close();

  console.log(
    JSON.stringify(
      {
        benchmark: 'submission-queue',
        messages: MESSAGES,
        connections: CONNECTIONS,
        message_bytes: SIZE,
        acknowledged,
        failed,
        submit_seconds: Number(submitSeconds.toFixed(2)),
        submissions_per_second: Math.round(acknowledged / submitSeconds),
        delivered_to_sink: sink.received(),
        drain_seconds: Number(drainSeconds.toFixed(2)),
        drain_messages_per_second: Math.round(sink.received() / drainSeconds),
        spool_empty_after_seconds: Number(emptySeconds.toFixed(2)),
        peak_rss_mb: peakMb,
        cpus: os.cpus().length,
        node: process.version,
      },
      null,
      2,
    ),
  );
  if (sink.received() !== acknowledged) {
    console.error(`MISMATCH: ${acknowledged} acknowledged but ${sink.received()} delivered`);
    process.exitCode = 1;
  }
  if (!values.keep) await rm(dir, { recursive: true, force: true });
  else console.error(`kept ${dir}`);
}

await main();
