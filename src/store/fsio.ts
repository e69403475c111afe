/**
 * Durable file primitives: every byte written or an error, a file replaced so that readers see
 * the old or the new version (write to a temporary name, fsync, rename, fsync the directory), a
 * new file written with O_DSYNC, the first bytes of a file, and a small file in one read. The
 * store, the queue spool and the directory's YAML file all write through these.
 */
import fsCallback, { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes every byte or throws. A writev can complete partly without an error (libuv returns
 * the bytes written when the disk fills or the file size limit is reached part-way); the rest is
 * written again, which then reports the error. Without this a truncated message could be synced,
 * moved into new/ and acknowledged.
 */
export async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let pending = buffers.filter((b) => b.length > 0);
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending);
    if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    let done = bytesWritten;
    let i = 0;
    while (i < pending.length && done >= pending[i]!.length) done -= pending[i++]!.length;
    pending = pending.slice(i);
    if (done > 0) pending[0] = pending[0]!.subarray(done);
  }
}

/** Up to `bytes` bytes from the start of a file (fewer when the file is shorter). */
export async function readHead(file: string, bytes: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(bytes);
    let got = 0;
    while (got < bytes) {
      const { bytesRead } = await fh.read(buf, got, bytes - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * A whole file expected to be `expected` bytes long, in one read: open, one read of one byte
 * more than expected, and a close not waited for (callback calls: no promise per step). Null
 * when the file is longer than expected (the caller streams it instead); a shorter file is
 * returned as it is.
 */
export function readExpected(file: string, expected: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    fsCallback.open(file, 'r', (err, fd) => {
      if (err) return reject(err);
      const buf = Buffer.allocUnsafe(expected + 1);
      const readMore = (got: number): void => {
        fsCallback.read(fd, buf, got, buf.length - got, got, (err2, n) => {
          if (err2 || n === 0 || got + n === buf.length) {
            fsCallback.close(fd, () => undefined);
            if (err2) return reject(err2);
            got += n;
            return resolve(got > expected ? null : buf.subarray(0, got));
          }
          readMore(got + n);
        });
      };
      readMore(0);
    });
  });
}

/**
 * readExpected with blocking calls on this thread (no thread-pool round trip): for a file that
 * is most likely in the page cache. A rejected promise on failure, as readExpected.
 */
export function readExpectedNow(file: string, expected: number): Promise<Buffer | null> {
  let fd: number;
  try {
    fd = fsCallback.openSync(file, 'r');
  } catch (err) {
    return Promise.reject(err as Error);
  }
  try {
    const buf = Buffer.allocUnsafe(expected + 1);
    let got = 0;
    for (;;) {
      const n = fsCallback.readSync(fd, buf, got, buf.length - got, got);
      got += n;
      if (n === 0 || got === buf.length) break;
    }
    return Promise.resolve(got > expected ? null : buf.subarray(0, got));
  } catch (err) {
    return Promise.reject(err as Error);
  } finally {
    fsCallback.closeSync(fd);
  }
}

/** fsyncs a file written by other means (a copy). */
export async function syncFile(file: string): Promise<void> {
  const fh = await fs.open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes a directory's entries (a rename or a new file in it) durable. */
export function fsyncDir(dir: string): Promise<void> {
  return syncFile(dir);
}

/**
 * Creates `file` (which must not exist) with `buffers` as its content, opened with O_DSYNC: the
 * write returns once data and size are on disk, as fdatasync would make them (one system call
 * fewer than write + fsync). A failed write removes the file and throws what `writeError` makes
 * of the error (the error itself by default); a failed open throws as it is.
 */
export async function createDurably(
  file: string,
  buffers: Buffer[],
  writeError: (err: NodeJS.ErrnoException) => Error = (err) => err,
  mode = 0o600,
): Promise<void> {
  const fh = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_DSYNC, mode);
  try {
    await writeAll(fh, buffers);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.unlink(file).catch(() => undefined);
    throw writeError(err as NodeJS.ErrnoException);
  }
  await fh.close();
}

export interface ReplaceOptions {
  /** The temporary name, in the file's directory (same filesystem, so the rename is atomic). */
  tmp: string;
  /** Mode of a newly created temporary file (the umask applies). Default 0o666, as fs.writeFile. */
  mode?: number;
  /** Fail when the temporary file exists rather than truncating it. */
  exclusive?: boolean;
  /** fsync the file before the rename (default true). */
  fsync?: boolean;
  /**
   * Makes the rename durable; default: fsync the file's directory when `fsync` is on. The queue
   * passes its group-committing syncer.
   */
  syncDir?: ((dir: string) => Promise<void>) | false;
  /** Runs on the open temporary file before the data is written (permissions, owner). */
  before?: (h: FileHandle) => Promise<void>;
  /** Runs after the data is written, before the fsync (an mtime to set). */
  after?: (h: FileHandle) => Promise<void>;
}

/**
 * Replaces `file` with `data` so that readers see the old or the new version, never a mix: written
 * to `opts.tmp`, fsynced, renamed over the file, and the directory fsynced. The temporary file is
 * removed when anything fails. The caller holds whatever lock protects `opts.tmp`.
 */
export async function replaceDurably(file: string, data: string | Buffer, opts: ReplaceOptions): Promise<void> {
  const { tmp } = opts;
  const fsync = opts.fsync !== false;
  const h = await fs.open(tmp, opts.exclusive ? 'wx' : 'w', opts.mode ?? 0o666);
  try {
    await opts.before?.(h);
    await writeAll(h, [typeof data === 'string' ? Buffer.from(data) : data]);
    await opts.after?.(h);
    if (fsync) await h.sync();
  } catch (err) {
    await h.close().catch(() => {});
    await fs.unlink(tmp).catch(() => {});
    throw err;
  }
  await h.close();
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.unlink(tmp).catch(() => {});
    throw err;
  }
  const syncDir = opts.syncDir ?? (fsync ? fsyncDir : false);
  if (syncDir) await syncDir(path.dirname(file));
}
