/**
 * Where mail for a domain goes: MX records by preference (RFC 5321 section 5.1), the implicit MX
 * when there are none, null MX (RFC 7505), and the A/AAAA addresses of each host.
 *
 * Failures are DeliveryError values: permanent when DNS says authoritatively that the domain (or
 * its mail service) does not exist, temporary for everything else (SERVFAIL, timeouts, refused).
 */
import { Resolver } from 'node:dns/promises';
import net from 'node:net';

/** A delivery failure with its SMTP code, RFC 3463 enhanced code and whether to give up. */
export class DeliveryError extends Error {
  readonly code: number;
  readonly enhanced: string;
  readonly permanent: boolean;
  constructor(code: number, enhanced: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DeliveryError';
    this.code = code;
    this.enhanced = enhanced;
    this.permanent = code >= 500;
  }
}

/** The subset of node:dns/promises' Resolver this module uses (injectable for tests). */
export interface DnsResolver {
  resolveMx(name: string): Promise<Array<{ exchange: string; priority: number }>>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface MxHost {
  /** The MX host name (or the domain itself for an implicit MX, or the IP of an address literal). */
  name: string;
  /** IPv4 addresses first, then IPv6. Never empty. */
  addresses: string[];
}

export interface MxResolverOptions {
  /** DNS servers, "ip" or "ip:port" ("[ipv6]:port"); the system's resolvers otherwise. */
  servers?: string[];
  /** Per-query timeout in milliseconds (the c-ares resolver retries once more). */
  timeoutMs?: number;
  /** A resolver to use instead of node's (tests). */
  resolver?: DnsResolver;
}

/** DNS answers meaning "this name has no such records" rather than "ask again later". */
const NO_DATA = new Set(['ENODATA']);
const NO_NAME = new Set(['ENOTFOUND', 'ENONAME']);

function dnsCode(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EUNKNOWN';
}

function temporary(name: string, type: string, err: unknown): DeliveryError {
  return new DeliveryError(451, '4.4.3', `DNS lookup of ${name} (${type}) failed: ${dnsCode(err)}; will retry`, { cause: err });
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 section 4.1.3) -> the address, else undefined. */
export function addressLiteral(domain: string): string | undefined {
  const m = /^\[(?:ipv6:)?([^\]]+)\]$/i.exec(domain);
  if (!m) return undefined;
  const ip = m[1]!;
  if (/^ipv6:/i.test(domain.slice(1)) ? net.isIPv6(ip) : net.isIPv4(ip)) return ip;
  return undefined;
}

export class MxResolver {
  readonly #dns: DnsResolver;

  constructor(options: MxResolverOptions = {}) {
    if (options.resolver) {
      this.#dns = options.resolver;
    } else {
      const resolver = new Resolver({ timeout: options.timeoutMs ?? 10_000, tries: 2 });
      if (options.servers?.length) resolver.setServers(options.servers);
      this.#dns = resolver;
    }
  }

  /**
   * The hosts to try for mail to `domain`, best first: MX records by ascending preference, in
   * random order among equal preferences (RFC 5321 section 5.1), each with its addresses.
   * Hosts without addresses are left out; if none is left, that is an error.
   */
  async hostsFor(domain: string): Promise<{ hosts: MxHost[] }> {
    const literal = addressLiteral(domain);
    if (literal) return { hosts: [{ name: literal, addresses: [literal] }] };
    if (domain.startsWith('[')) throw new DeliveryError(553, '5.1.2', `bad address literal ${domain}`);
    const name = domain.replace(/\.$/, '').toLowerCase();

    let records: Array<{ exchange: string; priority: number }>;
    try {
      records = await this.#dns.resolveMx(name);
    } catch (err) {
      const code = dnsCode(err);
      if (NO_NAME.has(code)) throw new DeliveryError(550, '5.1.2', `Host or domain name not found: ${name} (NXDOMAIN)`, { cause: err });
      if (!NO_DATA.has(code)) throw temporary(name, 'MX', err);
      records = [];
    }

    // RFC 7505: a single MX with the root as exchange says the domain accepts no mail. Null MX
    // records mixed with real ones are a misconfiguration; the real ones are used.
    const isNull = (r: { exchange: string }) => r.exchange === '' || r.exchange === '.';
    if (records.length > 0 && records.every(isNull)) {
      throw new DeliveryError(556, '5.1.10', `Domain ${name} does not accept mail (null MX, RFC 7505)`);
    }
    records = records.filter((r) => !isNull(r));

    if (records.length === 0) {
      // RFC 5321 section 5.1: no MX records -> the domain itself is the (implicit) MX.
      const hosts = await this.#resolveAll([name]);
      return { hosts };
    }

    const byPreference = new Map<number, string[]>();
    for (const r of records) {
      const exchange = r.exchange.replace(/\.$/, '').toLowerCase();
      const group = byPreference.get(r.priority) ?? [];
      if (!group.includes(exchange)) group.push(exchange);
      byPreference.set(r.priority, group);
    }
    const ordered: string[] = [];
    for (const pref of [...byPreference.keys()].sort((a, b) => a - b)) {
      for (const exchange of shuffle(byPreference.get(pref)!)) if (!ordered.includes(exchange)) ordered.push(exchange);
    }
    return { hosts: await this.#resolveAll(ordered) };
  }

  /**
   * The addresses of an explicit host ([host] next hop). Every failure is temporary: the host is
   * configuration (transport map, relayhost), and a typo there must not bounce the mail.
   */
  async hostAddresses(host: string): Promise<{ hosts: MxHost[] }> {
    const literal = addressLiteral(host) ?? (net.isIP(host) ? host : undefined);
    if (literal) return { hosts: [{ name: literal, addresses: [literal] }] };
    try {
      return { hosts: await this.#resolveAll([host.replace(/\.$/, '').toLowerCase()]) };
    } catch (err) {
      if (err instanceof DeliveryError && err.permanent) throw new DeliveryError(451, '4.4.3', err.message, { cause: err });
      throw err;
    }
  }

  /** Resolves each host; hosts without addresses are skipped, an error only when none is left. */
  async #resolveAll(names: string[]): Promise<MxHost[]> {
    const hosts: MxHost[] = [];
    let firstTemporary: DeliveryError | undefined;
    let lastMissing = '';
    for (const name of names) {
      try {
        const addresses = await this.#addresses(name);
        if (addresses.length > 0) hosts.push({ name, addresses });
        else lastMissing = name;
      } catch (err) {
        firstTemporary ??= err as DeliveryError;
      }
    }
    if (hosts.length > 0) return hosts;
    // Some lookup may succeed on retry: defer rather than bounce.
    if (firstTemporary) throw firstTemporary;
    throw new DeliveryError(550, '5.4.4', `Host or domain name not found: no A or AAAA record for ${lastMissing}`);
  }

  /** A then AAAA (IPv4 first). [] when the name has neither; DeliveryError(temporary) on trouble. */
  async #addresses(name: string): Promise<string[]> {
    if (net.isIP(name)) return [name];
    const query = async (type: 'A' | 'AAAA'): Promise<string[]> => {
      try {
        return await (type === 'A' ? this.#dns.resolve4(name) : this.#dns.resolve6(name));
      } catch (err) {
        const code = dnsCode(err);
        if (NO_DATA.has(code) || NO_NAME.has(code)) return [];
        throw temporary(name, type, err);
      }
    };
    const [v4, v6] = await Promise.allSettled([query('A'), query('AAAA')]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (addresses.length > 0) return addresses;
    // Nothing usable: a temporary failure of either query means "maybe later".
    if (v4.status === 'rejected') throw v4.reason;
    if (v6.status === 'rejected') throw v6.reason;
    return [];
  }
}
