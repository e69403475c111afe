/**
 * The queue's spool on disk, under the mail root (default <root>/.queue):
 *   msg/<id>   the message exactly as received, written once and never changed;
 *   env/<id>   its envelope (JSON): sender, recipients with their state, the headers this server
 *              prepends, attempts; replaced atomically (tmp/ -> rename) whenever it changes.
 * The envelope is the commit point: a message file without one is a crashed enqueue and is
 * removed at start-up. Both files and both directories are fsynced before enqueue resolves, so a
 * message acknowledged with 250 survives a crash or power loss (Postfix's incoming -> active).
 */
import { constants as fsConstants, createReadStream } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { MailError, storageError } from '../errors.js';
import { DirectorySyncer } from '../store/dir-sync.js';
import { readHead, replaceDurably, writeAll } from '../store/fsio.js';
import type { EnvelopeDsn, QueueRecipient } from './types.js';

/** How a recipient stands. pending: still to be tried; sent and failed are final. */
export type RecipientState = 'pending' | 'sent' | 'failed';

export interface SpooledRecipient extends QueueRecipient {
  state: RecipientState;
  attempts: number;
  /** Last reply or failure, one line: "451 4.4.1 connection refused". */
  lastError?: string;
  /** RFC 3463 status of the final or last result, e.g. "5.1.1". */
  status?: string;
  remoteMta?: string;
  /** Time of the last attempt (ms). */
  lastAttempt?: number;
  /** A failure of this recipient has been reported to the sender (bounce queued). */
  notified?: boolean;
  /** A final address (a mailbox, or a remote one): aliases were expanded already. */
  expanded?: boolean;
  /** Where it was delivered: this server's mailboxes, or another server (DSN Action delivered / relayed). */
  deliveredBy?: 'local' | 'remote';
}

export interface Envelope {
  version: 1;
  id: string;
  sender: string;
  /** Arrival time (ms since the epoch). */
  created: number;
  /** Bytes of the message file. */
  size: number;
  /** Header fields prepended on the way out, LF or CRLF line ends, ending with a line end (or ''). */
  prepend: string;
  origin: 'submission' | 'forward' | 'bounce' | 'relay' | 'inbound';
  authUser?: string;
  /** Local delivery into the folder with this special use ('\\Junk'), not INBOX. */
  folder?: string;
  /** The inbound scanners' RFC 5235 scores (Sieve spamtest/virustest at local delivery). */
  scores?: { spam?: number; virus?: number };
  /** RFC 3461 RET and ENVID. */
  dsn?: EnvelopeDsn;
  eightBit: boolean;
  /** Held by the administrator (`queue hold`): not tried until released. */
  held: boolean;
  /** A delay warning was sent. */
  warned: boolean;
  /** Delivery rounds so far. */
  attempts: number;
  /** When the next round is due (ms). */
  nextAttempt: number;
  recipients: SpooledRecipient[];
}

/** Header block kept in memory while a message streams to disk (for checks before the commit). */
const HEADER_CAPTURE_LIMIT = 256 * 1024;

export interface WriteResult {
  size: number;
  eightBit: boolean;
  /** The header block (up to and including the empty line, at most 256 KiB). */
  headers: Buffer;
  /** The header block went on beyond 256 KiB: `headers` holds only its start. */
  headersTruncated: boolean;
}

const ID_PATTERN = /^[0-9A-Z]{6,32}$/;

export function isQueueId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Finds the end of the header block: the index after the first empty line, or -1. */
function headerEnd(buf: Buffer): number {
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) {
    if (i === 0) return 1;
    if (buf[i - 1] === 0x0a) return i + 1;
    if (buf[i - 1] === 0x0d && (i === 1 || buf[i - 2] === 0x0a)) return i + 1;
  }
  return -1;
}

export class Spool {
  readonly dir: string;
  readonly #syncer = new DirectorySyncer();
  #locked = false;

  constructor(dir: string) {
    this.dir = dir;
  }

  get #msgDir(): string {
    return path.join(this.dir, 'msg');
  }
  get #envDir(): string {
    return path.join(this.dir, 'env');
  }
  get #tmpDir(): string {
    return path.join(this.dir, 'tmp');
  }

  messagePath(id: string): string {
    return path.join(this.#msgDir, id);
  }

  envelopePath(id: string): string {
    return path.join(this.#envDir, id);
  }

  async init(): Promise<void> {
    for (const d of [this.dir, this.#msgDir, this.#envDir, this.#tmpDir]) await fs.mkdir(d, { recursive: true, mode: 0o700 });
  }

  /**
   * Claims the spool for this process (a pid file, as Postfix's master.pid): two daemons
   * delivering from one spool would send every message twice. A lock left by a process that is
   * gone is taken over.
   */
  async lock(): Promise<void> {
    const file = path.join(this.dir, 'lock');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        this.#locked = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storageError(err, 'locking the queue');
      }
      const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new MailError('CONFIG_INVALID', `the queue in ${this.dir} is in use by process ${pid} (another maild?)`);
      }
      await fs.unlink(file).catch(() => undefined); // stale: its process is gone
    }
    throw new MailError('CONFIG_INVALID', `cannot lock the queue in ${this.dir}`);
  }

  /**
   * Streams a message into msg/<id> (created exclusively) and fsyncs it. Throws MESSAGE_TOO_BIG
   * beyond maxBytes (the input is still read to its end, so the protocol can answer) and
   * STORAGE_ERROR when the disk fails; the partial file is removed in both cases.
   */
  async writeMessage(id: string, input: Readable | Buffer, maxBytes: number): Promise<WriteResult> {
    const file = this.messagePath(id);
    let handle: FileHandle | undefined;
    let size = 0;
    let eightBit = false;
    let tooBig = false;
    const headerChunks: Buffer[] = [];
    let headerBytes = 0;
    let headersDone = false;
    let headersTruncated = false;
    let writeError: unknown;
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (!handle || pending.length === 0 || writeError) return;
      const bufs = pending.splice(0);
      pendingBytes = 0;
      try {
        await writeAll(handle, bufs);
      } catch (err) {
        writeError = err;
      }
    };
    try {
      handle = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    } catch (err) {
      if (!Buffer.isBuffer(input)) input.resume();
      throw storageError(err, 'creating queue file');
    }
    try {
      const chunks: AsyncIterable<Buffer> | Buffer[] = Buffer.isBuffer(input) ? [input] : (input as AsyncIterable<Buffer>);
      for await (const raw of chunks) {
        const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as string);
        size += chunk.length;
        if (size > maxBytes) tooBig = true;
        if (tooBig || writeError) continue; // keep reading so the client gets its reply
        if (!eightBit)
          for (let i = 0; i < chunk.length; i++)
            if (chunk[i]! >= 0x80) {
              eightBit = true;
              break;
            }
        if (!headersDone) {
          headerChunks.push(chunk);
          headerBytes += chunk.length;
          const joined = Buffer.concat(headerChunks);
          const end = headerEnd(joined);
          if (end !== -1 || headerBytes >= HEADER_CAPTURE_LIMIT) {
            headersDone = true;
            headersTruncated = end === -1;
            headerChunks.length = 0;
            headerChunks.push(joined.subarray(0, end === -1 ? Math.min(joined.length, HEADER_CAPTURE_LIMIT) : end));
          } else {
            headerChunks.length = 0;
            headerChunks.push(joined);
          }
        }
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= 256 * 1024) await flush();
      }
      if (tooBig) throw new MailError('MESSAGE_TOO_BIG', `message exceeds ${maxBytes} bytes`);
      await flush();
      if (writeError) throw storageError(writeError, 'writing queue file');
      await handle.sync().catch((err: unknown) => {
        throw storageError(err, 'fsync of queue file');
      });
      await handle.close();
      handle = undefined;
      return { size, eightBit, headers: Buffer.concat(headerChunks), headersTruncated };
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await fs.unlink(file).catch(() => undefined);
      throw storageError(err, 'writing queue file');
    }
  }

  /** Writes the envelope atomically (tmp/ -> env/), fsyncs it and, with `durable`, the directories. */
  async writeEnvelope(env: Envelope, opts: { messageDirToo?: boolean } = {}): Promise<void> {
    const tmp = path.join(this.#tmpDir, `${env.id}.${process.pid}.${Date.now()}`);
    try {
      await replaceDurably(this.envelopePath(env.id), JSON.stringify(env), {
        tmp,
        mode: 0o600,
        syncDir: async (envDir) => {
          await Promise.all([this.#syncer.sync(envDir), opts.messageDirToo ? this.#syncer.sync(this.#msgDir) : undefined]);
        },
      });
    } catch (err) {
      await fs.unlink(tmp).catch(() => undefined);
      throw storageError(err, 'writing envelope');
    }
  }

  async readEnvelope(id: string): Promise<Envelope | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.envelopePath(id), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw storageError(err, 'reading envelope');
    }
    const env = JSON.parse(text) as Envelope;
    if (env.version !== 1 || env.id !== id || !Array.isArray(env.recipients))
      throw new MailError('STORAGE_ERROR', `envelope ${id} is not valid`);
    return env;
  }

  /** Removes a message: the envelope first (the commit point), then the message file. */
  async remove(id: string): Promise<void> {
    await fs.unlink(this.envelopePath(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw storageError(err, 'removing envelope');
    });
    await this.#syncer.sync(this.#envDir);
    await fs.unlink(this.messagePath(id)).catch(() => undefined);
  }

  /** Removes a message file that never got its envelope (a failed enqueue). */
  async discardMessage(id: string): Promise<void> {
    await fs.unlink(this.messagePath(id)).catch(() => undefined);
  }

  /**
   * Every committed envelope. Message files without an envelope (crash during enqueue) and
   * envelopes without a message file (crash during removal) are cleaned up; left-over temporary
   * files too.
   */
  async loadAll(onBroken: (id: string, why: string) => void): Promise<Envelope[]> {
    const [envs, msgs, tmps] = await Promise.all([fs.readdir(this.#envDir), fs.readdir(this.#msgDir), fs.readdir(this.#tmpDir)]);
    for (const t of tmps) await fs.unlink(path.join(this.#tmpDir, t)).catch(() => undefined);
    const envSet = new Set(envs);
    for (const m of msgs) if (!envSet.has(m)) await fs.unlink(this.messagePath(m)).catch(() => undefined);
    const msgSet = new Set(msgs);
    const out: Envelope[] = [];
    for (const id of envs) {
      if (!isQueueId(id)) continue;
      if (!msgSet.has(id)) {
        onBroken(id, 'message file missing');
        await fs.unlink(this.envelopePath(id)).catch(() => undefined);
        continue;
      }
      try {
        const env = await this.readEnvelope(id);
        if (env) out.push(env);
      } catch (err) {
        onBroken(id, (err as Error).message);
      }
    }
    return out;
  }

  /** Every readable envelope, without cleaning anything up (for `queue list` beside a running daemon). */
  async listEnvelopes(): Promise<Envelope[]> {
    const ids = await fs.readdir(this.#envDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const out: Envelope[] = [];
    for (const id of ids) {
      if (!isQueueId(id)) continue;
      const env = await this.readEnvelope(id).catch(() => undefined);
      if (env) out.push(env);
    }
    return out.sort((a, b) => a.created - b.created);
  }

  /** The message as it leaves: prepended headers, then the file. */
  open(env: Envelope): Readable {
    return this.openMessage(env.id, env.prepend);
  }

  /** The message file of `id` with `prefix` (header lines) in front. */
  openMessage(id: string, prefix = ''): Readable {
    if (!prefix) return createReadStream(this.messagePath(id));
    const out = new PassThrough();
    out.write(prefix);
    const file = createReadStream(this.messagePath(id));
    file.on('error', (err) => out.destroy(err));
    out.on('close', () => file.destroy());
    file.pipe(out);
    return out;
  }

  /** The stored message file alone (for the headers of a bounce). */
  readHead(id: string, limit: number): Promise<Buffer> {
    return readHead(this.messagePath(id), limit);
  }

  async close(): Promise<void> {
    await this.#syncer.close();
    if (this.#locked) await fs.unlink(path.join(this.dir, 'lock')).catch(() => undefined);
    this.#locked = false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by someone else
  }
}
