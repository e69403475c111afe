/**
 * A TCP proxy in front of MariaDB, to simulate "database stopped / restarted" without touching
 * the machine's shared server: stop() closes the listener and resets every live connection, so
 * clients see ECONNRESET on open connections and ECONNREFUSED on new ones; resume() listens again
 * on the same port.
 */
import net from 'node:net';

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

  const listen = () =>
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
