/**
 * The received message while the checks run (in memory up to 256 KiB, as most mail is, else in
 * a file), and the message that is delivered after them: the fields the checks add on top, any
 * Authentication-Results field that claims our authserv-id from outside removed (RFC 8601
 * section 5), the rest as it came.
 */
import { createReadStream } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { joinChunks } from '../buffers.js';
import { MailError, storageError } from '../errors.js';
import { readHead, writeAll } from '../store/fsio.js';
import type { HeaderField } from './types.js';

/** The header block is looked at up to this size; a longer one is passed on as it is. */
const HEADER_LIMIT = 256 * 1024;
/** Messages up to this size are checked in memory; larger ones from a file. */
const MEMORY_LIMIT = 256 * 1024;

/** A received message: its bytes in memory, or the file holding them. */
export interface HeldMessage {
  size: number;
  data?: Buffer;
  file?: string;
}

/**
 * Receives the message, in memory or (past MEMORY_LIMIT) into `dir/name`. MESSAGE_TOO_BIG past
 * maxBytes: the rest is read and dropped, so the client gets its answer after DATA. A file is
 * removed on any failure.
 */
export async function receiveMessage(input: Readable, dir: string, name: string, maxBytes: number): Promise<HeldMessage> {
  let size = 0;
  let chunks: Buffer[] = [];
  let fh: FileHandle | undefined;
  const file = path.join(dir, name);
  const drop = async () => {
    chunks = [];
    if (fh) {
      await fh.close().catch(() => undefined);
      await fs.unlink(file).catch(() => undefined);
      fh = undefined;
    }
  };
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        if (chunks.length || fh) await drop();
        continue;
      }
      chunks.push(chunk);
      if (!fh && size > MEMORY_LIMIT) fh = await fs.open(file, 'wx', 0o600);
      if (fh && chunks.length >= 16) {
        await writeAll(fh, chunks);
        chunks = [];
      }
    }
    if (size > maxBytes) throw new MailError('MESSAGE_TOO_BIG', `message of more than ${maxBytes} bytes`);
    if (!fh) return { size, data: joinChunks(chunks, size) };
    await writeAll(fh, chunks);
    await fh.close();
    return { size, file };
  } catch (err) {
    await drop();
    if (err instanceof MailError || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') throw err;
    throw storageError(err, 'receiving the message for its checks');
  }
}

/** The message as a stream (for the verifiers and scanners). */
export function openHeld(message: HeldMessage): Readable {
  return message.file ? createReadStream(message.file, { highWaterMark: 256 * 1024 }) : Readable.from([message.data ?? Buffer.alloc(0)]);
}

/** Writes a message held in memory into `dir/name` (for checks that read a file); returns the file. */
export async function materialize(message: HeldMessage, dir: string, name: string): Promise<string> {
  if (message.file) return message.file;
  const file = path.join(dir, name);
  const fh = await fs.open(file, 'wx', 0o600);
  try {
    await writeAll(fh, [message.data ?? Buffer.alloc(0)]);
  } finally {
    await fh.close();
  }
  message.file = file;
  return file;
}

/** Byte offset just after the empty line that ends the header block (0 when there is none within the limit). */
const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

function headerEnd(head: Buffer): number {
  if ((head[0] === 0x0d && head[1] === 0x0a) || head[0] === 0x0a) return 0;
  const crlf = head.indexOf(CRLFCRLF);
  const lf = head.indexOf(LFLF);
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 4;
  if (lf >= 0) return lf + 2;
  return 0;
}

/** The header block split into fields, each with its line ends as they were. */
function splitFields(block: string): string[] {
  return block.split(/(?<=\n)(?![ \t])/).filter((f) => f.length > 0);
}

/** A field's name in lower case. */
function fieldName(field: string): string {
  return field
    .slice(0, Math.max(0, field.indexOf(':')))
    .trim()
    .toLowerCase();
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
 * Authentication-Results fields of ours and without the fields `remove` names, then the rest.
 */
export async function composeMessage(
  message: HeldMessage,
  add: HeaderField[],
  authservId: string,
  remove: ReadonlyArray<[name: string, index: number]> = [],
): Promise<{ stream: Readable; removed: number }> {
  const head = message.data ? message.data.subarray(0, HEADER_LIMIT) : await readHead(message.file!, HEADER_LIMIT);
  const end = headerEnd(head);
  const top = Buffer.from(add.map(foldField).join(''), 'utf8');
  const block = end > 0 ? head.subarray(0, end).toString('latin1') : '';
  // Most messages have no field to remove: they are passed on as they came, without a copy.
  const lower = block.toLowerCase();
  if (message.data && !lower.includes('authentication-results') && !remove.some(([name]) => lower.includes(name.toLowerCase()))) {
    return { stream: Readable.from([top, message.data], { objectMode: false }), removed: 0 };
  }
  const fields = end > 0 ? splitFields(block) : [];
  // remove: [name, n] drops the n-th field of that name (1-based, as milters count), 0 every one.
  const seen = new Map<string, number>();
  const kept = fields.filter((f) => {
    const name = fieldName(f);
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    if (remove.some(([r, index]) => r.toLowerCase() === name && (index === 0 || index === n))) return false;
    return !claimsOurId(f, authservId);
  });
  const headerBlock = end > 0 ? Buffer.from(kept.join(''), 'latin1') : Buffer.alloc(0);
  const removed = fields.length - kept.length;
  if (message.data) return { stream: Readable.from([top, headerBlock, message.data.subarray(end)], { objectMode: false }), removed };
  const file = message.file!;
  async function* parts(): AsyncGenerator<Buffer> {
    yield top;
    if (headerBlock.length) yield headerBlock;
    for await (const chunk of createReadStream(file, { start: end, highWaterMark: 256 * 1024 })) yield chunk as Buffer;
  }
  return { stream: Readable.from(parts(), { objectMode: false }), removed };
}
