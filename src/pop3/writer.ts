/**
 * Writes POP3 responses (RFC 1939 section 3: "+OK"/"-ERR" status lines, multi-line responses
 * ended by "."). Output is bounded: past the high-water mark the writer waits for the client to
 * read (RETR of a large message streams at the client's pace), and a client that reads nothing
 * for `stallTimeoutMs` is disconnected.
 */
import { waitForDrain } from '../session/output.js';
import type { Duplex } from 'node:stream';

export interface Pop3WriterOptions {
  highWaterMark: number;
  stallTimeoutMs: number;
}

export { StalledClientError } from '../session/output.js';

/** Text safe in a response line: printable ASCII only (RFC 2449 section 4: responses are 7-bit). */
export function printable(text: string, max = 200): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

/** The line "+OK text" with its CRLF. */
export function okLine(text = ''): string {
  return text ? `+OK ${printable(text, 500)}\r\n` : '+OK\r\n';
}

export class Pop3Writer {
  #socket: Duplex;
  readonly #opts: Pop3WriterOptions;
  bytesOut = 0;

  constructor(socket: Duplex, opts: Pop3WriterOptions) {
    this.#socket = socket;
    this.#opts = opts;
  }

  /** The socket changes after STLS. */
  setSocket(socket: Duplex): void {
    this.#socket = socket;
  }

  get destroyed(): boolean {
    return this.#socket.destroyed || !this.#socket.writable;
  }

  /** Raw bytes (a line of a multi-line response, a chunk of a message). */
  raw(data: string | Buffer): void {
    if (this.destroyed) return;
    this.bytesOut += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.#socket.write(data);
  }

  /** "+OK text" */
  ok(text = ''): void {
    this.raw(okLine(text));
  }

  /** "-ERR [CODE] text" (RFC 2449 section 8: the response code in brackets right after -ERR). */
  err(text: string, code?: string): void {
    this.raw(`-ERR ${code ? `[${code}] ` : ''}${printable(text, 400)}\r\n`);
  }

  /** SASL continuation (RFC 5034 section 4): "+ " and the base64 challenge. */
  continuation(base64 = ''): void {
    this.raw(`+ ${base64}\r\n`);
  }

  /**
   * The lines of a multi-line response after its status line, dot-stuffed, and the final ".",
   * written in batches with flow control in between.
   */
  async lines(lines: Iterable<string>): Promise<void> {
    let batch: string[] = [];
    let size = 0;
    for (const line of lines) {
      const l = line.startsWith('.') ? `.${line}` : line;
      batch.push(l);
      size += l.length + 2;
      if (size >= 16_384) {
        this.raw(`${batch.join('\r\n')}\r\n`);
        batch = [];
        size = 0;
        await this.flowControl();
      }
    }
    batch.push('.');
    this.raw(`${batch.join('\r\n')}\r\n`);
    await this.flowControl();
  }

  /** Waits while the client is behind by more than the high-water mark. */
  async flowControl(): Promise<void> {
    const socket = this.#socket;
    if (this.destroyed || socket.writableLength <= this.#opts.highWaterMark) return;
    await waitForDrain(socket, this.#opts.highWaterMark, this.#opts.stallTimeoutMs);
  }
}
