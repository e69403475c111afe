/**
 * Opens a client connection the way the tests of addresses need it: to a given host (::1), from
 * a given local address (127.0.0.2, so a test can tell the client from a proxy on 127.0.0.3),
 * with bytes sent before the protocol (a PROXY header), and implicit TLS after those bytes.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface ConnectOptions {
  host?: string;
  localAddress?: string;
  /** Written first, before any TLS handshake (a PROXY protocol header). */
  prelude?: Buffer | string;
  implicitTls?: boolean;
}

export function openSocket(port: number, opts: ConnectOptions = {}): Promise<net.Socket | tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ port, host: opts.host ?? '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    raw.once('error', reject);
    raw.once('connect', () => {
      if (opts.prelude !== undefined) raw.write(opts.prelude);
      if (!opts.implicitTls) {
        raw.removeListener('error', reject);
        return resolve(raw);
      }
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
      secure.once('error', reject);
      secure.once('secureConnect', () => {
        raw.removeListener('error', reject);
        secure.removeListener('error', reject);
        resolve(secure);
      });
    });
  });
}
