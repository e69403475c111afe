/**
 * ManageSieve responses (RFC 5804 section 1.3, section 4): OK/NO/BYE with an optional response
 * code and human-readable string, and strings sent quoted when they can be, as literals {N}
 * otherwise. Output flow control as the other line protocols (src/session/output.ts).
 */
import type { Duplex } from 'node:stream';
import { waitForDrain } from '../session/output.js';

/** A string as ManageSieve sends it: quoted when short and plain, a literal otherwise. */
export function sieveString(text: string | Buffer): string {
  const s = typeof text === 'string' ? text : text.toString('utf8');
  if (Buffer.byteLength(s) <= 1024 && !/[\r\n\0]/.test(s)) return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  return `{${Buffer.byteLength(s)}}\r\n${s}`;
}

export class ManageSieveWriter {
  #socket: Duplex;
  readonly #highWaterMark: number;
  readonly #stallTimeoutMs: number;
  bytesOut = 0;

  constructor(socket: Duplex, opts: { highWaterMark: number; stallTimeoutMs: number }) {
    this.#socket = socket;
    this.#highWaterMark = opts.highWaterMark;
    this.#stallTimeoutMs = opts.stallTimeoutMs;
  }

  setSocket(socket: Duplex): void {
    this.#socket = socket;
  }

  /** Raw output; the caller ends lines with CRLF. */
  write(data: string | Buffer): void {
    if (this.#socket.destroyed || this.#socket.writableEnded) return;
    this.bytesOut += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.#socket.write(data);
  }

  line(text: string): void {
    this.write(`${text}\r\n`);
  }

  #status(status: 'OK' | 'NO' | 'BYE', code: string | undefined, text: string | undefined): void {
    let out = status;
    if (code) out += ` (${code})`;
    if (text !== undefined) out += ` ${sieveString(text)}`;
    this.line(out);
  }

  ok(text?: string, code?: string): void {
    this.#status('OK', code, text);
  }

  no(text: string, code?: string): void {
    this.#status('NO', code, text);
  }

  bye(text: string, code?: string): void {
    this.#status('BYE', code, text);
  }

  /** Waits while the client is far behind in reading (see waitForDrain). */
  flowControl(): Promise<void> {
    return waitForDrain(this.#socket, this.#highWaterMark, this.#stallTimeoutMs);
  }
}
