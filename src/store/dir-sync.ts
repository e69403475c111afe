import fs, { type FileHandle } from 'node:fs/promises';

/** Directory handles kept open for fsync; idle ones are closed after this long. */
const HANDLE_IDLE_MS = 60_000;
const MAX_HANDLES = 512;

interface DirState {
  running: boolean;
  waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }>;
}

/**
 * Group commit of directory fsyncs. A delivery is durable only once the directory entry that
 * the rename created is on disk, which takes an fsync of the directory. Deliveries that land in
 * one directory while an fsync of it is running share the next fsync instead of each issuing
 * their own: a caller registered before an fsync starts is covered by it. Directory handles stay
 * open between fsyncs (an open and a close fewer per delivery).
 */
export class DirectorySyncer {
  readonly #dirs = new Map<string, DirState>();
  readonly #handles = new Map<string, { handle: FileHandle; used: number }>();
  #sweeper: NodeJS.Timeout | undefined;
  /** Number of fsync calls issued, for tests and benchmarks. */
  syncCount = 0;

  sync(dir: string): Promise<void> {
    let state = this.#dirs.get(dir);
    if (!state) {
      state = { running: false, waiters: [] };
      this.#dirs.set(dir, state);
    }
    const s = state;
    return new Promise((resolve, reject) => {
      s.waiters.push({ resolve, reject });
      if (!s.running) void this.#run(dir, s);
    });
  }

  /** Forgets the handle of a directory that may have been removed and created again. */
  async invalidate(dir: string): Promise<void> {
    const entry = this.#handles.get(dir);
    this.#handles.delete(dir);
    await entry?.handle.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    await Promise.all([...this.#handles.keys()].map((dir) => this.invalidate(dir)));
  }

  async #handle(dir: string): Promise<FileHandle> {
    const entry = this.#handles.get(dir);
    if (entry) {
      entry.used = Date.now();
      return entry.handle;
    }
    const handle = await fs.open(dir, 'r');
    if (this.#handles.size >= MAX_HANDLES) {
      const oldest = [...this.#handles].sort((a, b) => a[1].used - b[1].used)[0]!;
      await this.invalidate(oldest[0]);
    }
    this.#handles.set(dir, { handle, used: Date.now() });
    this.#sweeper ??= setInterval(() => this.#sweep(), HANDLE_IDLE_MS).unref();
    return handle;
  }

  #sweep(): void {
    const now = Date.now();
    for (const [dir, entry] of this.#handles) {
      if (now - entry.used > HANDLE_IDLE_MS && !this.#dirs.has(dir)) void this.invalidate(dir);
    }
  }

  async #run(dir: string, state: DirState): Promise<void> {
    state.running = true;
    while (state.waiters.length > 0) {
      const batch = state.waiters;
      state.waiters = [];
      try {
        await (await this.#handle(dir)).sync();
        this.syncCount++;
        for (const w of batch) w.resolve();
      } catch (err) {
        await this.invalidate(dir);
        for (const w of batch) w.reject(err);
      }
    }
    state.running = false;
    this.#dirs.delete(dir);
  }
}
