/**
 * Line ends. Messages are stored with LF line ends, as Dovecot and Postfix store them; IMAP and
 * POP3 send them with CRLF. The W= field of a Maildir file name is the size with CRLF line ends
 * (the stored size plus the line feeds that conversion would add).
 */

import { scratchBuffer } from '../buffers.js';

const CR = Buffer.from('\r');

/** Converts LF line ends to CRLF (IMAP's form of a stored message). */
export function lfToCrlf(data: Buffer): Buffer {
  const count = bareLineFeeds(data);
  if (count === 0) return data;
  const out = Buffer.allocUnsafe(data.length + count);
  let w = 0;
  let from = 0;
  for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, i + 1)) {
    if (i > 0 && data[i - 1] === 0x0d) continue;
    w += data.copy(out, w, from, i);
    out[w++] = 0x0d;
    out[w++] = 0x0a;
    from = i + 1;
  }
  w += data.copy(out, w, from);
  return out.subarray(0, w);
}

/** Converts CRLF to LF (how messages are stored, as Dovecot and Postfix store them). */
export function crlfToLf(data: Buffer): Buffer {
  if (data.indexOf('\r\n') === -1) return data;
  const out = Buffer.allocUnsafe(data.length);
  let w = 0;
  let from = 0;
  for (let i = data.indexOf('\r\n'); i !== -1; i = data.indexOf('\r\n', i + 2)) {
    w += data.copy(out, w, from, i);
    from = i + 1;
  }
  w += data.copy(out, w, from);
  return out.subarray(0, w);
}

/** Line feeds without a CR before them: what CRLF conversion adds to the size (W=). */
export function bareLineFeeds(data: Buffer): number {
  let n = 0;
  for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, i + 1)) if (i === 0 || data[i - 1] !== 0x0d) n++;
  return n;
}

/**
 * CRLF -> LF conversion across chunk boundaries, counting what IMAP will report as the size.
 * Each input chunk becomes one output buffer (the lines copied together), so a message is
 * written with a handful of buffers rather than one per line.
 */
export class LineEndConverter {
  #pendingCR = false;
  bytes = 0;
  lineFeeds = 0;

  push(chunk: Buffer, out: Buffer[]): void {
    // An empty chunk says nothing about a CR held back from the one before.
    if (chunk.length === 0) return;
    if (this.#pendingCR) {
      this.#pendingCR = false;
      if (chunk[0] !== 0x0a) this.#emit(CR, out);
    }
    let end = chunk.length;
    if (end > 0 && chunk[end - 1] === 0x0d) {
      this.#pendingCR = true; // might be the CR of a CRLF split across chunks
      end--;
    }
    // The first LF of a CRLF (an LF alone stays as it is, and so does a CR alone).
    let lf = chunk.indexOf(0x0a);
    while (lf !== -1 && lf < end && !(lf > 0 && chunk[lf - 1] === 0x0d)) lf = chunk.indexOf(0x0a, lf + 1);
    if (lf === -1 || lf >= end) {
      if (end > 0) this.#emit(end === chunk.length ? chunk : chunk.subarray(0, end), out);
      return;
    }
    const converted = scratchBuffer(end);
    let written = 0;
    let from = 0;
    for (; lf !== -1 && lf < end; lf = chunk.indexOf(0x0a, lf + 1)) {
      if (lf === 0 || chunk[lf - 1] !== 0x0d) continue;
      converted.set(chunk.subarray(from, lf - 1), written);
      written += lf - 1 - from;
      from = lf; // keep the LF
    }
    converted.set(chunk.subarray(from, end), written);
    written += end - from;
    this.#emit(converted.subarray(0, written), out);
  }

  end(out: Buffer[]): void {
    if (this.#pendingCR) this.#emit(CR, out);
    this.#pendingCR = false;
  }

  #emit(buf: Buffer, out: Buffer[]): void {
    out.push(buf);
    this.bytes += buf.length;
    this.lineFeeds += countLineFeeds(buf);
  }
}

/** All line feeds of a text or of bytes (a header written here has LF line ends only). */
export function countLineFeeds(data: string | Buffer): number {
  let n = 0;
  if (typeof data === 'string') for (let i = data.indexOf('\n'); i !== -1; i = data.indexOf('\n', i + 1)) n++;
  else for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, i + 1)) n++;
  return n;
}
