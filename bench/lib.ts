/**
 * What the benchmarks share: starting the compiled daemon, reading its peak RSS, and an SMTP
 * client that sends messages back to back over one connection with MAIL/RCPT/DATA pipelined
 * (as Postfix's smtp client does), optionally over TLS and with AUTH PLAIN.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
/** The project root, whether this runs from bench/ (tsx) or dist/bench/ (compiled). */
export const ROOT = path.resolve(path.dirname(SELF), '..', path.basename(path.dirname(path.dirname(SELF))) === 'dist' ? '..' : '.');

/**
 * Starts dist/src/main.js on a configuration and resolves with the port of the first listener
 * from its 'listening' log line. Logging stays at info, as in production; the rest of the log
 * is read and discarded.
 */
export async function startDaemon(configPath: string, nodeArgs: string[] = []): Promise<{ daemon: ChildProcess; port: number }> {
  const daemon = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'dist/src/main.js'), '--config', configPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    daemon.stdout!.setEncoding('utf8');
    daemon.stdout!.on('data', (d: string) => {
      buf += d;
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(buf);
      if (m) resolve(Number(m[1]));
      if (buf.length > 1 << 20) buf = '';
    });
    daemon.on('exit', (code) => reject(new Error(`daemon exited with ${code}: ${buf}`)));
  });
  return { daemon, port };
}

/** The daemon's peak resident memory in MB (VmHWM). */
export async function peakRssMb(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number((Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024).toFixed(1));
}

export async function stopDaemon(daemon: ChildProcess): Promise<void> {
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.on('exit', r));
}

export interface SenderOptions {
  port: number;
  /** Implicit TLS (465). */
  tls?: boolean;
  /** AUTH PLAIN with these credentials after EHLO. */
  auth?: { user: string; pass: string };
  sender: string;
  /** The next message to send (recipient and payload), or undefined when there is nothing left. */
  next(): { rcpt: string; payload: string } | undefined;
  /** Called with each final reply to DATA. */
  onResult(ok: boolean): void;
}

/** One connection that sends messages until next() has none, then QUITs. */
export function runSender(opts: SenderOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket: net.Socket = opts.tls
      ? tls.connect({ port: opts.port, host: '127.0.0.1', rejectUnauthorized: false })
      : net.connect(opts.port, '127.0.0.1');
    socket.setNoDelay(true);
    let buffer = '';
    let state: 'greeting' | 'ehlo' | 'auth' | 'envelope' | 'data' | 'quit' = 'greeting';
    let pending = 0;
    let payload = '';
    const send = () => {
      const item = opts.next();
      if (!item) {
        state = 'quit';
        socket.end('QUIT\r\n');
        return;
      }
      payload = item.payload;
      socket.write(`MAIL FROM:<${opts.sender}>\r\nRCPT TO:<${item.rcpt}>\r\nDATA\r\n`);
      state = 'envelope';
      pending = 3;
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf('\r\n')) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (line[3] === '-') continue;
        const code = Number(line.slice(0, 3));
        if (state === 'greeting') {
          socket.write('EHLO bench.client\r\n');
          state = 'ehlo';
        } else if (state === 'ehlo' && opts.auth) {
          socket.write(`AUTH PLAIN ${Buffer.from(`\0${opts.auth.user}\0${opts.auth.pass}`).toString('base64')}\r\n`);
          state = 'auth';
        } else if (state === 'ehlo' || state === 'auth') {
          if (state === 'auth' && code !== 235) return reject(new Error(`AUTH refused: ${line}`));
          send();
        } else if (state === 'envelope') {
          if (--pending > 0) continue;
          if (code !== 354) return reject(new Error(`DATA refused: ${line}`));
          socket.write(`${payload}.\r\n`);
          state = 'data';
        } else if (state === 'data') {
          opts.onResult(code === 250);
          send();
        }
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
}
