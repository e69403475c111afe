/**
 * One request and its reply over a TCP or unix socket, as spamd and clamd speak them: connect,
 * stream the request (the message read from its file in chunks, never whole), read the reply
 * until the daemon closes the connection. One timer bounds the whole exchange.
 */
import { createReadStream } from 'node:fs';
import net from 'node:net';
import { Readable } from 'node:stream';
import { ScannerError, type ScannerAddress } from './config.js';

/** The message file in chunks (this module reads the spool file the SMTP layer wrote). */
export async function* messageChunks(file: string): AsyncGenerator<Buffer> {
  for await (const chunk of createReadStream(file, { highWaterMark: 64 * 1024 })) yield chunk as Buffer;
}

export interface ExchangeOptions {
  address: ScannerAddress;
  timeout: number;
  /** The request, produced as the socket drains. */
  request: AsyncIterable<Buffer>;
  /** A longer reply is a protocol error. */
  maxReply: number;
}

/**
 * Sends the request and resolves with every byte the daemon sent before it closed. A daemon may
 * answer early and hang up (clamd: "INSTREAM size limit exceeded"): a reply that arrived counts
 * even when the rest of the request could not be written. (When the write fails before the reply
 * is read, node discards the reply with the socket: then it is an IO error, "write EPIPE".)
 */
export function exchange(opts: ExchangeOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let connected = false;
    let settled = false;
    const socket = net.connect('path' in opts.address ? { path: opts.address.path } : opts.address);
    const source = Readable.from(opts.request);
    const timer = setTimeout(() => finish(new ScannerError('TIMEOUT', `no complete reply within ${opts.timeout} ms`)), opts.timeout);

    function finish(err?: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      source.destroy();
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    }

    socket.once('connect', () => {
      connected = true;
      source.pipe(socket, { end: false });
    });
    source.on('error', (err) => finish(new ScannerError('IO', `reading the message: ${err.message}`)));
    socket.on('data', (data: Buffer) => {
      received += data.length;
      if (received > opts.maxReply) return finish(new ScannerError('PROTOCOL', `reply longer than ${opts.maxReply} bytes`));
      chunks.push(data);
      // The daemon answered: the rest of the request is of no use to it.
      source.unpipe(socket);
    });
    socket.once('end', () => finish());
    socket.on('error', (err) => {
      if (!connected) finish(new ScannerError('CONNECT', err.message));
      else if (received > 0) finish();
      else finish(new ScannerError('IO', err.message));
    });
    socket.once('close', () => finish(received > 0 ? undefined : new ScannerError('PROTOCOL', 'connection closed without a reply')));
  });
}
