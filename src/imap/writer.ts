/**
 * Writes responses to the client. Untagged data is built from ImapValue trees (values.ts);
 * message bodies can be streamed as literals without holding them in memory. Output is
 * bounded: past the high-water mark the writer waits for the client to read, and a client that
 * reads nothing for `stallTimeoutMs` is disconnected (RFC 3501 leaves flow control to TCP; an
 * unbounded buffer would let one client exhaust the server's memory).
 */
import { waitForDrain } from '../session/output.js';
import type { Duplex, Readable } from 'node:stream';
import { encodeValue, type ImapValue } from './values.js';

/** A literal whose bytes come from a stream of known length (a message file). */
export class StreamLiteral {
  constructor(
    readonly size: number,
    readonly open: () => Readable,
  ) {}
}

export type OutputPart = ImapValue | StreamLiteral;

export interface WriterOptions {
  highWaterMark: number;
  stallTimeoutMs: number;
  utf8?: boolean;
}

export { StalledClientError } from '../session/output.js';

/** Joined response text goes out once it reaches this many characters. */
const TEXT_RUN = 16 * 1024;

/** Text safe inside a response line: printable ASCII only. */
export function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

export class ImapWriter {
  #socket: Duplex;
  readonly #opts: WriterOptions;
  utf8: boolean;
  /** Bytes written over the session, for the logout log line. */
  bytesOut = 0;
  /** A streamed literal is half sent: nothing else may go out until it is complete. */
  #inLiteral = false;

  constructor(socket: Duplex, opts: WriterOptions) {
    this.#socket = socket;
    this.#opts = opts;
    this.utf8 = opts.utf8 ?? false;
  }

  /** The socket changes after STARTTLS. */
  setSocket(socket: Duplex): void {
    this.#uncork();
    this.#socket = socket;
  }

  /** The socket while its writes are held back (corked) until the end of this tick. */
  #corked: Duplex | undefined;

  /**
   * Holds writes back until the end of the current tick, so the lines one command (or one
   * IDLE push) produces leave in one write: a response, its literal and its closing parenthesis
   * are one system call and, over TLS, one record (the socket has TCP_NODELAY).
   */
  #cork(): void {
    if (this.#corked) return;
    const socket = this.#socket;
    this.#corked = socket;
    socket.cork();
    process.nextTick(() => {
      if (this.#corked !== socket) return;
      this.#flushText();
      this.#corked = undefined;
      socket.uncork();
    });
  }

  /** Sends what is held back now (before a tagged reply, a continuation, or a wait for drain). */
  #uncork(): void {
    const socket = this.#corked;
    if (!socket) return;
    this.#flushText();
    this.#corked = undefined;
    socket.uncork();
  }

  /**
   * Response text written while corked, joined: one socket write per run of lines (up to
   * TEXT_RUN characters) rather than one per line, which for a FETCH of many messages saved a
   * stream chunk and a string conversion per line.
   */
  #text = '';

  #flushText(): void {
    if (!this.#text) return;
    const text = this.#text;
    this.#text = '';
    if (!this.destroyed) this.#socket.write(text);
  }

  /**
   * True while a message literal is being streamed. A BYE that must go out now (the client
   * floods, the server shuts down) would land inside the literal's bytes and be read as message
   * data, so the session closes without it then.
   */
  get inLiteral(): boolean {
    return this.#inLiteral;
  }

  get destroyed(): boolean {
    return this.#socket.destroyed || !this.#socket.writable;
  }

  #raw(data: string | Buffer): void {
    if (this.destroyed) return;
    this.#cork();
    if (typeof data === 'string') {
      this.bytesOut += Buffer.byteLength(data);
      this.#text += data;
      if (this.#text.length >= TEXT_RUN) this.#flushText();
      return;
    }
    this.bytesOut += data.length;
    this.#flushText();
    this.#socket.write(data);
  }

  /** Waits while the client is behind by more than the high-water mark. */
  async flowControl(): Promise<void> {
    this.#flushText();
    const socket = this.#socket;
    if (this.destroyed || socket.writableLength <= this.#opts.highWaterMark) return;
    this.#uncork();
    await waitForDrain(socket, this.#opts.highWaterMark, this.#opts.stallTimeoutMs);
  }

  /** `* <text>` */
  untagged(text: string): void {
    this.#raw(`* ${text}\r\n`);
  }

  /** Hands the text held back to the socket now (the session is about to end the connection). */
  flushHeld(): void {
    this.#flushText();
  }

  /**
   * The tagged completion. Its text is resp-text, printable 7-bit only (RFC 3501 section 9:
   * TEXT-CHAR); error texts may quote what the client sent, so anything else becomes '?'.
   */
  tagged(tag: string, status: 'OK' | 'NO' | 'BAD', text: string, code?: string): void {
    this.#raw(`${tag} ${status} ${code ? `[${code}] ` : ''}${printable(text)}\r\n`);
    this.#uncork();
  }

  continuation(text = ''): void {
    this.#raw(`+ ${text}\r\n`);
    this.#uncork();
  }

  /**
   * Writes one response line made of parts: Atom for verbatim text, other values encoded
   * (strings quoted or as literals), StreamLiteral streamed. No spaces are added. E.g. one FETCH
   * response with a BODY[] literal streamed from the message file.
   */
  async write(parts: OutputPart[]): Promise<void> {
    let pending: Array<string | Buffer> = [];
    const flush = () => {
      // One write per run of text, not one per part.
      let text = '';
      for (const o of pending) {
        if (typeof o === 'string') text += o;
        else {
          if (text) this.#raw(text);
          text = '';
          this.#raw(o);
        }
      }
      if (text) this.#raw(text);
      pending = [];
    };
    for (const p of parts) {
      if (p instanceof StreamLiteral) {
        pending.push(`{${p.size}}\r\n`);
        flush();
        let sent = 0;
        this.#inLiteral = true;
        try {
          for await (const chunk of p.open() as AsyncIterable<Buffer>) {
            if (this.destroyed) break;
            const piece = sent + chunk.length > p.size ? chunk.subarray(0, p.size - sent) : chunk;
            this.#raw(piece);
            sent += piece.length;
            await this.flowControl();
          }
          // The announced size is a promise to the client: pad if the file shrank meanwhile.
          if (sent < p.size) this.#raw(Buffer.alloc(p.size - sent, 0x20));
        } catch (err) {
          // Half a literal cannot be taken back, and anything written now would be read as its
          // bytes: the connection ends here (a read error, or a client that stopped reading).
          this.#socket.destroy();
          throw err;
        } finally {
          this.#inLiteral = false;
        }
      } else {
        encodeValue(p, pending, this.utf8);
      }
    }
    pending.push('\r\n');
    flush();
    await this.flowControl();
  }
}
