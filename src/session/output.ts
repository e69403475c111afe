/** Output flow control of the line protocols' writers (IMAP, POP3); LineSession applies it after each command. */
import type { Duplex } from 'node:stream';

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
