/**
 * Reads the PROXY protocol header off a freshly accepted socket, before the protocol sees a
 * byte: within a deadline and a size limit (parseProxyHeader's), and puts back whatever came
 * after it (socket.unshift), so the client's first command or TLS ClientHello is intact.
 */
import type net from 'node:net';
import { parseProxyHeader, ProxyHeaderError, type ProxyHeader } from './proxy-protocol.js';

/** How long a proxy may take to send its header (it sends it at once on connecting). */
export const PROXY_HEADER_TIMEOUT_MS = 10_000;

export function readProxyHeader(socket: net.Socket, timeoutMs = PROXY_HEADER_TIMEOUT_MS): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new ProxyHeaderError(`no complete PROXY header within ${timeoutMs} ms`)), timeoutMs);
    const onEnd = () => fail(new ProxyHeaderError('connection closed before a complete PROXY header'));
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
    };
    function fail(err: Error): void {
      cleanup();
      reject(err);
    }
    function onData(chunk: Buffer): void {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      let parsed;
      try {
        parsed = parseProxyHeader(buffered);
      } catch (err) {
        return fail(err as Error);
      }
      if (!parsed.done) return;
      cleanup();
      const rest = buffered.subarray(parsed.header.length);
      if (rest.length > 0) socket.unshift(rest);
      resolve(parsed.header);
    }
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}
