/**
 * The received message as a file while the checks run, and the message that is delivered after
 * them: the fields the checks add on top, any Authentication-Results field that claims our
 * authserv-id from outside removed (RFC 8601 section 5), the rest of the file as it came.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MailError, storageError } from '../errors.js';
import { readHead } from '../store/fsio.js';
import type { HeaderField } from './types.js';

/** The header block is looked at up to this size; a longer one is passed on as it is. */
const HEADER_LIMIT = 256 * 1024;

/**
 * Streams the message into `dir/name`. MESSAGE_TOO_BIG past maxBytes (the rest is read and
 * dropped, so the client gets its answer after DATA); the file is removed on any failure.
 */
export async function receiveToFile(input: Readable, dir: string, name: string, maxBytes: number): Promise<{ file: string; size: number }> {
  const file = path.join(dir, name);
  let size = 0;
  try {
    await pipeline(
      input,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length;
          if (size <= maxBytes) yield chunk;
        }
      },
      createWriteStream(file, { flags: 'wx', mode: 0o600 }),
    );
  } catch (err) {
    await fs.unlink(file).catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') throw err;
    throw storageError(err, 'receiving the message for its checks');
  }
  if (size > maxBytes) {
    await fs.unlink(file).catch(() => undefined);
    throw new MailError('MESSAGE_TOO_BIG', `message of more than ${maxBytes} bytes`);
  }
  return { file, size };
}

/** Byte offset just after the empty line that ends the header block (0 when there is none within the limit). */
function headerEnd(head: Buffer): number {
  if (head.subarray(0, 2).equals(Buffer.from('\r\n')) || head[0] === 0x0a) return 0;
  const crlf = head.indexOf('\r\n\r\n');
  const lf = head.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 4;
  if (lf >= 0) return lf + 2;
  return 0;
}

/** The header block split into fields, each with its line ends as they were. */
function splitFields(block: string): string[] {
  return block.split(/(?<=\n)(?![ \t])/).filter((f) => f.length > 0);
}

/** Is this an Authentication-Results field with our authserv-id (compared without case)? */
function claimsOurId(field: string, authservId: string): boolean {
  const match = /^authentication-results[ \t]*:[ \t\r\n]*(?:\([^)]*\)[ \t\r\n]*)?("?)([^;\s"]+)\1/i.exec(field);
  return match !== null && match[2]!.toLowerCase() === authservId.toLowerCase();
}

/** A field folded at spaces into lines of about 78 characters (RFC 5322 section 2.2.3), CRLF ends. */
export function foldField([name, value]: HeaderField): string {
  const words = value.split(' ');
  let out = `${name}:`;
  let line = out.length;
  for (const word of words) {
    if (line + 1 + word.length > 78 && line > name.length + 1) {
      out += '\r\n';
      line = 0;
    }
    out += ` ${word}`;
    line += 1 + word.length;
  }
  return `${out}\r\n`;
}

/**
 * The message to deliver: `add` on top, then the received header block without forged
 * Authentication-Results fields of ours, then the rest of the file.
 */
export async function composeMessage(file: string, add: HeaderField[], authservId: string): Promise<{ stream: Readable; removed: number }> {
  const head = await readHead(file, HEADER_LIMIT);
  const end = headerEnd(head);
  const fields = end > 0 ? splitFields(head.subarray(0, end).toString('latin1')) : [];
  const kept = fields.filter((f) => !claimsOurId(f, authservId));
  const top = Buffer.from(add.map(foldField).join(''), 'utf8');
  const headerBlock = end > 0 ? Buffer.from(kept.join(''), 'latin1') : Buffer.alloc(0);
  async function* parts(): AsyncGenerator<Buffer> {
    yield top;
    if (headerBlock.length) yield headerBlock;
    for await (const chunk of createReadStream(file, { start: end, highWaterMark: 256 * 1024 })) yield chunk as Buffer;
  }
  return { stream: Readable.from(parts(), { objectMode: false }), removed: fields.length - kept.length };
}
