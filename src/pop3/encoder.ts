/**
 * Turns a stored message (LF line ends, as Maildir keeps it) into the body of a RETR or TOP
 * response, chunk by chunk, so a message of any size streams in constant memory:
 * - bare LF becomes CRLF (CRLF stays as it is), RFC 1939 section 3;
 * - a line that begins with "." gets another "." in front (byte-stuffing, RFC 1939 section 3);
 * - TOP n k (RFC 1939 section 7): the header, the blank line, then at most k body lines;
 * - the end: CRLF if the message did not end with a line end, then ".".
 * The dot-stuffing is not part of the size LIST reports (the size is the message's, with CRLF
 * line ends: what a client stores after un-stuffing).
 */

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

export class MessageEncoder {
  /** Body lines still allowed after the header (TOP); undefined: the whole message. */
  #bodyLinesLeft: number | undefined;
  #inBody = false;
  #atLineStart = true;
  /** Bytes of the current line so far (to recognise the empty line that ends the header). */
  #lineBytes = 0;
  #lastByte = -1;
  #done = false;
  /** Message bytes emitted without the stuffing dots (the "size" of what was sent). */
  messageBytes = 0;

  constructor(opts: { bodyLines?: number } = {}) {
    this.#bodyLinesLeft = opts.bodyLines;
  }

  /** True once TOP's line count is reached: the rest of the file is not needed. */
  get done(): boolean {
    return this.#done;
  }

  /** Encodes one chunk of the stored file. */
  push(chunk: Buffer): Buffer {
    if (this.#done || chunk.length === 0) return Buffer.alloc(0);
    // Worst case every byte doubles (LF -> CRLF, "." at a line start -> "..").
    const out = Buffer.allocUnsafe(chunk.length * 2);
    let w = 0;
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.#atLineStart && chunk[pos] === DOT) out[w++] = DOT;
      const lf = chunk.indexOf(LF, pos);
      const end = lf === -1 ? n : lf;
      if (end > pos) {
        w += chunk.copy(out, w, pos, end);
        this.messageBytes += end - pos;
        this.#lineBytes += end - pos;
        this.#lastByte = chunk[end - 1]!;
        this.#atLineStart = false;
      }
      if (lf === -1) break;
      // A line end: CRLF, whatever the file had.
      const emptyLine = this.#lineBytes === 0 || (this.#lineBytes === 1 && this.#lastByte === CR);
      if (this.#lastByte !== CR || this.#lineBytes === 0) {
        out[w++] = CR;
        this.messageBytes++;
      }
      out[w++] = LF;
      this.messageBytes++;
      pos = lf + 1;
      this.#atLineStart = true;
      this.#lineBytes = 0;
      this.#lastByte = LF;
      if (this.#bodyLinesLeft !== undefined) {
        if (!this.#inBody) {
          if (emptyLine) {
            this.#inBody = true;
            if (this.#bodyLinesLeft === 0) this.#done = true;
          }
        } else if (--this.#bodyLinesLeft <= 0) {
          this.#done = true;
        }
        if (this.#done) break;
      }
    }
    return out.subarray(0, w);
  }

  /** The end of the response: a line end if the message lacked a final one, then ".". */
  finish(): Buffer {
    return Buffer.from(this.#atLineStart ? '.\r\n' : '\r\n.\r\n', 'latin1');
  }
}
