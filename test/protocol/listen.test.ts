/**
 * The socket front (src/listen): listeners bound before anything serves them, connections that
 * arrive meanwhile held and handed over, several addresses per listener, unix sockets with their
 * mode, and startServer taking listeners bound beforehand (the daemon's bind-then-drop order).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { bindListeners, type BoundListeners } from '../../src/listen/bind.js';
import type { ClientPeer } from '../../src/listen/peer.js';
import { silentLogger } from '../../src/log.js';
import { startServer } from '../../src/server.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { Pop3TestClient } from '../helpers/pop3-client.js';
import { DEMO_DIRECTORY, startTestServer, waitFor } from '../helpers/server.js';

function config(listeners: unknown[], extra: Record<string, unknown> = {}) {
  return parseConfig(stringify({ listeners, ...extra }), '/tmp/maild-listen-test.yaml', {});
}

/** Reads from `socket` until `pattern` shows up. */
async function readUntil(socket: net.Socket, pattern: RegExp): Promise<string> {
  let text = '';
  for await (const chunk of socket) {
    text += String(chunk);
    if (pattern.test(text)) return text;
  }
  throw new Error(`connection closed before ${String(pattern)}; got ${JSON.stringify(text)}`);
}

function connect(port: number, host: string): Promise<net.Socket> {
  const socket = net.connect(port, host);
  return once(socket, 'connect').then(() => socket);
}

describe('socket front', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-listen-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads address as a string or a list, and refuses an empty list or a repeated address', () => {
    const one = config([{ protocol: 'smtp', port: 25 }]);
    assert.deepEqual(one.listeners[0]!.address, ['0.0.0.0']);
    const two = config([{ protocol: 'imap', address: ['0.0.0.0', '::'], port: 143 }]);
    assert.deepEqual(two.listeners[0]!.address, ['0.0.0.0', '::']);
    assert.throws(() => config([{ protocol: 'imap', address: [], port: 143 }]), /listeners\[0\]\.address: give at least one address/);
    assert.throws(
      () => config([{ protocol: 'imap', address: ['::1', '::1'], port: 143 }]),
      /listeners\[0\]\.address: an address is listed twice/,
    );
  });

  it('holds connections that arrive before serve() and hands them over, data intact, oldest first', async () => {
    const bound = await bindListeners(config([{ name: 'held', protocol: 'smtp', address: '127.0.0.1', port: 0 }]));
    try {
      const port = (bound.get('held')!.address() as { port: number }).port;
      const first = await connect(port, '127.0.0.1');
      first.write('first\r\n');
      const second = await connect(port, '127.0.0.1');
      second.write('second\r\n');
      const got: Array<{ text: string; peer: ClientPeer }> = [];
      const handed = new Promise<void>((resolve) => {
        bound.get('held')!.serve((socket, peer) => {
          socket.once('data', (d) => {
            got.push({ text: String(d), peer });
            socket.end('bye\r\n');
            if (got.length === 2) resolve();
          });
        });
      });
      await handed;
      assert.deepEqual(
        got.map((g) => g.text),
        ['first\r\n', 'second\r\n'],
      );
      assert.equal(got[0]!.peer.address, '127.0.0.1');
      assert.equal(got[0]!.peer.port, first.localPort);
      assert.equal(got[0]!.peer.localPort, port);
      assert.equal(got[0]!.peer.proxied, false);
      assert.equal(await readUntil(first, /bye/), 'bye\r\n');
      second.destroy();
      first.destroy();
    } finally {
      await bound.close();
    }
  });

  it('binds every address of a list on one port, IPv4 and IPv6', async () => {
    const bound = await bindListeners(config([{ name: 'both', protocol: 'imap', address: ['127.0.0.1', '::1'], port: 0 }]));
    try {
      const listener = bound.get('both')!;
      const addresses = listener.addresses() as Array<{ address: string; port: number }>;
      assert.deepEqual(
        addresses.map((a) => a.address),
        ['127.0.0.1', '::1'],
      );
      assert.equal(addresses[0]!.port, addresses[1]!.port);
      const peers: string[] = [];
      listener.serve((socket, peer) => {
        peers.push(peer.address);
        socket.end();
      });
      for (const host of ['127.0.0.1', '::1']) {
        const c = await connect(addresses[0]!.port, host);
        c.resume();
        await once(c, 'close');
      }
      assert.deepEqual(peers, ['127.0.0.1', '::1']);
    } finally {
      await bound.close();
    }
  });

  it('binds unix sockets with their mode, and a failed bind names the listener and leaves nothing bound', async () => {
    const socketPath = path.join(dir, 'lmtp.sock');
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as net.AddressInfo).port;
    try {
      const bound = await bindListeners(config([{ name: 'lmtp', protocol: 'lmtp', path: socketPath, socket_mode: '0600' }]));
      assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
      await bound.close();
      await assert.rejects(stat(socketPath), /ENOENT/, 'the socket file goes with the listener');

      await assert.rejects(
        bindListeners(
          config([
            { name: 'lmtp', protocol: 'lmtp', path: socketPath },
            { name: 'busy', protocol: 'smtp', address: '127.0.0.1', port: takenPort },
          ]),
        ),
        (err: Error & { code?: string }) => {
          assert.match(err.message, new RegExp(`listener busy: cannot listen on 127\\.0\\.0\\.1:${takenPort}: EADDRINUSE`));
          assert.equal(err.code, 'EADDRINUSE');
          return true;
        },
      );
      await assert.rejects(stat(socketPath), /ENOENT/, 'the listener bound before the failure was closed');
    } finally {
      taken.close();
    }
  });

  it('startServer serves listeners bound beforehand, greeting a client that connected before it started', async () => {
    const directoryFile = path.join(dir, 'directory.yaml');
    await writeFile(directoryFile, DEMO_DIRECTORY);
    const cfg = config(
      [
        { name: 'mx', protocol: 'smtp', address: ['127.0.0.1', '::1'], port: 0 },
        { name: 'imap', protocol: 'imap', address: '127.0.0.1', port: 0 },
      ],
      {
        hostname: 'mx.test.example',
        data_dir: path.join(dir, 'data'),
        mail: { root: path.join(dir, 'mail') },
        directory: { backend: 'file', file: { path: directoryFile } },
      },
    );
    let bound: BoundListeners | undefined = await bindListeners(cfg);
    const port = (bound.get('mx')!.address() as { port: number }).port;
    const early = await connect(port, '::1');
    try {
      const runtime = await startServer(cfg, silentLogger, { bound });
      bound = undefined; // the runtime owns it now
      try {
        assert.match(await readUntil(early, /\r\n/), /^220 mx\.test\.example ESMTP/);
        assert.equal(runtime.portOf('mx'), port);
        const imap = await connect(runtime.portOf('imap'), '127.0.0.1');
        assert.match(await readUntil(imap, /\r\n/), /^\* OK /);
        imap.destroy();
        early.destroy();
      } finally {
        await runtime.shutdown();
      }
      // Shut down: the ports are closed.
      const refused = net.connect(port, '127.0.0.1');
      await assert.rejects(once(refused, 'connect'), /ECONNREFUSED/);
    } finally {
      early.destroy();
      await bound?.close();
    }
  });
});

describe('connection counts per address', () => {
  it('free the slot of an IMAP or POP3 session that went through STARTTLS once it ends', async () => {
    const srv = await startTestServer({ config: { limits: { message_size: '1M', connections_per_ip: 2 } } });
    try {
      for (let i = 0; i < 3; i++) {
        const imap = await ImapTestClient.connect(srv.imapPort);
        assert.match(await imap.greeting(), /^\* OK /, `IMAP session ${i + 1} of 3, one at a time`);
        assert.equal((await imap.startTls()).status, 'OK');
        await imap.logout();
        await waitFor(() => srv.runtime.imapSessions.size === 0);
        const pop3 = await Pop3TestClient.connect(srv.pop3Port);
        assert.equal((await pop3.greeting()).ok, true, `POP3 session ${i + 1} of 3, one at a time`);
        assert.equal((await pop3.stls()).ok, true);
        await pop3.quit();
        await waitFor(() => srv.runtime.pop3Sessions.size === 0);
      }
    } finally {
      await srv.stop();
    }
  });
});
