/**
 * `maild health` (the image's HEALTHCHECK): exit 0 while the daemon answers on its control socket,
 * 1 when it is not running, was killed (a stale socket file left behind) or does not answer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCliProcess } from '../helpers/cli.js';
import { spawnDaemon } from '../helpers/daemon.js';

describe('maild health', () => {
  let dir: string;
  let config: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-health-'));
    config = path.join(dir, 'maild.yaml');
    await writeFile(path.join(dir, 'directory.yaml'), 'domains: [example.test]\n');
    await writeFile(
      config,
      [
        'hostname: mx.test.example',
        'user: root', // the suite runs as root: serving as root on purpose
        'data_dir: data',
        'mail: {root: mail}',
        'listeners: [{name: mx, protocol: smtp, address: 127.0.0.1, port: 0}]',
        'directory: {file: {path: directory.yaml}}',
        'shutdown_timeout: 1s',
        '',
      ].join('\n'),
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const health = (...extra: string[]) => runCliProcess(['--config', config, 'health', ...extra]);

  it('exits 1 when no daemon was ever started', async () => {
    const r = await health();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unhealthy: no daemon listens on .*control\.sock/);
  });

  it('exits 1 when the configuration cannot be read', async () => {
    const r = await runCliProcess(['--config', path.join(dir, 'missing.yaml'), 'health']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read/);
  });

  it('exits 0 while the daemon runs, 1 while it is stopped and after it was killed', async () => {
    const daemon = spawnDaemon(['--config', config], { compiled: true });
    try {
      await daemon.waitLog((l) => l.msg === 'ready');
      const up = await health();
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, /^maild is running: .*control\.sock answered \(0 messages queued\)$/m);

      // A daemon that accepts nothing in time (here: SIGSTOP) is not healthy.
      daemon.kill('SIGSTOP');
      const stuck = await health('--timeout', '1s');
      assert.equal(stuck.code, 1);
      assert.match(stuck.stderr, /unhealthy: .*did not answer in time/);
      daemon.kill('SIGCONT');
      assert.equal((await health()).code, 0);

      // SIGKILL leaves the socket file behind: nobody answers on it.
      daemon.kill('SIGKILL');
      await daemon.exited;
      await stat(path.join(dir, 'data', 'control.sock'));
      const dead = await health();
      assert.equal(dead.code, 1);
      assert.match(dead.stderr, /unhealthy: no daemon listens/);
    } finally {
      daemon.kill('SIGKILL');
    }
  });
});
