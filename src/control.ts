/**
 * The control socket: how the CLI asks the running daemon to act on its queue (Postfix's
 * postqueue talks to qmgr through a fifo the same way). A unix socket in data_dir, mode 0600, so
 * only the daemon's user (and root) may use it. One JSON request per connection, one JSON reply.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from './log.js';
import type { Queue } from './queue/queue.js';

/** What the queue commands ask (maild queue flush/delete/hold/release). */
export type QueueControlRequest =
  | { cmd: 'flush'; id?: string }
  | { cmd: 'delete'; id: string }
  | { cmd: 'delete-all' }
  | { cmd: 'hold'; id: string }
  | { cmd: 'release'; id: string };

/** ping (maild health): is the daemon alive? count: messages in the queue. */
export type ControlRequest = QueueControlRequest | { cmd: 'ping' };

export type ControlReply = { ok: true; count: number } | { ok: false; error: string };

export function controlSocketPath(dataDir: string): string {
  return path.join(dataDir, 'control.sock');
}

const MAX_REQUEST = 4096;

async function handle(queue: Queue, req: ControlRequest): Promise<ControlReply> {
  switch (req.cmd) {
    case 'ping':
      return { ok: true, count: queue.list().length };
    case 'flush':
      if (req.id && !queue.has(req.id)) return { ok: false, error: `no message ${req.id} in the queue` };
      return { ok: true, count: queue.flush(req.id) };
    case 'delete':
      return (await queue.delete(req.id)) ? { ok: true, count: 1 } : { ok: false, error: `no message ${req.id} in the queue` };
    case 'delete-all': {
      let n = 0;
      for (const m of queue.list()) if (await queue.delete(m.id)) n++;
      return { ok: true, count: n };
    }
    case 'hold':
    case 'release':
      return (await queue.setHeld(req.id, req.cmd === 'hold'))
        ? { ok: true, count: 1 }
        : { ok: false, error: `no message ${req.id} in the queue` };
    default:
      return { ok: false, error: 'unknown command' };
  }
}

/**
 * Removes the unix socket a crashed process left at `path` (listen() would fail with
 * EADDRINUSE), as Postfix and Dovecot do. Anything that is not a socket is left alone.
 */
export async function prepareUnixSocket(path: string): Promise<void> {
  const st = await fs.lstat(path).catch(() => undefined);
  if (st?.isSocket()) await fs.unlink(path);
}

export async function startControlServer(dataDir: string, queue: Queue, logger: Logger): Promise<{ close(): Promise<void> }> {
  const file = controlSocketPath(dataDir);
  await prepareUnixSocket(file);
  const server = net.createServer((socket) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.setTimeout(30_000, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.length > MAX_REQUEST) return socket.destroy();
      const nl = data.indexOf('\n');
      if (nl === -1) return;
      let req: ControlRequest;
      try {
        req = JSON.parse(data.slice(0, nl)) as ControlRequest;
      } catch {
        socket.end(`${JSON.stringify({ ok: false, error: 'bad request' })}\n`);
        return;
      }
      // Health checks ping every few seconds: not worth a log line each.
      if (req.cmd !== 'ping') logger.info({ request: req }, 'control request');
      handle(queue, req).then(
        (reply) => socket.end(`${JSON.stringify(reply)}\n`),
        (err: unknown) => socket.end(`${JSON.stringify({ ok: false, error: (err as Error).message })}\n`),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  await fs.chmod(file, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void fs.unlink(file).catch(() => undefined);
      }),
  };
}

/** Sends one request to the daemon; undefined when no daemon is listening. */
export async function sendControl(dataDir: string, req: ControlRequest, timeoutMs = 60_000): Promise<ControlReply | undefined> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(controlSocketPath(dataDir));
    let data = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('the daemon did not answer in time')));
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (c: string) => (data += c));
    socket.on('end', () => {
      try {
        resolve(JSON.parse(data) as ControlReply);
      } catch {
        reject(new Error('bad reply from the daemon'));
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(undefined);
      else reject(err);
    });
  });
}
