/** Who is on the other end of an accepted connection, as the protocols see it. */
import type net from 'node:net';
import { normalizeIp } from '../net.js';

export interface ClientPeer {
  /** The client's IP address (IPv4-mapped IPv6 written as IPv4); '' on a unix socket. */
  address: string;
  port: number;
  /** The address and port the client connected to. */
  localAddress: string;
  localPort: number;
  /** True when address and port come from a PROXY protocol header, not from the socket. */
  proxied: boolean;
}

/** The peer as the socket itself reports it (no PROXY header, or a v2 LOCAL command). */
export function socketPeer(socket: net.Socket): ClientPeer {
  return {
    address: normalizeIp(socket.remoteAddress),
    port: socket.remotePort ?? 0,
    localAddress: normalizeIp(socket.localAddress),
    localPort: socket.localPort ?? 0,
    proxied: false,
  };
}
