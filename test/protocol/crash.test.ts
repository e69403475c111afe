/**
 * kill -9 in the middle of a load: every message that got its 250 must be in new/ or cur/
 * exactly once after a restart, and no file in new/ may be partial.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { SmtpClient, dotStuff } from '../helpers/smtp-client.js';

const USERS = ['u0', 'u1', 'u2', 'u3'];

function makeMessage(id: string): string {
  // Bodies from 1 KB to ~300 KB: both the in-memory and the spooled write paths.
  const size = 1024 + Math.floor(Math.random() * 300_000);
  const body = randomBytes(Math.ceil(size * 0.75))
    .toString('base64')
    .replace(/(.{76})/g, '$1\n');
  const digest = createHash('sha256').update(body).digest('hex');
  return `Subject: crash-test ${id}\nX-Digest: ${digest}\n\n${body}\nEND ${id}\n`;
}

/** Parses a stored message; returns its id when it is complete and intact. */
function verifyStored(text: string): { id: string; intact: boolean } | undefined {
  const id = /^Subject: crash-test (\S+)$/m.exec(text)?.[1];
  if (!id) return undefined;
  const digest = /^X-Digest: ([0-9a-f]+)$/m.exec(text)?.[1];
  const start = text.indexOf('\n\n') + 2;
  const end = text.lastIndexOf(`\nEND ${id}\n`);
  if (!digest || end < start) return { id, intact: false };
  const body = text.slice(start, end);
  return { id, intact: createHash('sha256').update(body).digest('hex') === digest && text.endsWith(`END ${id}\n`) };
}

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
      `hostname: crash.test\ndata_dir: data\nmail: {root: mail}\nlisteners:\n  - {name: mx, protocol: smtp, address: 127.0.0.1, port: 0}\ndirectory: {file: {path: directory.yaml}}\nlimits: {message_size: 2M, connections_per_ip: 100}\nshutdown_timeout: 1s\n`,
    );
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function sender(port: number, prefix: string, stop: { now: boolean }): Promise<void> {
    let c: SmtpClient;
    try {
      c = await SmtpClient.connect(port, { timeoutMs: 5000 });
      await c.greeting();
      await c.command('EHLO loadgen.example');
    } catch {
      return;
    }
    for (let n = 0; !stop.now; n++) {
      const id = `${prefix}-${n}`;
      const rcpt = `${USERS[n % USERS.length]}@crash.example`;
      try {
        c.write(`MAIL FROM:<load@remote.example>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`);
        const replies = [await c.reply(), await c.reply(), await c.reply()];
        if (replies[2]!.code !== 354) return;
        c.write(`${dotStuff(makeMessage(id))}.\r\n`);
        const final = await c.reply();
        if (final.code === 250) acknowledged.add(id);
      } catch {
        return; // the server died
      }
    }
    await c.quit().catch(() => undefined);
  }

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
      const stop = { now: false };
      const before = acknowledged.size;
      const senders = Array.from({ length: 12 }, (_, i) => sender(port, `r${round}s${i}`, stop));
      const deadline = Date.now() + 60_000;
      while (acknowledged.size < before + killAfterAcks && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      d.kill('SIGKILL');
      const { signal } = await d.exited;
      stop.now = true;
      await Promise.all(senders);
      assert.equal(signal, 'SIGKILL');
      assert.ok(
        acknowledged.size >= before + killAfterAcks,
        `${killAfterAcks} messages acknowledged before the kill (got ${acknowledged.size - before})`,
      );

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
