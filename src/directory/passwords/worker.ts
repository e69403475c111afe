/**
 * Worker thread entry: runs one hashing task at a time for the pool (pool.ts). Loaded as
 * worker.ts under tsx (the worker inherits --import tsx from execArgv) and as worker.js from dist/.
 */
import { parentPort } from 'node:worker_threads';
import { hashWithProfile, verifyHash } from './algorithms.js';
import type { VerifyReply, WorkerEnvelope, WorkerMessage, WorkerRequest } from './protocol.js';
import { parseStored } from './schemes.js';

if (parentPort === null) throw new Error('passwords/worker must run in a worker thread');
const port = parentPort;

async function handle(req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case 'verify': {
      const parsed = parseStored(req.stored, req.defaultScheme);
      if (!parsed.ok) return { ok: false, reason: parsed.reason } satisfies VerifyReply;
      return { ok: await verifyHash(parsed.hash, req.plain) } satisfies VerifyReply;
    }
    case 'hash':
      return hashWithProfile(req.profile, req.plain);
    case 'crash':
      setImmediate(() => {
        throw new Error('crash requested');
      });
      return new Promise(() => {});
  }
}

/** An error message for the main thread, with the password cut out should a library quote it. */
function describe(err: unknown, req: WorkerRequest): string {
  const message = err instanceof Error ? err.message : String(err);
  return 'plain' in req && req.plain !== '' ? message.split(req.plain).join('***') : message;
}

port.on('message', (msg: WorkerEnvelope) => {
  handle(msg.req).then(
    (value) => port.postMessage({ id: msg.id, ok: true, value } satisfies WorkerMessage),
    (err: unknown) => port.postMessage({ id: msg.id, ok: false, error: describe(err, msg.req) } satisfies WorkerMessage),
  );
});
port.postMessage({ ready: true } satisfies WorkerMessage);
