import { randomBytes } from 'node:crypto';

let idPool = Buffer.alloc(0);
let idOffset = 0;

/**
 * A queue id: 12 random hex digits in upper case, from a pool so each id costs no system call.
 * It names the spool files and appears in every log line and header about the message.
 */
export function newQueueId(): string {
  if (idOffset + 6 > idPool.length) {
    idPool = randomBytes(6 * 1024);
    idOffset = 0;
  }
  idOffset += 6;
  return idPool.toString('hex', idOffset - 6, idOffset).toUpperCase();
}
