/** Messages between PasswordService and its worker threads (structured-cloned, so plain data). */
import type { CostProfile } from './schemes.js';

export type WorkerRequest =
  /** Parse `stored` (with the same default scheme as the main thread) and check `plain`. */
  | { op: 'verify'; stored: string; plain: string; defaultScheme: string }
  /** Hash `plain` with the profile; the result carries the {SCHEME} prefix. */
  | { op: 'hash'; profile: CostProfile; plain: string }
  /** Test hook: throw an uncaught exception in the worker, as a crashing library would. */
  | { op: 'crash' };

/** reason: set only when the stored value turned out unusable. */
export type VerifyReply = { ok: boolean; reason?: string };

/** What the worker posts: once `ready` when loaded, then one answer per task. */
export type WorkerMessage = { ready: true } | { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** What the pool posts to a worker. */
export type WorkerEnvelope = { id: number; req: WorkerRequest };
