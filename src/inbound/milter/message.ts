/**
 * The message as milters see it: the header fields one by one (name, value) and the body as
 * bytes after the blank line. Reads the header section of the message file (bounded, as
 * Postfix's header_size_limit bounds it: what does not fit is left in the body) and streams the
 * body in chunks of at most 64 KiB - 1 bytes (mfdef.h MILTER_CHUNK_SIZE).
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { BODY_CHUNK_SIZE } from './constants.js';

/** The most header bytes read; the rest of an over-long header section is treated as body. */
export const HEADER_SECTION_LIMIT = 1024 * 1024;

/** One header field as it is in the file: its name and its raw lines (CRLF ends included). */
export interface HeaderField {
  name: string;
  raw: Buffer;
}

export interface ParsedMessage {
  headers: HeaderField[];
  /** The blank line between header and body as found ('' when the message has no body separator). */
  separator: string;
  /** Where the body starts in the file. */
  bodyOffset: number;
  size: number;
}

const FIELD_START = /^([!-9;-~]+)[ \t]*:/;

/** Parses a header section (bytes from the start of the message). */
export function parseHeaderSection(bytes: Buffer, size: number): ParsedMessage {
  const headers: HeaderField[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const nl = bytes.indexOf(10, pos);
    if (nl === -1) break; // an incomplete last line belongs to the body
    const line = bytes.toString('latin1', pos, nl + 1);
    if (line === '\r\n' || line === '\n') return { headers, separator: line, bodyOffset: nl + 1, size };
    const continued = line[0] === ' ' || line[0] === '\t';
    const last = headers[headers.length - 1];
    if (continued && last) {
      last.raw = Buffer.concat([last.raw, bytes.subarray(pos, nl + 1)]);
    } else {
      const m = FIELD_START.exec(line);
      if (!m) break; // not a header line: the body starts here, without a separator
      headers.push({ name: m[1]!, raw: bytes.subarray(pos, nl + 1) });
    }
    pos = nl + 1;
  }
  return { headers, separator: '', bodyOffset: pos, size };
}

/**
 * The value a milter gets: after the colon, without the first space (Sendmail's habit, unless
 * the milter negotiated SMFIP_HDR_LEADSPC), folded lines joined by a bare LF (milter8.c: "Sendmail
 * 8 sends multi-line headers as text separated by newline"), no line end at the end.
 */
export function headerValueForMilter(field: HeaderField, leadingSpace: boolean): Buffer {
  // latin1: one char per byte, so 8-bit bytes reach the milter as they are in the file.
  const text = field.raw.toString('latin1');
  let value = text.slice(text.indexOf(':') + 1).replace(/\r?\n$/, '');
  if (!leadingSpace && value[0] === ' ') value = value.slice(1);
  return Buffer.from(value.replace(/\r?\n/g, '\n'), 'latin1');
}

/** Reads and parses the header section of a message file. */
export async function readHeaders(file: string): Promise<ParsedMessage> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const buf = Buffer.alloc(Math.min(size, HEADER_SECTION_LIMIT));
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return parseHeaderSection(buf.subarray(0, bytesRead), size);
  } finally {
    await handle.close();
  }
}

/** The body of a message file, from offset, in chunks of at most BODY_CHUNK_SIZE bytes. */
export async function* bodyChunks(file: string, offset: number): AsyncGenerator<Buffer> {
  const stream = createReadStream(file, { start: offset, highWaterMark: BODY_CHUNK_SIZE });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    for (let i = 0; i < chunk.length; i += BODY_CHUNK_SIZE) yield chunk.subarray(i, i + BODY_CHUNK_SIZE);
  }
}
