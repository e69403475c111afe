/**
 * Faster equivalents of the two per-byte loops of mailauth's message parser, the base of its
 * DKIM verifier, signer and ARC sealer (mailauth/lib/dkim/message-parser.js, pinned at 7.1.0):
 *
 * - `processChunk` looked for the end of the header section by pushing every header byte onto a
 *   four-element array and slicing it; here a search for each LF looks at the bytes before it.
 * - `ensureLinebreaks` (every bare LF becomes CRLF) visited every byte of the message; here only
 *   the LFs are visited.
 *
 * Both keep the originals' state (stateBytes, headerBytes, lastByte) and their output chunk by
 * chunk: test/unit/mailauth-speedups.test.ts runs both versions on the same inputs split at
 * every point. This module is imported before the verifiers (src/inbound/mailauth.ts).
 */
import { createRequire } from 'node:module';

interface MessageParserState {
  state: string;
  stateBytes: number[];
  headerBytes: number;
  headerChunks: Buffer[];
  lastByte?: number;
  emitHeaders(chunk?: Buffer): Promise<void>;
  nextChunk(chunk: Buffer): Promise<void>;
}

type ProcessChunk = (this: MessageParserState, chunk: Buffer) => Promise<void>;
type EnsureLinebreaks = (this: MessageParserState, input: Buffer) => Generator<Buffer>;

const LF = 0x0a;
const CR = 0x0d;
const CRLF = Buffer.from('\r\n');

const { MessageParser } = createRequire(import.meta.url)('mailauth/lib/dkim/message-parser.js') as {
  MessageParser: { prototype: { processChunk: ProcessChunk; ensureLinebreaks: EnsureLinebreaks } };
};

/** mailauth's own versions, for the differential test. */
export const originalParser = {
  processChunk: MessageParser.prototype.processChunk,
  ensureLinebreaks: MessageParser.prototype.ensureLinebreaks,
};

/** The byte `back` positions before index i of chunk, reaching into the bytes of earlier chunks. */
function byteBefore(self: MessageParserState, chunk: Buffer, i: number, back: number): number | undefined {
  const at = i - back;
  if (at >= 0) return chunk[at];
  const previous = self.stateBytes;
  return previous[previous.length + at];
}

/** Keeps the last four bytes seen, as the original does. */
function rememberTail(self: MessageParserState, chunk: Buffer, end: number): void {
  if (end >= 4) {
    self.stateBytes = [chunk[end - 4]!, chunk[end - 3]!, chunk[end - 2]!, chunk[end - 1]!];
    return;
  }
  const bytes = [...self.stateBytes];
  for (let i = 0; i < end; i++) bytes.push(chunk[i]!);
  self.stateBytes = bytes.slice(-4);
}

export const fastProcessChunk: ProcessChunk = async function (this: MessageParserState, chunk: Buffer): Promise<void> {
  if (!chunk || !chunk.length) return;
  if (this.state === 'header') {
    // RFC 5322 section 2.1: an empty line ends the header section; an empty first line means
    // there is none.
    let found = -1;
    for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
      const headerBytes = this.headerBytes + i + 1;
      const b1 = byteBefore(this, chunk, i, 1);
      if (b1 === LF || (b1 === CR && byteBefore(this, chunk, i, 2) === LF) || headerBytes === 1 || (headerBytes === 2 && b1 === CR)) {
        found = i;
        break;
      }
    }
    if (found < 0) {
      rememberTail(this, chunk, chunk.length);
      this.headerBytes += chunk.length;
      this.headerChunks.push(chunk);
      return;
    }
    rememberTail(this, chunk, found + 1);
    this.headerBytes += found + 1;
    if (found === chunk.length - 1) {
      await this.emitHeaders(chunk);
      return;
    }
    await this.emitHeaders(chunk.subarray(0, found + 1));
    chunk = chunk.subarray(found + 1);
  }
  if (this.state !== 'body') {
    this.headerChunks.push(chunk);
    return;
  }
  await this.nextChunk(chunk);
};

export const fastEnsureLinebreaks: EnsureLinebreaks = function* (this: MessageParserState, input: Buffer): Generator<Buffer> {
  let pos = 0;
  for (let i = input.indexOf(LF); i >= 0; i = input.indexOf(LF, i + 1)) {
    const before = i > 0 ? input[i - 1] : this.lastByte;
    if (before === CR) continue;
    yield i === 0 || pos === i ? Buffer.from(CRLF) : Buffer.concat([input.subarray(pos, i), CRLF]);
    pos = i + 1;
  }
  if (input.length > 0) this.lastByte = input[input.length - 1];
  if (pos === 0) yield input;
  else if (pos < input.length) yield input.subarray(pos);
};

MessageParser.prototype.processChunk = fastProcessChunk;
MessageParser.prototype.ensureLinebreaks = fastEnsureLinebreaks;
