/**
 * The socket front: every configured listener is bound before any protocol server exists, so
 * the daemon can bind privileged ports and unix sockets as root, give up root, and only then
 * serve. Connections arriving in between are held (paused: nothing is read from them) and
 * handed over oldest first once serve() is called; none is dropped.
 *
 * A TCP listener binds each of its addresses on its own, all on the same port (with port 0 the
 * first address picks one and the others follow it). IPv6 addresses of a list are bound
 * IPv6-only, so "0.0.0.0" and "::" can be listed together, as Postfix's inet_protocols = all
 * binds both; a lone "::" is dual-stack (IPv4 clients appear as IPv4 addresses).
 */
import net from 'node:net';
import type { ListenerConfig } from '../config/schema.js';
import { silentLogger, type Logger } from '../log.js';
import { NetworkList, normalizeIp } from '../net.js';
import { socketPeer, type ClientPeer } from './peer.js';
import { readProxyHeader, PROXY_HEADER_TIMEOUT_MS } from './proxy-reader.js';
import { openUnixSocket } from './unix-socket.js';

/** Takes a client connection: a socket as net.Server gives it (reading, not yet flowing). */
export type ClientHandler = (socket: net.Socket, peer: ClientPeer) => void;

/** What the socket front needs of the configuration. */
export interface FrontConfig {
  listeners: readonly ListenerConfig[];
  /** Who may send a PROXY header to a listener with proxy_protocol (addresses or CIDR ranges). */
  proxy_networks?: readonly string[];
}

export interface FrontOptions {
  logger?: Logger;
  /** How long a proxy may take to send its header. */
  proxyHeaderTimeoutMs?: number;
}

/** The PROXY protocol settings shared by a configuration's listeners (replaced on reload). */
interface ProxySettings {
  networks: NetworkList;
  timeoutMs: number;
}

/** A listener's name in logs and in portOf(): its `name`, or protocol:port (protocol:path). */
export function listenerName(l: ListenerConfig): string {
  return l.name ?? `${l.protocol}:${l.path ?? l.port}`;
}

/**
 * Undoes pauseOnConnect: the socket reads into its buffer and flows once someone listens, as a
 * socket accepted without it does (net.Socket's constructor). Protocols that only end() a
 * connection still see the client's FIN and close.
 */
function startReading(socket: net.Socket): net.Socket {
  // The setter net.Socket's own constructor uses for pauseOnCreate (typed read-only in @types/node).
  (socket as { readableFlowing: boolean | null }).readableFlowing = null;
  socket.read(0);
  return socket;
}

export type BoundAddress = { address: string; port: number } | string;

class BoundListener {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly #servers: net.Server[];
  readonly #log: Logger;
  readonly #proxy: () => ProxySettings;
  /** Connections whose PROXY header is being read. */
  readonly #reading = new Set<net.Socket>();
  /** Connections accepted before serve(), in arrival order. */
  readonly #held = new Set<net.Socket>();
  #onClient: ClientHandler | undefined;
  #closing: Promise<void> | undefined;

  constructor(config: ListenerConfig, servers: net.Server[], log: Logger, proxy: () => ProxySettings) {
    this.name = listenerName(config);
    this.config = config;
    this.#servers = servers;
    this.#proxy = proxy;
    this.#log = log.child({ listener: this.name });
    for (const server of servers) {
      server.on('connection', (socket: net.Socket) => this.#arrive(socket));
      server.on('error', (err) => this.#log.error({ err }, 'listener error'));
    }
  }

  #arrive(socket: net.Socket): void {
    socket.on('error', () => undefined);
    if (this.#onClient) return this.#hand(socket);
    this.#held.add(socket);
    socket.once('close', () => this.#held.delete(socket));
  }

  #hand(socket: net.Socket): void {
    const real = socketPeer(socket);
    if (!this.config.proxy_protocol) return this.#onClient!(startReading(socket), real);
    const proxy = this.#proxy();
    if (!real.address) {
      // Reset before it was served (a health check that only connects): no peer to check.
      socket.destroy();
      return;
    }
    // A header is believed from the configured proxies only: anyone else could claim any address.
    if (!proxy.networks.contains(real.address)) {
      this.#log.warn({ ip: real.address }, 'connection refused: not from proxy_networks, which alone may send a PROXY header');
      socket.destroy();
      return;
    }
    this.#reading.add(socket);
    readProxyHeader(socket, proxy.timeoutMs).then(
      (header) => {
        this.#reading.delete(socket);
        if (socket.destroyed) return;
        // v1 UNKNOWN and v2 LOCAL (health checks): the connection's own endpoints apply.
        const peer: ClientPeer =
          header.source && header.destination
            ? {
                address: normalizeIp(header.source.address),
                port: header.source.port,
                localAddress: normalizeIp(header.destination.address),
                localPort: header.destination.port,
                proxied: true,
              }
            : real;
        this.#log.debug({ ip: peer.address, proxy: real.address, version: header.version, proxied: peer.proxied }, 'PROXY header');
        this.#onClient!(startReading(socket), peer);
      },
      (err: Error) => {
        this.#reading.delete(socket);
        this.#log.warn({ ip: real.address, err: err.message }, 'connection closed: no valid PROXY header');
        socket.destroy();
      },
    );
  }

  /** Starts handing connections to `onClient`: the held ones first, then each as it arrives. */
  serve(onClient: ClientHandler): void {
    if (this.#onClient) throw new Error(`listener ${this.name} is served already`);
    this.#onClient = onClient;
    const held = [...this.#held];
    this.#held.clear();
    for (const socket of held) if (!socket.destroyed) this.#hand(socket);
  }

  /** Every bound address: { address, port } for TCP, the path for a unix socket. */
  addresses(): BoundAddress[] {
    const out: BoundAddress[] = [];
    for (const server of this.#servers) {
      const a = server.address();
      if (a) out.push(typeof a === 'string' ? a : { address: a.address, port: a.port });
    }
    return out;
  }

  /** The first bound address (the port is the same for all of a TCP listener's addresses). */
  address(): BoundAddress | null {
    return this.addresses()[0] ?? null;
  }

  /**
   * Stops accepting at once (the ports and socket files are released) and drops the held
   * connections. Resolves once every connection accepted here has closed: those handed over
   * are the protocol servers' to end.
   */
  close(): Promise<void> {
    this.#closing ??= Promise.all(
      this.#servers.map((server) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))),
    ).then(() => undefined);
    for (const socket of [...this.#held, ...this.#reading]) socket.destroy();
    this.#held.clear();
    return this.#closing;
  }
}

export class BoundListeners {
  readonly listeners: readonly BoundListener[];
  readonly #proxy: ProxySettings;

  constructor(listeners: BoundListener[], proxy: ProxySettings) {
    this.listeners = listeners;
    this.#proxy = proxy;
  }

  /** Applies a reloaded proxy_networks to connections from now on. */
  updateProxyNetworks(networks: readonly string[]): void {
    this.#proxy.networks = new NetworkList(networks);
  }

  get(name: string): BoundListener | undefined {
    return this.listeners.find((l) => l.name === name);
  }

  /** Closes every listener (see BoundListener.close). */
  close(): Promise<void> {
    return Promise.all(this.listeners.map((l) => l.close())).then(() => undefined);
  }
}

function listen(server: net.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A bind error that names the listener and the address, keeping the errno code (EADDRINUSE, EACCES). */
function bindError(name: string, where: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  return Object.assign(new Error(`listener ${name}: cannot listen on ${where}: ${code ?? (err as Error).message}`, { cause: err }), {
    code,
  });
}

async function bindOne(l: ListenerConfig, log: Logger, proxy: () => ProxySettings): Promise<BoundListener> {
  const name = listenerName(l);
  const servers: net.Server[] = [];
  const newServer = () => {
    const server = net.createServer({ pauseOnConnect: true });
    servers.push(server);
    return server;
  };
  try {
    if (l.path !== undefined) {
      const path = l.path;
      const server = newServer();
      await openUnixSocket(path, { mode: l.socket_mode, owner: l.socket_owner, group: l.socket_group }, () =>
        listen(server, { path }).catch((err: unknown) => {
          throw bindError(name, path, err);
        }),
      );
    } else {
      let port = l.port!;
      for (const host of l.address) {
        const server = newServer();
        const ipv6Only = l.address.length > 1 && net.isIPv6(host);
        const where = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
        await listen(server, { host, port, ipv6Only }).catch((err: unknown) => {
          throw bindError(name, where, err);
        });
        if (port === 0) port = (server.address() as net.AddressInfo).port;
      }
    }
  } catch (err) {
    for (const s of servers) if (s.listening) s.close();
    throw err;
  }
  return new BoundListener(l, servers, log, proxy);
}

/**
 * Binds every listener of the configuration (TCP addresses and unix sockets with their mode,
 * owner and group). On failure nothing stays bound and the error names the listener. On a
 * listener with proxy_protocol, a connection from an address outside proxy_networks is closed
 * at once, and any other must start with a valid PROXY header (v1 or v2) within the timeout;
 * the client it names is the peer handed over.
 */
export async function bindListeners(config: FrontConfig, options: FrontOptions = {}): Promise<BoundListeners> {
  const logger = options.logger ?? silentLogger;
  const proxy: ProxySettings = {
    networks: new NetworkList(config.proxy_networks ?? []),
    timeoutMs: options.proxyHeaderTimeoutMs ?? PROXY_HEADER_TIMEOUT_MS,
  };
  const bound: BoundListener[] = [];
  try {
    for (const l of config.listeners) bound.push(await bindOne(l, logger, () => proxy));
  } catch (err) {
    await Promise.all(bound.map((b) => b.close()));
    throw err;
  }
  return new BoundListeners(bound, proxy);
}
