/** Output flow control shared by the protocol writers that are ours (IMAP, POP3). */
import type { Duplex } from 'node:stream';
import type { Logger } from './log.js';

/** The client stopped reading: its session is dropped rather than its output buffered. */
export class StalledClientError extends Error {}

/**
 * Waits while the client is behind by more than `highWaterMark` bytes: until the socket drains
 * or closes, or rejects with StalledClientError after `stallTimeoutMs` without progress.
 */
export async function waitForDrain(socket: Duplex, highWaterMark: number, stallTimeoutMs: number): Promise<void> {
  if (socket.writableLength <= highWaterMark) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new StalledClientError('client stopped reading'));
    }, stallTimeoutMs);
    const done = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('drain', done);
      socket.off('close', done);
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/**
 * After a command: waits until the client has taken the answer; one that stopped reading is
 * logged and its session closed instead of its output being buffered without end.
 */
export async function drainOrClose(session: { writer: { flowControl(): Promise<void> }; log: Logger; close(): void }): Promise<void> {
  try {
    await session.writer.flowControl();
  } catch (err) {
    if (!(err instanceof StalledClientError)) throw err;
    session.log.info('client stopped reading output; closing');
    session.close();
  }
}
