/**
 * A small worker_threads pool for password hashing. Each worker runs one task at a time; tasks
 * wait in a bounded FIFO queue. A worker that crashes or exits fails its task with TEMP_FAIL
 * (nothing hangs) and queued work continues on a fresh worker. Idle workers are unref()'d, so a
 * forgotten close() does not keep the process alive.
 *
 * A busy worker is never terminated: the argon2 addon (node-addon-api AsyncWorker) aborts the
 * whole process when its thread is torn down while a hash is in flight ("terminate called after
 * throwing an instance of 'Napi::Error'", a known node-addon-api limitation). So a task that
 * overruns its timeout is failed for the caller while the worker finishes it in the background,
 * and close() waits for running computations (all bounded by COST_LIMITS) before terminating.
 */
import { Worker } from 'node:worker_threads';
import { tempFail } from '../../errors.js';
import type { WorkerEnvelope, WorkerMessage, WorkerRequest } from './protocol.js';

const WORKER_NAME = 'maild-passwords';

/**
 * Starts a password worker: worker.js next to this module when running the compiled dist/
 * output; worker.ts when running from source under tsx. Node 20 does not apply --import loaders
 * inherited through execArgv to worker threads (nodejs/node#47747, fixed in Node 22), so from
 * source a small bootstrap registers tsx inside the worker before importing worker.ts.
 */
function spawnPasswordWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), { name: WORKER_NAME });
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./worker.ts', import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, name: WORKER_NAME });
}

export interface WorkerPoolOptions {
  /** Maximum number of worker threads. */
  size: number;
  /** Maximum number of tasks waiting for a worker; beyond it run() fails with TEMP_FAIL. */
  maxQueue: number;
  /**
   * A task running longer fails with TEMP_FAIL at once; its worker stays busy until the
   * computation ends, then takes new work. 0 disables.
   */
  taskTimeoutMs: number;
}

interface Task {
  id: number;
  req: WorkerRequest;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
  /** The caller has had its answer (timeout): the worker's reply is discarded. */
  settled: boolean;
}

interface Slot {
  worker: Worker;
  task: Task | null;
  /** The worker has loaded its modules (task timeouts count from then on). */
  ready: boolean;
  /** The uncaught error reported before the worker exited, if any. */
  error?: Error;
}

export class WorkerPool {
  private readonly slots = new Set<Slot>();
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;
  /** Set by close(): resolved when the last running task has ended. */
  private drained: { promise: Promise<void>; resolve: () => void } | null = null;
  /** Workers started so far, replacements included (for tests and diagnostics). */
  spawned = 0;

  constructor(
    private readonly opts: WorkerPoolOptions,
    private readonly createWorker: () => Worker = spawnPasswordWorker,
  ) {}

  /** Current load, for diagnostics. */
  get stats(): { workers: number; busy: number; queued: number; spawned: number } {
    return { workers: this.slots.size, busy: this.busyCount(), queued: this.queue.length, spawned: this.spawned };
  }

  run(req: WorkerRequest): Promise<unknown> {
    if (this.closed) return Promise.reject(tempFail('password service is closed'));
    if (this.queue.length >= this.opts.maxQueue) {
      return Promise.reject(tempFail(`password hashing queue is full (${this.opts.maxQueue} waiting)`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, req, resolve, reject, settled: false });
      this.pump();
    });
  }

  /**
   * Fails queued tasks, lets running ones finish (their callers get their answers), then stops
   * every worker.
   */
  async close(): Promise<void> {
    if (this.drained === null) {
      this.closed = true;
      const err = tempFail('password service is closed');
      for (const task of this.queue.splice(0)) this.fail(task, err);
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.drained = { promise, resolve };
      if (this.busyCount() === 0) resolve();
    }
    await this.drained.promise;
    const workers = [...this.slots].map((s) => s.worker);
    this.slots.clear();
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private busyCount(): number {
    let busy = 0;
    for (const s of this.slots) if (s.task !== null) busy++;
    return busy;
  }

  /** Starts queued tasks on idle workers, spawning workers up to the pool size. */
  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      let slot: Slot | undefined;
      for (const s of this.slots) {
        if (s.task === null) {
          slot = s;
          break;
        }
      }
      if (slot === undefined) {
        if (this.slots.size >= this.opts.size) return;
        try {
          slot = this.spawn();
        } catch (err) {
          this.fail(this.queue.shift()!, tempFail(`cannot start a password worker: ${(err as Error).message}`, err));
          continue;
        }
      }
      this.start(slot, this.queue.shift()!);
    }
  }

  private spawn(): Slot {
    const worker = this.createWorker();
    const slot: Slot = { worker, task: null, ready: false };
    worker.on('message', (msg: WorkerMessage) => this.onMessage(slot, msg));
    worker.on('error', (err) => {
      slot.error = err;
    });
    worker.on('exit', (code) => this.onExit(slot, code));
    worker.unref();
    this.slots.add(slot);
    this.spawned++;
    return slot;
  }

  private start(slot: Slot, task: Task): void {
    slot.task = task;
    slot.worker.ref();
    if (slot.ready) this.startTimer(task);
    // Posted at once even before the worker is ready: its port queues the message until then.
    slot.worker.postMessage({ id: task.id, req: task.req } satisfies WorkerEnvelope);
  }

  private startTimer(task: Task): void {
    if (this.opts.taskTimeoutMs <= 0 || task.timer !== undefined) return;
    task.timer = setTimeout(() => {
      this.fail(task, tempFail(`password hashing took longer than ${this.opts.taskTimeoutMs} ms`));
    }, this.opts.taskTimeoutMs);
  }

  private fail(task: Task, err: Error): void {
    clearTimeout(task.timer);
    if (task.settled) return;
    task.settled = true;
    task.reject(err);
  }

  /** Frees the slot of its task; returns the task. */
  private release(slot: Slot): Task | null {
    const task = slot.task;
    slot.task = null;
    slot.worker.unref();
    if (task !== null) clearTimeout(task.timer);
    if (this.drained !== null && this.busyCount() === 0) this.drained.resolve();
    return task;
  }

  private onMessage(slot: Slot, msg: WorkerMessage): void {
    if ('ready' in msg) {
      slot.ready = true;
      if (slot.task !== null) this.startTimer(slot.task);
      return;
    }
    if (slot.task === null || slot.task.id !== msg.id) return;
    const task = this.release(slot)!;
    if (!task.settled) {
      task.settled = true;
      if (msg.ok) task.resolve(msg.value);
      else task.reject(tempFail(`password worker failed: ${msg.error}`));
    }
    this.pump();
  }

  private onExit(slot: Slot, code: number): void {
    const known = this.slots.delete(slot);
    const task = this.release(slot);
    if (task !== null) {
      const detail = slot.error ? `: ${slot.error.message}` : '';
      this.fail(task, tempFail(`password worker exited with code ${code}${detail}`, slot.error));
    }
    // Replace it at once when work is waiting (otherwise the next run() spawns one).
    if (known && !this.closed) this.pump();
  }
}
