/**
 * `maild queue ...`: the queue as the administrator sees it, like Postfix's postqueue -p / -f
 * and postsuper -d / -h / -H. Listing reads the spool directly; changes go through the running
 * daemon's control socket (it owns the spool) and fall back to the files when it is down.
 */
import type { LoadedConfig } from '../config/load.js';
import { sendControl, type QueueControlRequest } from '../control.js';
import { Spool, isQueueId, type Envelope } from '../queue/spool.js';

export interface QueueIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export class QueueUsageError extends Error {}

function arrival(ms: number): string {
  const d = new Date(ms);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** The listing in postqueue -p's layout: id (* running, ! held), size, arrival, sender; then recipients with their last error. */
function formatQueue(envs: Envelope[], now = Date.now()): string {
  if (envs.length === 0) return 'Mail queue is empty\n';
  const lines = ['-Queue ID-    --Size-- ----Arrival Time---- --Age-- -Sender/Recipient-------'];
  let bytes = 0;
  for (const env of envs) {
    bytes += env.size;
    const mark = env.held ? '!' : ' ';
    lines.push(
      `${(env.id + mark).padEnd(13)} ${String(env.size).padStart(8)} ${arrival(env.created)} ${age(now - env.created).padStart(7)} ${env.sender || 'MAILER-DAEMON'}`,
    );
    const pad = ' '.repeat(51);
    for (const r of env.recipients) {
      if (r.state !== 'pending') continue;
      if (r.lastError) lines.push(`${pad}(${r.lastError})`);
      lines.push(`${pad}${r.address}`);
    }
    lines.push('');
  }
  lines.push(`-- ${Math.ceil(bytes / 1024)} Kbytes in ${envs.length} Request${envs.length === 1 ? '' : 's'}.`);
  return `${lines.join('\n')}\n`;
}

/** Runs `queue SUBCOMMAND [ID]`; returns the exit code. */
export async function runQueueCommand(args: string[], config: LoadedConfig, io: QueueIo): Promise<number> {
  const [sub, target, ...extra] = args;
  const spool = new Spool(config.queue.dir!);
  const print = (s: string) => io.stdout.write(s);
  const need = (what: string) => {
    if (!target || extra.length > 0) throw new QueueUsageError(`usage: maild queue ${what}`);
    if (target !== 'ALL' && !isQueueId(target)) throw new QueueUsageError(`not a queue id: ${target}`);
    return target;
  };
  switch (sub) {
    case 'list': {
      if (target) throw new QueueUsageError('usage: maild queue list');
      print(formatQueue(await spool.listEnvelopes()));
      return 0;
    }
    case 'flush': {
      if (target && !isQueueId(target)) throw new QueueUsageError(`not a queue id: ${target}`);
      const reply = await sendControl(config.data_dir, { cmd: 'flush', ...(target ? { id: target } : {}) });
      if (!reply) {
        io.stderr.write('maild: cannot flush the queue: the mail system is down (the queue runs when it starts)\n');
        return 75;
      }
      if (!reply.ok) return fail(io, reply.error);
      print(`${reply.count} message${reply.count === 1 ? '' : 's'} scheduled for delivery now\n`);
      return 0;
    }
    case 'delete':
    case 'hold':
    case 'release': {
      const id = need(`${sub} ${sub === 'delete' ? 'ID|ALL' : 'ID'}`);
      if (id === 'ALL' && sub !== 'delete') throw new QueueUsageError(`usage: maild queue ${sub} ID`);
      const req: QueueControlRequest = id === 'ALL' ? { cmd: 'delete-all' } : { cmd: sub, id };
      const reply = (await sendControl(config.data_dir, req)) ?? (await offline(spool, req));
      if (!reply.ok) return fail(io, reply.error);
      const verb = sub === 'delete' ? 'deleted' : sub === 'hold' ? 'put on hold' : 'released';
      print(`${reply.count} message${reply.count === 1 ? '' : 's'} ${verb}\n`);
      return 0;
    }
    default:
      throw new QueueUsageError('usage: maild queue list | flush [ID] | delete ID|ALL | hold ID | release ID');
  }
}

function fail(io: QueueIo, error: string): number {
  io.stderr.write(`maild: ${error}\n`);
  return 1;
}

/** The daemon is not running: act on the spool files directly. */
async function offline(spool: Spool, req: QueueControlRequest): Promise<{ ok: true; count: number } | { ok: false; error: string }> {
  if (req.cmd === 'delete-all') {
    const envs = await spool.listEnvelopes();
    for (const env of envs) await spool.remove(env.id);
    return { ok: true, count: envs.length };
  }
  if (req.cmd === 'flush') return { ok: true, count: 0 };
  const env = await spool.readEnvelope(req.id);
  if (!env) return { ok: false, error: `no message ${req.id} in the queue` };
  if (req.cmd === 'delete') await spool.remove(req.id);
  else {
    env.held = req.cmd === 'hold';
    await spool.writeEnvelope(env);
  }
  await spool.close();
  return { ok: true, count: 1 };
}
