/**
 * kill -9 while clients hand mail to the queue and the queue sends it on: after a restart every
 * message that got its 250 reaches the remote side intact. A message the remote side accepted
 * just before the kill, whose delivery was not yet recorded, may be sent again (as with any MTA:
 * RFC 5321 section 6.1 prefers a duplicate to a loss); never more of those than were in flight.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { digestMessage, killUnderLoad, loadSender, verifyDigestMessage } from '../helpers/crash-load.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

const CONCURRENCY = 8;

const makeMessage = (id: string) => digestMessage('queue-crash', id, 200_000);

describe('queue crash safety (kill -9 under load)', () => {
  let dir: string;
  let config: string;
  let sink: SmtpSink;
  const acknowledged = new Set<string>();

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-queue-crash-'));
    config = path.join(dir, 'maild.yaml');
    sink = await startSmtpSink({ starttls: false, size: 4 * 1024 * 1024 });
    await writeFile(path.join(dir, 'directory.yaml'), 'domains: [crash.example]\nusers:\n  u@crash.example: {password: "{PLAIN}x"}\n');
    await writeFile(
      config,
      [
        'hostname: crash.test',
        'user: root', // the suite runs as root: serving as root on purpose
        'data_dir: data',
        'mail: {root: mail}',
        'listeners:',
        '  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}',
        'directory: {file: {path: directory.yaml}}',
        'limits: {message_size: 2M, connections_per_ip: 100}',
        // The test client relays (Postfix's mynetworks) to remote.example, sent on through the sink.
        'trusted_networks: [127.0.0.1/32]',
        `queue: {relayhost: "[127.0.0.1]:${sink.port}", tls: none, concurrency: ${CONCURRENCY}, destination_concurrency: ${CONCURRENCY}, retry_min: 1s}`,
        'shutdown_timeout: 1s',
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sender = (port: number, prefix: string, stop: { now: boolean }) =>
    loadSender({
      port,
      prefix,
      stop,
      acknowledged,
      sender: 'load@crash.example',
      recipient: (n) => `r${n % 3}@remote.example`,
      message: makeMessage,
    });

  it('refuses to start a second daemon on the same queue', async () => {
    const first = spawnDaemon(['--config', config]);
    try {
      await first.waitLog((l) => l.msg === 'ready');
      const second = spawnDaemon(['--config', config]);
      const { code } = await second.exited;
      assert.equal(code, 1);
      assert.match(second.stderr(), new RegExp(`in use by process ${first.proc.pid}`));
      assert.equal(first.proc.exitCode, null, 'the first one runs on');
    } finally {
      first.kill('SIGTERM');
      await first.exited;
    }
  });

  for (const [round, killAfterAcks] of [
    [1, 3],
    [2, 60],
    [3, 200],
  ] as const) {
    it(`round ${round}: killed after ${killAfterAcks} acknowledgements, every acknowledged message is delivered after the restart`, async (t) => {
      // A slow remote side keeps the queue busy, so the kill also lands in the middle of deliveries.
      sink.setDelay(5);
      const d: Daemon = spawnDaemon(['--config', config]);
      await d.waitLog((l) => l.msg === 'ready');
      const before = await killUnderLoad({
        daemon: d,
        acknowledged,
        killAfterAcks,
        round,
        sender: (prefix, stop) => sender(d.port('mx'), prefix, stop),
      });
      const sentBeforeRestart = sink.messages.length;

      sink.setDelay(0);
      const again = spawnDaemon(['--config', config]);
      try {
        await again.waitLog((l) => l.msg === 'ready');
        const spool = path.join(dir, 'mail/.queue/env');
        const drainDeadline = Date.now() + 60_000;
        while ((await readdir(spool)).length > 0 && Date.now() < drainDeadline) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(await readdir(spool), [], 'the queue drained after the restart');

        const counts = new Map<string, number>();
        const broken: string[] = [];
        for (const m of sink.messages) {
          const v = verifyDigestMessage('queue-crash', m.data.toString('latin1'));
          if (!v) continue;
          if (!v.intact) broken.push(v.id);
          counts.set(v.id, (counts.get(v.id) ?? 0) + 1);
        }
        assert.deepEqual(broken, [], 'nothing arrived truncated or corrupt');
        assert.deepEqual(
          [...acknowledged].filter((id) => !counts.has(id)),
          [],
          'every acknowledged message arrived',
        );
        const duplicates = [...counts].filter(([, n]) => n > 1).length;
        t.diagnostic(
          `acknowledged ${acknowledged.size} (this round ${acknowledged.size - before}); sent before the kill ${sentBeforeRestart}; sent twice ${duplicates}`,
        );
        assert.ok(duplicates <= CONCURRENCY * round, `at most the deliveries in flight at each kill were repeated (${duplicates})`);
      } finally {
        again.kill('SIGTERM');
        await again.exited;
      }
    });
  }
});
