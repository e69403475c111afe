/**
 * Splits the client's bytes into ManageSieve commands (RFC 5804 section 4): a command is one
 * line, except that a line ending in a literal marker {N+} or {N} goes on with N octets and then
 * more of the line. The client sends literal octets at once in both forms (ManageSieve has no
 * continuation for literals). Memory is bounded: the text of a command by `lineLength`, its
 * literals by `literalSize`; an over-long line or literal is not kept but reported once the
 * command ends (its bytes dropped up to then).
 */

/** A command as sent: text pieces, each but the last followed by a literal. */
export interface RawCommand {
  pieces: Buffer[];
  literals: Buffer[];
}

export type ReaderOutput =
  | { command: RawCommand }
  | { tooLong: true }
  | { literalTooLarge: true }
  /** A literal length that cannot be read past: the connection must end. */
  | { fatal: string };

const LF = 0x0a;
const CR = 0x0d;
const LITERAL_MARKER = /\{(\d{1,15})(\+?)\}$/;

export class CommandReader {
  readonly #lineLength: number;
  readonly #literalSize: number;
  #pieces: Buffer[] = [];
  #literals: Buffer[] = [];
  /** The unfinished line. */
  #partial: Buffer[] = [];
  #partialLength = 0;
  /** Text octets of this command so far. */
  #textLength = 0;
  /** Literal octets of this command so far. */
  #literalLength = 0;
  /** Octets of a literal still to come, and where they go. */
  #literalLeft = 0;
  #literalParts: Buffer[] = [];
  /** The command overran a limit: its bytes are dropped until it ends. */
  #overrun: 'tooLong' | 'literalTooLarge' | undefined;
  #fatal = false;
  #tail = Buffer.alloc(0);

  constructor(lineLength: number, literalSize: number) {
    this.#lineLength = lineLength;
    this.#literalSize = literalSize;
  }

  push(chunk: Buffer): ReaderOutput[] {
    const out: ReaderOutput[] = [];
    let pos = 0;
    while (pos < chunk.length && !this.#fatal) {
      if (this.#literalLeft > 0) {
        const take = Math.min(this.#literalLeft, chunk.length - pos);
        if (!this.#overrun) this.#literalParts.push(Buffer.from(chunk.subarray(pos, pos + take)));
        this.#literalLeft -= take;
        pos += take;
        if (this.#literalLeft === 0 && !this.#overrun) {
          this.#literals.push(Buffer.concat(this.#literalParts));
          this.#literalParts = [];
        }
        continue;
      }
      const lf = chunk.indexOf(LF, pos);
      const end = lf === -1 ? chunk.length : lf;
      const piece = chunk.subarray(pos, end);
      if (!this.#overrun) {
        this.#partialLength += piece.length;
        if (this.#textLength + this.#partialLength > this.#lineLength + 1) this.#overflow('tooLong');
        else this.#partial.push(Buffer.from(piece));
      }
      // Of a dropped line only its end is kept: a literal marker there says how much to skip.
      if (this.#overrun) this.#tail = Buffer.concat([this.#tail, piece]).subarray(-24);
      if (lf === -1) break;
      pos = lf + 1;
      const result = this.#endOfLine();
      if (result) out.push(result);
    }
    return out;
  }

  #overflow(kind: 'tooLong' | 'literalTooLarge'): void {
    this.#overrun = kind;
    this.#tail = Buffer.concat(this.#partial).subarray(-24);
    this.#partial = [];
    this.#pieces = [];
    this.#literals = [];
    this.#literalParts = [];
  }

  /** A line ended: either a literal follows, or the command is complete. */
  #endOfLine(): ReaderOutput | undefined {
    let line = this.#overrun ? this.#tail : Buffer.concat(this.#partial);
    this.#tail = Buffer.alloc(0);
    this.#partial = [];
    this.#partialLength = 0;
    if (line.length && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    // The marker is looked for even in an overrun command: its octets must be skipped, not read as commands.
    const tail = line.subarray(Math.max(0, line.length - 20)).toString('latin1');
    const marker = LITERAL_MARKER.exec(tail);
    if (marker) {
      const size = Number(marker[1]);
      // Octets of a refused literal are read and dropped, up to a bound: past it the client is
      // not worth reading (it would take hours), and the connection ends.
      if (size > this.#literalSize * 4 + 65_536) {
        this.#fatal = true;
        return { fatal: 'Literal too large.' };
      }
      if (!this.#overrun) {
        this.#textLength += line.length;
        this.#pieces.push(line.subarray(0, line.length - marker[0].length));
        if (this.#literalLength + size > this.#literalSize) this.#overflow('literalTooLarge');
        else this.#literalLength += size;
      }
      this.#literalLeft = size;
      if (size === 0 && !this.#overrun) this.#literals.push(Buffer.alloc(0));
      return undefined;
    }
    const overrun = this.#overrun;
    const command = { pieces: [...this.#pieces, line], literals: this.#literals };
    this.#reset();
    if (overrun === 'tooLong') return { tooLong: true };
    if (overrun === 'literalTooLarge') return { literalTooLarge: true };
    return { command };
  }

  #reset(): void {
    this.#pieces = [];
    this.#literals = [];
    this.#literalParts = [];
    this.#partial = [];
    this.#tail = Buffer.alloc(0);
    this.#partialLength = 0;
    this.#textLength = 0;
    this.#literalLength = 0;
    this.#literalLeft = 0;
    this.#overrun = undefined;
  }

  /** Drops what is buffered (STARTTLS: nothing sent before the handshake is used after it). */
  reset(): void {
    this.#reset();
  }
}
