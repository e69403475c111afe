/**
 * `maild health`: exit 0 when the running daemon answers on its control socket (data_dir/control.sock),
 * 1 when none does (not started, crashed, or stuck past the timeout). For Docker's HEALTHCHECK,
 * systemd's ExecStartPost or a monitoring probe.
 */
import { controlSocketPath, sendControl } from '../control.js';
import type { LoadedConfig } from '../config/load.js';
import type { CliIo } from './commands.js';

export async function runHealth(config: LoadedConfig, timeoutMs: number, io: CliIo): Promise<number> {
  const socket = controlSocketPath(config.data_dir);
  let reply;
  try {
    reply = await sendControl(config.data_dir, { cmd: 'ping' }, timeoutMs);
  } catch (err) {
    io.stderr.write(`maild: unhealthy: ${socket}: ${(err as Error).message}\n`);
    return 1;
  }
  if (!reply) {
    io.stderr.write(`maild: unhealthy: no daemon listens on ${socket}\n`);
    return 1;
  }
  if (!reply.ok) {
    io.stderr.write(`maild: unhealthy: ${socket}: ${reply.error}\n`);
    return 1;
  }
  io.stdout.write(`maild is running: ${socket} answered (${reply.count} message${reply.count === 1 ? '' : 's'} queued)\n`);
  return 0;
}
