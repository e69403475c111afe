/**
 * kill -9 in the middle of a load: every message that got its 250 must be in new/ or cur/
 * exactly once after a restart, and no file in new/ may be partial.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { digestMessage, killUnderLoad, loadSender, verifyDigestMessage } from '../helpers/crash-load.js';

const USERS = ['u0', 'u1', 'u2', 'u3'];

const makeMessage = (id: string) => digestMessage('crash-test', id);
const verifyStored = (text: string) => verifyDigestMessage('crash-test', text);

describe('crash safety (kill -9 under load)', () => {
  let dir: string;
  let config: string;
  const acknowledged = new Set<string>();

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-crash-'));
    config = path.join(dir, 'maild.yaml');
    await writeFile(
      path.join(dir, 'directory.yaml'),
      `domains: [crash.example]\nusers:\n${USERS.map((u) => `  ${u}@crash.example: {password: "{PLAIN}x"}\n`).join('')}`,
    );
    await writeFile(
      config,
      `hostname: crash.test\nuser: root\ndata_dir: data\nmail: {root: mail}\nlisteners:\n  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}\ndirectory: {file: {path: directory.yaml}}\nlimits: {message_size: 2M, connections_per_ip: 100}\nshutdown_timeout: 1s\n`,
    );
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const sender = (port: number, prefix: string, stop: { now: boolean }) =>
    loadSender({
      port,
      prefix,
      stop,
      acknowledged,
      sender: 'load@remote.example',
      recipient: (n) => `${USERS[n % USERS.length]}@crash.example`,
      message: makeMessage,
    });

  async function scan(): Promise<{ counts: Map<string, number>; broken: string[] }> {
    const counts = new Map<string, number>();
    const broken: string[] = [];
    for (const user of USERS) {
      for (const sub of ['new', 'cur']) {
        const folder = path.join(dir, 'mail/crash.example', user, sub);
        for (const name of await readdir(folder).catch(() => [] as string[])) {
          const text = await readFile(path.join(folder, name), 'latin1');
          const v = verifyStored(text);
          if (!v || !v.intact) broken.push(`${user}/${sub}/${name}`);
          else counts.set(v.id, (counts.get(v.id) ?? 0) + 1);
        }
      }
    }
    return { counts, broken };
  }

  // Each round kills once this many more messages were acknowledged, with a dozen senders
  // still in the middle of theirs: at the start, during a steady load, and deeper into it.
  for (const [round, killAfterAcks] of [
    [1, 3],
    [2, 60],
    [3, 200],
  ] as const) {
    it(`round ${round}: killed after ${killAfterAcks} acknowledgements, nothing acknowledged is lost or duplicated`, async (t) => {
      const d: Daemon = spawnDaemon(['--config', config], { env: { UV_THREADPOOL_SIZE: '16' } });
      await d.waitLog((l) => l.msg === 'ready');
      const port = d.port('mx');
      const before = await killUnderLoad({
        daemon: d,
        acknowledged,
        killAfterAcks,
        round,
        sender: (prefix, stop) => sender(port, prefix, stop),
      });

      // Restart on the same mail root; it must come up and deliver again.
      const again = spawnDaemon(['--config', config]);
      try {
        await again.waitLog((l) => l.msg === 'ready');
        const { counts, broken } = await scan();
        assert.deepEqual(broken, [], 'no partial or corrupt message in new/ or cur/');
        const missing = [...acknowledged].filter((id) => !counts.has(id));
        assert.deepEqual(missing, [], 'every acknowledged message is present');
        t.diagnostic(`acknowledged so far: ${acknowledged.size} (this round ${acknowledged.size - before}); stored: ${counts.size}`);
        const duplicated = [...counts].filter(([, n]) => n > 1);
        assert.deepEqual(duplicated, [], 'no message is present twice');
        const c = await SmtpClient.connect(again.port('mx'));
        await c.greeting();
        await c.command('EHLO after.example');
        const res = await c.sendMail('s@remote.example', ['u0@crash.example'], makeMessage(`after-${round}`));
        assert.equal(res.final![0]!.code, 250);
        await c.quit();
      } finally {
        again.kill('SIGTERM');
        await again.exited;
      }
    });
  }
});
