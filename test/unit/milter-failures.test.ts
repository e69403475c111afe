/**
 * A milter that cannot be reached, never answers or answers nonsense is a failure, and a failure
 * is the milter's default_action (Postfix's milter_default_action): tempfail 451 4.7.1 unless
 * configured otherwise, never a crash or a hang. The peers here are hostile sockets, not
 * milters: the real milters are in test/interop/milter-*.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeFrame } from '../../src/inbound/milter/codec.js';
import { miltersSchema } from '../../src/inbound/milter/config.js';
import { runMilters } from '../../src/inbound/milter/index.js';
import type { InboundMessage } from '../../src/inbound/types.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};
/** A well-formed OPTNEG reply: version 6, all actions, no protocol flags. */
const OPTNEG_REPLY = encodeFrame('O', Buffer.concat([u32(6), u32(0x1ff), u32(0)]));

/** A peer that answers the first packet it reads with `reply` (and then keeps quiet). */
async function hostilePeer(
  reply: (received: number) => Buffer | undefined,
  opts: { closeAfter?: boolean } = {},
): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let packets = 0;
    socket.on('error', () => {});
    socket.on('data', () => {
      const out = reply(++packets);
      if (out) socket.write(out);
      if (out && opts.closeAfter) socket.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `inet:127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

describe('milter failures', () => {
  let dir: string;
  let message: InboundMessage;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-milter-fail-'));
    const text = 'From: a@remote.example\r\nSubject: hi\r\n\r\nHello\r\n';
    await writeFile(path.join(dir, 'msg'), text);
    message = {
      file: path.join(dir, 'msg'),
      size: text.length,
      envelope: {
        queueId: 'Q1',
        clientIp: '192.0.2.5',
        helo: 'client.example',
        protocol: 'ESMTP',
        sender: 'a@remote.example',
        recipients: ['b@example.test'],
        hostname: 'mx.example.test',
      },
    };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('an unreachable milter tempfails with 451 4.7.1 by default', async () => {
    const r = await runMilters(miltersSchema.parse([{ address: `inet:127.0.0.1:${await closedPort()}` }]), message);
    assert.equal(r.action, 'tempfail');
    assert.deepEqual(r.status, { code: 451, enhanced: '4.7.1', text: 'Service unavailable - try again later' });
    assert.match(JSON.stringify(r.log), /CONNECT_FAILED/);
  });

  it('an unreachable unix socket milter tempfails as well', async () => {
    const r = await runMilters(miltersSchema.parse([{ address: `unix:${path.join(dir, 'absent.sock')}` }]), message);
    assert.equal(r.action, 'tempfail');
    assert.equal(r.status?.code, 451);
  });

  it('default_action accept lets the message through unchanged; reject refuses it with 550 5.7.1', async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    const accepted = await runMilters(miltersSchema.parse([{ address, default_action: 'accept' }]), message);
    assert.equal(accepted.action, 'accept');
    assert.equal(accepted.status, undefined);
    assert.equal(accepted.message.file, message.file);
    assert.equal(accepted.createdFile, undefined);
    assert.deepEqual(accepted.message.envelope, message.envelope);
    const rejected = await runMilters(miltersSchema.parse([{ address, default_action: 'reject' }]), message);
    assert.equal(rejected.action, 'reject');
    assert.deepEqual(rejected.status, { code: 550, enhanced: '5.7.1', text: 'Command rejected' });
  });

  it('an oversized frame is a failure (FRAME_TOO_LARGE), not a crash', async () => {
    const peer = await hostilePeer(() => u32(0x7fffffff));
    try {
      const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
      assert.equal(r.action, 'tempfail');
      assert.match(JSON.stringify(r.log), /FRAME_TOO_LARGE/);
    } finally {
      await peer.close();
    }
  });

  it('a frame cut short by the milter closing is a failure (TRUNCATED)', async () => {
    const peer = await hostilePeer(() => OPTNEG_REPLY.subarray(0, 9), { closeAfter: true });
    try {
      const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
      assert.equal(r.action, 'tempfail');
      assert.match(JSON.stringify(r.log), /TRUNCATED/);
    } finally {
      await peer.close();
    }
  });

  it('a milter that never answers times out (command_timeout) into the default action', async () => {
    const peer = await hostilePeer(() => undefined);
    try {
      const r = await runMilters(
        miltersSchema.parse([{ address: peer.address, command_timeout: '0.3s', default_action: 'reject' }]),
        message,
      );
      assert.equal(r.action, 'reject');
      assert.match(JSON.stringify(r.log), /TIMEOUT/);
    } finally {
      await peer.close();
    }
  });

  it('an edit before end of message, or a bad reply code, is a failure', async () => {
    for (const second of [encodeFrame('h', Buffer.from('X-A\0early\0')), encodeFrame('y', Buffer.from('250 fine\0')), encodeFrame('Z')]) {
      const peer = await hostilePeer((n) => (n === 1 ? OPTNEG_REPLY : second));
      try {
        const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
        assert.equal(r.action, 'tempfail', second.toString('latin1'));
        assert.match(JSON.stringify(r.log), /UNEXPECTED_REPLY|BAD_REPLY/);
      } finally {
        await peer.close();
      }
    }
  });

  it('leaves no files behind after a failure', async () => {
    assert.deepEqual(await readdir(dir), ['msg']);
  });
});
