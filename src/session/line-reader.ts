/**
 * Splits the client's bytes into command lines, for the protocols without literals (POP3, RFC
 * 1939 section 3: commands end with CRLF, a bare LF is accepted too; Dovecot's auth protocol).
 * Memory is bounded: a line longer than the limit is not kept but reported once as too long and
 * its remaining bytes are dropped up to its end.
 */

export type InputLine = { line: Buffer } | { tooLong: true };

const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  readonly #maxLength: number;
  #partial: Buffer[] = [];
  #partialLength = 0;
  /** Inside an over-long line: bytes are dropped until its LF. */
  #discarding = false;
  /** Bytes dropped of the current over-long line. */
  discarded = 0;

  constructor(maxLength: number) {
    this.#maxLength = maxLength;
  }

  /** Feeds bytes; returns the complete lines they finish. */
  push(chunk: Buffer): InputLine[] {
    const out: InputLine[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      const end = lf === -1 ? chunk.length : lf;
      if (this.#discarding) {
        this.discarded += end - pos;
        if (lf !== -1) {
          this.#discarding = false;
          this.discarded = 0;
        }
      } else {
        const piece = chunk.subarray(pos, end);
        // The limit counts the line without its CRLF (an unfinished line may still end in CR).
        let length = this.#partialLength + piece.length;
        const last = piece.length ? piece[piece.length - 1] : this.#partial.at(-1)?.at(-1);
        if (last === CR) length--;
        if (length > this.#maxLength) {
          this.#partial = [];
          this.#partialLength = 0;
          out.push({ tooLong: true });
          if (lf === -1) {
            this.#discarding = true;
            this.discarded = piece.length;
          }
        } else if (lf === -1) {
          // Copied: the chunk may be a view of a buffer that is reused.
          this.#partial.push(Buffer.from(piece));
          this.#partialLength += piece.length;
        } else {
          let line = this.#partial.length ? Buffer.concat([...this.#partial, piece]) : piece;
          this.#partial = [];
          this.#partialLength = 0;
          if (line.length && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
          out.push({ line });
        }
      }
      if (lf === -1) break;
      pos = lf + 1;
    }
    return out;
  }

  /** Drops what is buffered (STLS: nothing sent before the handshake may be used after it). */
  reset(): void {
    this.#partial = [];
    this.#partialLength = 0;
    this.#discarding = false;
    this.discarded = 0;
  }
}
