/**
 * `maild queue ...` run as a process against a running server: listing in postqueue -p's
 * layout, hold/release, flush and delete through the daemon's control socket.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/daemon.js';
import { message, settled, setup, teardown, type QueueEnv } from '../helpers/queue-env.js';

const maild = (config: string, args: string[]) => runCli(config, args);

describe('maild queue', () => {
  let env: QueueEnv;
  let config: string;
  before(async () => {
    env = await setup();
    config = path.join(env.server.dir, 'maild.yaml');
  });
  after(async () => {
    await teardown(env);
  });

  it('lists, holds, releases, flushes and deletes deferred messages', async () => {
    assert.equal((await maild(config, ['queue', 'list'])).stdout, 'Mail queue is empty\n');
    env.sink.setRule('wait@remote.example', { rcpt: 450, text: '4.2.1 come back later' });
    const queue = env.server.runtime.queue;
    const { queueId } = await queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'wait@remote.example' }],
      message: message('cli'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    const { queueId: other } = await queue.enqueue({
      sender: 'bob@example.test',
      recipients: [{ address: 'wait@remote.example' }],
      message: message('cli other'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await settled(env);

    const listing = await maild(config, ['queue', 'list']);
    assert.equal(listing.code, 0, listing.stderr);
    const lines = listing.stdout.split('\n');
    assert.match(lines[0]!, /^-Queue ID-/);
    const entry = lines.findIndex((l) => l.startsWith(queueId));
    assert.ok(entry > 0, listing.stdout);
    assert.match(lines[entry]!, /alice@example\.test$/);
    assert.match(lines[entry + 1]!, /^\s+\(450 4\.2\.1 come back later\)$/);
    assert.match(lines[entry + 2]!, /^\s+wait@remote\.example$/);
    assert.match(listing.stdout, /-- \d+ Kbytes in 2 Requests\.\n$/);

    assert.equal((await maild(config, ['queue', 'hold', queueId])).stdout, '1 message put on hold\n');
    assert.match((await maild(config, ['queue', 'list'])).stdout, new RegExp(`^${queueId}!`, 'm'), 'held messages are marked with !');

    // A flush tries the other message but not the held one.
    env.sink.clearRules();
    const before = env.sink.messages.length;
    assert.equal((await maild(config, ['queue', 'flush'])).code, 0);
    await env.sink.waitForMessages(before + 1);
    const left = await settled(env);
    assert.deepEqual(
      left.map((m) => [m.id, m.held]),
      [[queueId, true]],
    );
    assert.ok(!left.some((m) => m.id === other));

    assert.equal((await maild(config, ['queue', 'release', queueId])).stdout, '1 message released\n');
    await env.sink.waitForMessages(before + 2);
    assert.equal((await settled(env)).length, 0);

    // delete: gone without a bounce to the sender.
    env.sink.setRule('wait@remote.example', { rcpt: 451 });
    const { queueId: doomed } = await queue.enqueue({
      sender: 'alice@example.test',
      recipients: [{ address: 'wait@remote.example' }],
      message: message('cli delete'),
      maxBytes: 1 << 20,
      origin: 'submission',
    });
    await settled(env);
    assert.equal((await maild(config, ['queue', 'delete', doomed])).stdout, '1 message deleted\n');
    assert.equal((await settled(env)).length, 0);
    assert.equal((await env.server.messages('example.test/alice')).length, 0, 'no notice for a deleted message');
    const missing = await maild(config, ['queue', 'delete', doomed]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no message/);
    const unknownFlush = await maild(config, ['queue', 'flush', 'ABCDEF123456']);
    assert.equal(unknownFlush.code, 1);
    assert.match(unknownFlush.stderr, /no message ABCDEF123456/);
    const bad = await maild(config, ['queue', 'hold', '../etc/passwd']);
    assert.equal(bad.code, 64);
    env.sink.clearRules();
  });
});
