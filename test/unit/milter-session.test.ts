/**
 * A milter that cannot be reached, never answers or answers nonsense is a failure, and a failure
 * is the milter's default_action (Postfix's milter_default_action): tempfail 451 4.7.1 unless
 * configured otherwise, never a crash or a hang. The peers here are scripted sockets that
 * misbehave or show protocol corners no Debian milter can be made to show (a refusal at RCPT,
 * replies switched off); the real milters are in test/interop/milter-*.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeFrame, FrameDecoder } from '../../src/inbound/milter/codec.js';
import { miltersSchema } from '../../src/inbound/milter/config.js';
import { runMilters } from '../../src/inbound/milter/index.js';
import type { InboundMessage } from '../../src/inbound/types.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};
/** An OPTNEG reply: version 6, the actions and protocol flags, then (stage, macro list) pairs. */
const optneg = (actions: number, protocol: number, macros: Array<[number, string]> = []) =>
  encodeFrame(
    'O',
    Buffer.concat([u32(6), u32(actions), u32(protocol), ...macros.flatMap(([stage, list]) => [u32(stage), Buffer.from(list + '\0')])]),
  );
const OPTNEG_REPLY = optneg(0x1ff, 0);
const CONTINUE = encodeFrame('c');
const frames = (...list: Buffer[]) => Buffer.concat(list);

/**
 * A scripted peer: decodes the client's commands (the framing is the same both ways) and answers
 * each one but SMFIC_MACRO with what `reply` returns for it (nothing: keeps quiet). `closeAfter`
 * ends the connection after the first answer. The commands received are kept.
 */
async function scriptedPeer(
  reply: (command: string, n: number, data: Buffer) => Buffer | undefined,
  opts: { closeAfter?: boolean } = {},
): Promise<{ address: string; received: Array<[string, string]>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const received: Array<[string, string]> = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const decoder = new FrameDecoder();
    let n = 0;
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        received.push([frame.command, frame.data.toString('latin1')]);
        if (frame.command === 'D') continue;
        const out = reply(frame.command, ++n, frame.data);
        if (out) socket.write(out);
        if (out && opts.closeAfter) socket.end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `inet:127.0.0.1:${port}`,
    received,
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

describe('milter sessions', () => {
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
    const peer = await scriptedPeer(() => u32(0x7fffffff));
    try {
      const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
      assert.equal(r.action, 'tempfail');
      assert.match(JSON.stringify(r.log), /FRAME_TOO_LARGE/);
    } finally {
      await peer.close();
    }
  });

  it('a frame cut short by the milter closing is a failure (TRUNCATED)', async () => {
    const peer = await scriptedPeer(() => OPTNEG_REPLY.subarray(0, 9), { closeAfter: true });
    try {
      const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
      assert.equal(r.action, 'tempfail');
      assert.match(JSON.stringify(r.log), /TRUNCATED/);
    } finally {
      await peer.close();
    }
  });

  it('a milter that never answers times out (command_timeout) into the default action', async () => {
    const peer = await scriptedPeer(() => undefined);
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
      const peer = await scriptedPeer((_, n) => (n === 1 ? OPTNEG_REPLY : second));
      try {
        const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
        assert.equal(r.action, 'tempfail', second.toString('latin1'));
        assert.match(JSON.stringify(r.log), /UNEXPECTED_REPLY|BAD_REPLY/);
      } finally {
        await peer.close();
      }
    }
  });

  it('honours NO* and NR_* flags and the macro lists the milter asked for', async () => {
    // NR_CONN | NR_HELO | NR_MAIL | NR_RCPT | NR_DATA | NR_EOH | NR_BODY, and NOHDRS.
    const flags = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x40000 | 0x80000 | 0x20;
    const peer = await scriptedPeer((command) =>
      command === 'O'
        ? optneg(0x1ff, flags, [[2, '{mail_addr} {client_addr}']])
        : command === 'E'
          ? frames(encodeFrame('h', Buffer.from('X-Seen\0yes\0')), CONTINUE)
          : undefined,
    );
    try {
      // Waiting for a reply the milter does not send would end in a timeout, and so in tempfail.
      const r = await runMilters(miltersSchema.parse([{ address: peer.address, command_timeout: '5s', content_timeout: '5s' }]), message);
      assert.equal(r.action, 'accept');
      assert.match(await readFile(r.message.file, 'utf8'), /^From: a@remote.example\r\nSubject: hi\r\nX-Seen: yes\r\n\r\nHello\r\n$/);
      await rm(r.createdFile!);
      const commands = peer.received.map(([c]) => c).filter((c) => c !== 'D');
      assert.deepEqual(commands.slice(0, commands.indexOf('E') + 1), ['O', 'C', 'H', 'M', 'R', 'T', 'N', 'B', 'E'], 'no header (L) sent');
      const macrosFor = (command: string) => peer.received.find(([c, d]) => c === 'D' && d[0] === command)?.[1].slice(1);
      assert.equal(macrosFor('M'), '{mail_addr}\0a@remote.example\0{client_addr}\x00192.0.2.5\0', 'the list asked for, and only it');
      assert.match(macrosFor('R') ?? '', /\{rcpt_addr\}\0b@example\.test\0/);
      assert.match(macrosFor('C') ?? '', /^j\0mx\.example\.test\0/);
    } finally {
      await peer.close();
    }
  });

  it('a refusal at RCPT refuses that recipient only; refusing all refuses the message', async () => {
    const peer = await scriptedPeer((command, _, data) =>
      command === 'O'
        ? OPTNEG_REPLY
        : command === 'R' && data.includes('bad@')
          ? encodeFrame('y', Buffer.from('550 5.1.1 No such user here\0'))
          : CONTINUE,
    );
    try {
      const two = { ...message, envelope: { ...message.envelope, recipients: ['b@example.test', 'bad@example.test'] } };
      const r = await runMilters(miltersSchema.parse([{ address: peer.address, name: 'p' }]), two);
      assert.equal(r.action, 'accept');
      assert.deepEqual(r.refusedRecipients, [
        { milter: 'p', recipient: 'bad@example.test', status: { code: 550, enhanced: '5.1.1', text: 'No such user here' } },
      ]);
      assert.deepEqual(r.message.envelope.recipients, ['b@example.test']);
      const one = { ...message, envelope: { ...message.envelope, recipients: ['bad@example.test'] } };
      const all = await runMilters(miltersSchema.parse([{ address: peer.address }]), one);
      assert.equal(all.action, 'reject');
      assert.deepEqual(all.status, { code: 550, enhanced: '5.1.1', text: 'No such user here' });
    } finally {
      await peer.close();
    }
  });

  it("end of message: the milter's own 4xx reply tempfails, discard discards, a new body replaces the old", async () => {
    const cases: Array<[Buffer, (r: Awaited<ReturnType<typeof runMilters>>) => Promise<void>]> = [
      [
        encodeFrame('y', Buffer.from('421 4.7.0 Busy, come back later\0')),
        async (r) => assert.deepEqual([r.action, r.status], ['tempfail', { code: 421, enhanced: '4.7.0', text: 'Busy, come back later' }]),
      ],
      [
        encodeFrame('t'),
        async (r) =>
          assert.deepEqual(
            [r.action, r.status],
            ['tempfail', { code: 451, enhanced: '4.7.1', text: 'Service unavailable - try again later' }],
          ),
      ],
      [
        encodeFrame('r'),
        async (r) => assert.deepEqual([r.action, r.status], ['reject', { code: 550, enhanced: '5.7.1', text: 'Command rejected' }]),
      ],
      [encodeFrame('d'), async (r) => assert.equal(r.action, 'discard')],
      [
        frames(
          encodeFrame('p'),
          encodeFrame('b', Buffer.from('Replaced\r\n')),
          encodeFrame('p'),
          encodeFrame('b', Buffer.from('body\n')),
          encodeFrame('a'),
        ),
        async (r) => {
          assert.equal(r.action, 'accept');
          assert.equal(await readFile(r.message.file, 'utf8'), 'From: a@remote.example\r\nSubject: hi\r\n\r\nReplaced\r\nbody\r\n');
          await rm(r.createdFile!);
        },
      ],
    ];
    for (const [eom, check] of cases) {
      const peer = await scriptedPeer((command) => (command === 'O' ? OPTNEG_REPLY : command === 'E' ? eom : CONTINUE));
      try {
        await check(await runMilters(miltersSchema.parse([{ address: peer.address }]), message));
      } finally {
        await peer.close();
      }
    }
  });

  it('an edit the milter did not negotiate, or a flood of progress replies, is a failure', async () => {
    const cases: Array<[Buffer, Buffer, RegExp]> = [
      [optneg(0, 0), encodeFrame('h', Buffer.from('X-A\0b\0')), /UNEXPECTED_REPLY/],
      [OPTNEG_REPLY, frames(...Array.from({ length: 1100 }, () => encodeFrame('p'))), /LIMIT_EXCEEDED/],
    ];
    for (const [neg, eom, error] of cases) {
      const peer = await scriptedPeer((command) => (command === 'O' ? neg : command === 'E' ? eom : CONTINUE));
      try {
        const r = await runMilters(miltersSchema.parse([{ address: peer.address }]), message);
        assert.equal(r.action, 'tempfail');
        assert.match(JSON.stringify(r.log), error);
      } finally {
        await peer.close();
      }
    }
  });

  it('a refusal after an earlier milter edited removes the edited copy; refusals across milters can leave no recipient', async () => {
    const editor = await scriptedPeer((command, _, data) =>
      command === 'O'
        ? OPTNEG_REPLY
        : command === 'R' && data.includes('b@')
          ? encodeFrame('t')
          : command === 'E'
            ? frames(encodeFrame('h', Buffer.from('X-Edited\0yes\0')), CONTINUE)
            : CONTINUE,
    );
    const refuser = await scriptedPeer((command, _, data) =>
      command === 'O'
        ? OPTNEG_REPLY
        : command === 'R' && data.includes('c@')
          ? encodeFrame('r')
          : command === 'E'
            ? encodeFrame('r')
            : CONTINUE,
    );
    try {
      const two = { ...message, envelope: { ...message.envelope, recipients: ['b@example.test', 'c@example.test'] } };
      const rejected = await runMilters(miltersSchema.parse([{ address: editor.address }, { address: refuser.address }]), two);
      // The editor tempfailed b@ at RCPT, the refuser rejected c@: nobody is left.
      assert.equal(rejected.action, 'reject');
      assert.deepEqual(rejected.status, { code: 550, enhanced: '5.7.1', text: 'Command rejected' });
      assert.deepEqual(
        rejected.refusedRecipients.map((r) => [r.recipient, r.status.code]),
        [
          ['b@example.test', 451],
          ['c@example.test', 550],
        ],
      );
      assert.equal(rejected.createdFile, undefined);
      assert.equal(rejected.message.file, message.file);
      const three = { ...message, envelope: { ...message.envelope, recipients: ['b@example.test', 'c@example.test', 'd@example.test'] } };
      const refusedAtEnd = await runMilters(miltersSchema.parse([{ address: editor.address }, { address: refuser.address }]), three);
      assert.equal(refusedAtEnd.action, 'reject', 'the refuser rejects at end of message');
      assert.equal(refusedAtEnd.createdFile, undefined);
      assert.deepEqual(await readdir(dir), ['msg'], "the first milter's edited copy is gone");
    } finally {
      await editor.close();
      await refuser.close();
    }
  });

  it('leaves no files behind', async () => {
    assert.deepEqual(await readdir(dir), ['msg']);
  });
});
