/**
 * A connection to one milter: the endpoint in Postfix's smtpd_milters syntax ("inet:host:port",
 * "host:port", "unix:/path"), connecting with a deadline, writing commands and reading decoded
 * replies, each read with its own deadline. Failures are MilterIoErrors or MilterProtocolErrors.
 */
import net from 'node:net';
import { decodeReply, FrameDecoder, MilterProtocolError, type MilterReply } from './codec.js';

/** Replies read ahead of the conversation (a milter may not flood us while we send). */
const MAX_QUEUED_REPLIES = 1000;

export type MilterIoErrorCode = 'BAD_ADDRESS' | 'CONNECT_FAILED' | 'TIMEOUT' | 'CLOSED';

export class MilterIoError extends Error {
  readonly code: MilterIoErrorCode;
  constructor(code: MilterIoErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MilterIoError';
    this.code = code;
  }
}

export type MilterEndpoint = { kind: 'inet'; host: string; port: number } | { kind: 'unix'; path: string };

/** Parses "inet:host:port", "inet:[v6]:port", "host:port" or "unix:/path" (Postfix's milter8.c also takes "local:"). */
export function parseMilterAddress(address: string): MilterEndpoint {
  const unix = /^(?:unix|local):(\/.+)$/.exec(address);
  if (unix) return { kind: 'unix', path: unix[1]! };
  const inet = /^(?:inet:)?(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(address);
  const port = inet ? Number(inet[3]) : NaN;
  if (!inet || !(port >= 1 && port <= 65535)) {
    throw new MilterIoError('BAD_ADDRESS', `milter address ${JSON.stringify(address)}: expected inet:host:port, host:port or unix:/path`);
  }
  return { kind: 'inet', host: inet[1] ?? inet[2]!, port };
}

export class MilterConnection {
  private readonly decoder = new FrameDecoder();
  private readonly queued: MilterReply[] = [];
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      if (this.failure) return;
      try {
        for (const frame of this.decoder.push(chunk)) {
          this.queued.push(decodeReply(frame));
          if (this.queued.length > MAX_QUEUED_REPLIES)
            throw new MilterProtocolError('LIMIT_EXCEEDED', `more than ${MAX_QUEUED_REPLIES} unread replies`);
        }
      } catch (err) {
        this.fail(err as Error);
      }
      this.wake?.();
    });
    socket.on('end', () => {
      try {
        this.decoder.end();
        this.fail(new MilterIoError('CLOSED', 'milter closed the connection'));
      } catch (err) {
        this.fail(err as Error);
      }
    });
    socket.on('error', (err) => this.fail(new MilterIoError('CLOSED', `milter connection: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new MilterIoError('CLOSED', 'milter connection closed')));
  }

  /** Connects within timeoutMs; refused, unreachable or slow is CONNECT_FAILED or TIMEOUT. */
  static connect(endpoint: MilterEndpoint, timeoutMs: number): Promise<MilterConnection> {
    return new Promise((resolve, reject) => {
      const socket = endpoint.kind === 'unix' ? net.connect(endpoint.path) : net.connect(endpoint.port, endpoint.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MilterIoError('TIMEOUT', `milter connect: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new MilterConnection(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new MilterIoError('CONNECT_FAILED', `milter connect: ${err.message}`, { cause: err }));
      });
    });
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.socket.destroy();
    this.wake?.();
  }

  /** Writes a command; waits for the socket to drain (a milter that stops reading times out). */
  async send(packet: Buffer, timeoutMs: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.socket.write(packet)) return;
    await this.waitFor(() => !this.socket.writableNeedDrain, timeoutMs, 'write', 'drain');
  }

  /** The next reply, within timeoutMs. */
  async reply(timeoutMs: number): Promise<MilterReply> {
    await this.waitFor(() => this.queued.length > 0, timeoutMs, 'reply');
    return this.queued.shift()!;
  }

  private waitFor(ready: () => boolean, timeoutMs: number, what: string, event?: 'drain'): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (ready()) return finish(undefined);
        if (this.failure) return finish(this.failure);
      };
      const finish = (err: Error | undefined) => {
        clearTimeout(timer);
        this.wake = undefined;
        if (event) this.socket.off(event, check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => {
        const err = new MilterIoError('TIMEOUT', `milter ${what}: nothing within ${timeoutMs} ms`);
        finish(err);
        this.fail(err);
      }, timeoutMs);
      this.wake = check;
      if (event) this.socket.on(event, check);
      check();
    });
  }

  /** Sends a last command (QUIT, ABORT) if the connection still works, and closes it. */
  close(packet?: Buffer): void {
    if (packet && !this.failure) this.socket.end(packet);
    else this.socket.end();
    this.failure ??= new MilterIoError('CLOSED', 'closed');
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}
