/**
 * A TCP proxy in front of MariaDB, to simulate "database stopped / restarted" without touching
 * the machine's shared server: stop() closes the listener and resets every live connection, so
 * clients see ECONNRESET on open connections and ECONNREFUSED on new ones; resume() listens again
 * on the same port. That port is below the kernel's ephemeral range: while the proxy is stopped,
 * a listener bound to port 0 elsewhere (the server under test) could otherwise be given it.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** The lowest port the kernel hands out for port 0 (ip_local_port_range). */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

export interface TcpProxy {
  readonly port: number;
  /** Stop listening and reset every proxied connection. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  resume(): Promise<void>;
  /** Stop for good. */
  close(): Promise<void>;
}

export async function start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;

  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };

  const listenOnce = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect({ host: targetHost, port: targetPort });
        track(client);
        track(upstream);
        client.pipe(upstream);
        upstream.pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      s.once('error', reject);
      s.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        s.off('error', reject);
        port = (s.address() as net.AddressInfo).port;
        server = s;
        resolve();
      });
    });

  const listen = async () => {
    if (port !== 0) return listenOnce();
    // A free port below the ephemeral range, tried at random.
    const low = Math.max(2048, ephemeralLow() - 12_000);
    for (let attempt = 0; ; attempt++) {
      port = low + Math.floor(Math.random() * (ephemeralLow() - low));
      try {
        return await listenOnce();
      } catch (err) {
        port = 0;
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt > 50) throw err;
      }
    }
  };

  const stop = async () => {
    const s = server;
    server = undefined;
    const closed = s ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve();
    // RST rather than FIN: the client sees the connection reset, as when the server dies.
    for (const socket of sockets) socket.resetAndDestroy();
    sockets.clear();
    await closed;
  };

  await listen();
  return {
    get port() {
      return port;
    },
    stop,
    async resume() {
      if (!server) await listen();
    },
    close: stop,
  };
}
