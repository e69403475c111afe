/** Client address matching for trusted networks (Postfix's mynetworks) and per-IP limits. */
import ipaddr from 'ipaddr.js';
import net from 'node:net';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Normalises an address for counting and matching: IPv4-mapped IPv6 becomes IPv4. */
export function normalizeIp(address: string | undefined): string {
  if (!address) return '';
  try {
    const parsed = ipaddr.process(address);
    return parsed.toString();
  } catch {
    return address;
  }
}

export class NetworkList {
  readonly #ranges: Range[];

  constructor(cidrs: readonly string[]) {
    this.#ranges = cidrs.map((c) => {
      const text = c.trim();
      if (text.includes('/')) return ipaddr.parseCIDR(text);
      const addr = ipaddr.parse(text);
      return [addr, addr.kind() === 'ipv4' ? 32 : 128] as Range;
    });
  }

  get size(): number {
    return this.#ranges.length;
  }

  contains(address: string | undefined): boolean {
    if (!address || this.#ranges.length === 0) return false;
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = ipaddr.process(address);
    } catch {
      return false;
    }
    return this.#ranges.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net as never, bits));
  }
}

/** Counts open connections per client address. */
export class ConnectionCounter {
  readonly #counts = new Map<string, number>();

  /** Registers a connection; returns false (and registers nothing) when `limit` is reached. */
  acquire(ip: string, limit: number): boolean {
    const n = this.#counts.get(ip) ?? 0;
    if (n >= limit) return false;
    this.#counts.set(ip, n + 1);
    return true;
  }

  release(ip: string): void {
    const n = this.#counts.get(ip) ?? 0;
    if (n <= 1) this.#counts.delete(ip);
    else this.#counts.set(ip, n - 1);
  }

  count(ip: string): number {
    return this.#counts.get(ip) ?? 0;
  }
}

/** "192.0.2.53", "192.0.2.53:5353", "2001:db8::53" or "[2001:db8::53]:5353", as node's setServers takes them. */
export function isServerAddress(value: string): boolean {
  if (net.isIP(value)) return true;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return false;
  const port = Number(m[3]);
  return port >= 1 && port <= 65535 && (m[1] ? net.isIPv6(m[1]) : net.isIPv4(m[2]!));
}
