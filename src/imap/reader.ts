/**
 * Assembles IMAP commands from the byte stream: lines (RFC 3501 section 2.2) interleaved with
 * literals (section 4.3: `{N}` synchronising, RFC 7888 `{N+}` non-synchronising). The session
 * decides each literal before any of it is read, so an oversized literal is refused before the
 * client sends it and memory never grows past the limits.
 *
 * A command is delivered as segments: text up to and including each literal marker, then the
 * literal's bytes, and so on; parser.ts turns those into tokens.
 */

export type Segment = { text: Buffer } | { literal: Buffer };

export interface LiteralRequest {
  /** The command's text so far (tag and command name are at its start). */
  partial: Buffer;
  size: number;
  /** {N+}: the client sends the data without waiting for a continuation. */
  nonSync: boolean;
  /** Bytes of this command so far, literals included (a limit on the whole command). */
  sizeSoFar: number;
}

/** accept: read the literal; reject: abort this command (the session has answered it). */
export type LiteralDecision = { accept: true } | { accept: false; closeConnection?: boolean };

export interface ReaderHooks {
  /** A complete command (or a continuation line, in line mode). */
  onCommand(segments: Segment[]): void;
  /** Decide a literal; for an accepted synchronising literal the session sends "+ ...". */
  onLiteral(req: LiteralRequest): LiteralDecision;
  /** A line went past the limit: the session says BYE and closes. */
  onLineTooLong(): void;
  /** A rejected non-synchronising literal that is too large to skip: close. */
  onProtocolError(message: string): void;
}

export interface ReaderLimits {
  /** Longest line (without literals), RFC 7162 section 4 recommends at least 8192. */
  maxLineLength: number;
  /** Largest rejected non-synchronising literal that is read and discarded rather than closing. */
  maxDiscard: number;
}

const LF = 0x0a;

export class ImapReader {
  readonly #hooks: ReaderHooks;
  readonly #limits: ReaderLimits;
  #line: Buffer[] = [];
  #lineLength = 0;
  #segments: Segment[] = [];
  #segmentsLength = 0;
  /** Bytes still expected for the current literal; -1 outside a literal. */
  #literalLeft = -1;
  #literalParts: Buffer[] = [];
  /** Bytes of a rejected non-synchronising literal still to skip. */
  #discardLeft = 0;
  #paused = false;
  #queue: Buffer[] = [];
  #closed = false;

  constructor(hooks: ReaderHooks, limits: ReaderLimits) {
    this.#hooks = hooks;
    this.#limits = limits;
  }

  /** Stops delivering commands until resume() (the session runs one command at a time). */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const queued = this.#queue;
    this.#queue = [];
    for (const chunk of queued) {
      if (this.#paused || this.#closed) {
        this.#queue.push(chunk);
        continue;
      }
      this.#consume(chunk);
    }
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  /** Bytes held back while paused, so the session can bound a client that floods. */
  get queuedBytes(): number {
    return this.#queue.reduce((n, b) => n + b.length, 0);
  }

  push(chunk: Buffer): void {
    if (this.#closed) return;
    if (this.#paused) {
      this.#queue.push(chunk);
      return;
    }
    this.#consume(chunk);
  }

  #consume(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && !this.#closed) {
      if (this.#paused) {
        this.#queue.push(chunk.subarray(pos));
        return;
      }
      if (this.#discardLeft > 0) {
        const n = Math.min(this.#discardLeft, chunk.length - pos);
        this.#discardLeft -= n;
        pos += n;
        continue;
      }
      if (this.#literalLeft >= 0) {
        const n = Math.min(this.#literalLeft, chunk.length - pos);
        if (n > 0) this.#literalParts.push(chunk.subarray(pos, pos + n));
        this.#literalLeft -= n;
        pos += n;
        if (this.#literalLeft === 0) {
          const literal = Buffer.concat(this.#literalParts);
          this.#literalParts = [];
          this.#literalLeft = -1;
          this.#segments.push({ literal });
          this.#segmentsLength += literal.length;
        }
        continue;
      }
      const nl = chunk.indexOf(LF, pos);
      const end = nl === -1 ? chunk.length : nl + 1;
      const piece = chunk.subarray(pos, end);
      this.#lineLength += piece.length;
      if (this.#lineLength > this.#limits.maxLineLength + 2) {
        this.#closed = true;
        this.#hooks.onLineTooLong();
        return;
      }
      this.#line.push(piece);
      pos = end;
      if (nl !== -1) this.#endOfLine();
    }
  }

  #endOfLine(): void {
    let line = this.#line.length === 1 ? this.#line[0]! : Buffer.concat(this.#line);
    this.#line = [];
    this.#lineLength = 0;
    // Strip CRLF (a bare LF is accepted, as most servers do).
    let end = line.length - 1;
    if (end > 0 && line[end - 1] === 0x0d) end--;
    line = line.subarray(0, end);
    const marker = /\{(\d{1,20})(\+?)\}$/.exec(line.toString('latin1').slice(-24));
    if (!marker) {
      this.#segments.push({ text: line });
      const segments = this.#segments;
      this.#segments = [];
      this.#segmentsLength = 0;
      this.#hooks.onCommand(segments);
      return;
    }
    this.#segments.push({ text: line });
    this.#segmentsLength += line.length;
    const size = Number(marker[1]);
    const nonSync = marker[2] === '+';
    const partial = Buffer.concat(this.#segments.map((s) => ('text' in s ? s.text : Buffer.alloc(0))));
    const decision = this.#hooks.onLiteral({
      partial,
      size: Number.isSafeInteger(size) ? size : Number.MAX_SAFE_INTEGER,
      nonSync,
      sizeSoFar: this.#segmentsLength,
    });
    if (decision.accept) {
      this.#literalLeft = size;
      if (size === 0) {
        this.#literalLeft = -1;
        this.#segments.push({ literal: Buffer.alloc(0) });
      }
      return;
    }
    this.#segments = [];
    this.#segmentsLength = 0;
    if (decision.closeConnection) {
      this.#closed = true;
      return;
    }
    if (nonSync) {
      // The client sends the data regardless (RFC 7888 section 4): skip it, or give up.
      if (size > this.#limits.maxDiscard) {
        this.#closed = true;
        this.#hooks.onProtocolError('non-synchronizing literal too large');
        return;
      }
      this.#discardLeft = size;
    }
  }
}
