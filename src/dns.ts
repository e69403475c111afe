/**
 * The process's one DNS resolver: node's c-ares resolver behind a hard deadline per query, a
 * bounded cache of answers and of "no such name/data" results, and one query in flight per
 * (name, type). Its `resolve(name, rrtype)` has the shape of `dns.promises.resolve`, which is what
 * mailauth's `resolver` option calls; resolveMx/resolve4/resolve6 are what the queue's MX lookup
 * uses (queue/mx.ts DnsResolver).
 *
 * Failures reject with node's error codes, which callers tell apart: ENOTFOUND (NXDOMAIN) and
 * ENODATA (the name exists, without records of that type) mean "no", and are what SPF counts as
 * void lookups (RFC 7208 section 4.6.4); ETIMEOUT, ESERVFAIL, EREFUSED, ECONNREFUSED and the rest
 * mean "ask again later" (mailauth turns them into temperror).
 */
import { Resolver } from 'node:dns/promises';
// A function declaration: safe to import although schema.ts may import this module in turn.
import type { DnsConfig } from './config/schema.js';
import { isServerAddress } from './net.js';
export { isServerAddress };

export type RecordType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'PTR' | 'CNAME';

export interface MxRecord {
  exchange: string;
  priority: number;
}

/** What `resolve` returns per type: TXT records as lists of their character-strings. */
export interface Answers {
  A: string[];
  AAAA: string[];
  MX: MxRecord[];
  TXT: string[][];
  PTR: string[];
  CNAME: string[];
}

/** Codes that mean the name or the data does not exist: cached as negative answers. */
const NEGATIVE = new Set(['ENOTFOUND', 'ENODATA']);

/** A failed lookup, with node's code ('ENOTFOUND', 'ENODATA', 'ETIMEOUT', 'ESERVFAIL', ...). */
export class DnsError extends Error {
  readonly code: string;
  readonly hostname: string;
  readonly rrtype: RecordType;
  constructor(code: string, hostname: string, rrtype: RecordType) {
    super(`DNS ${rrtype} lookup of ${hostname} failed: ${code}`);
    this.name = 'DnsError';
    this.code = code;
    this.hostname = hostname;
    this.rrtype = rrtype;
  }
}

/**
 * "No such name" and friends are answers, not faults: thrown for every caller (mailauth writes
 * onto the error it gets) but without a stack, whose capture is most of the cost of an error
 * and which would only ever point here.
 */
function answerError(code: string, host: string, type: RecordType): DnsError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new DnsError(code, host, type);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export { dnsSchema as dnsConfigSchema, type DnsConfig } from './config/schema.js';

export interface DnsOptions {
  /** Nameservers (see dnsConfigSchema); the system's when empty or absent. */
  servers?: string[];
  /** Hard deadline per lookup in ms (default 5000). */
  timeoutMs?: number;
  /** Attempts per server (default 2). */
  tries?: number;
  /** Answers kept at most (default 10000; 0: no cache). */
  maxEntries?: number;
  /** How long answers are kept, ms (default 300000). */
  ttlMs?: number;
  /** How long NXDOMAIN/NODATA are kept, ms (default 60000). */
  negativeTtlMs?: number;
  /** The clock, for tests of expiry. */
  now?: () => number;
}

/** The options of a parsed `dns:` section. */
export function dnsOptions(config: DnsConfig): DnsOptions {
  return {
    servers: config.servers,
    timeoutMs: config.timeout,
    tries: config.tries,
    maxEntries: config.cache.max_entries,
    ttlMs: config.cache.ttl,
    negativeTtlMs: config.cache.negative_ttl,
  };
}

type Outcome = { ok: true; value: Answers[RecordType] } | { ok: false; code: string };

/** A copy, so that no caller can change what another one (or the cache) holds. */
function copy(value: Answers[RecordType]): Answers[RecordType] {
  return (value as unknown[]).map((v) =>
    Array.isArray(v) ? [...v] : typeof v === 'object' ? { ...(v as object) } : v,
  ) as Answers[RecordType];
}

export class Dns {
  readonly #resolver: Resolver;
  readonly #timeoutMs: number;
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #now: () => number;
  /** Key "TYPE name" -> outcome and expiry; Map order is least recently used first. */
  readonly #cache = new Map<string, { outcome: Outcome; expires: number }>();
  readonly #inFlight = new Map<string, Promise<Outcome>>();
  /** Lookups answered from the cache, and questions sent (one per key in flight). */
  readonly stats = { hits: 0, queries: 0 };

  constructor(options: DnsOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 5000;
    const tries = options.tries ?? 2;
    // c-ares waits `timeout` for the first answer and longer for later tries; the deadline in
    // #query cuts whatever is left, so a lookup never outlasts timeoutMs.
    this.#resolver = new Resolver({ timeout: Math.max(100, Math.floor(this.#timeoutMs / tries)), tries });
    if (options.servers?.length) {
      const bad = options.servers.find((s) => !isServerAddress(s));
      if (bad !== undefined)
        throw new TypeError(`dns: bad nameserver address ${JSON.stringify(bad)} (expected "ip", "ip:port" or "[ipv6]:port")`);
      this.#resolver.setServers(options.servers);
    }
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#ttlMs = options.ttlMs ?? 300_000;
    this.#negativeTtlMs = options.negativeTtlMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * `dns.promises.resolve(name, rrtype)`: a bound function, so it can be handed over as it is
   * (mailauth's `resolver` option calls it without `this`).
   */
  readonly resolve = async <T extends RecordType = 'A'>(name: string, rrtype?: T): Promise<Answers[T]> => {
    const type = (rrtype ?? 'A') as T;
    if (!Object.hasOwn(QUERIES, type)) throw new DnsError('EBADQUERY', name, type);
    const host = String(name).toLowerCase().replace(/\.$/, '');
    const key = `${type} ${host}`;
    let outcome = this.#cached(key);
    if (outcome) {
      this.stats.hits++;
    } else {
      let pending = this.#inFlight.get(key);
      if (!pending) {
        pending = this.#query(host, type).then((result) => {
          this.#inFlight.delete(key);
          this.#store(key, result);
          return result;
        });
        this.#inFlight.set(key, pending);
      }
      outcome = await pending;
    }
    // A fresh error per caller: mailauth writes its verdict onto the error object (err.spfResult).
    if (!outcome.ok) throw answerError(outcome.code, host, type);
    return copy(outcome.value) as Answers[T];
  };

  readonly resolve4 = (name: string) => this.resolve(name, 'A');
  readonly resolve6 = (name: string) => this.resolve(name, 'AAAA');
  readonly resolveMx = (name: string) => this.resolve(name, 'MX');
  readonly resolveTxt = (name: string) => this.resolve(name, 'TXT');
  readonly resolvePtr = (name: string) => this.resolve(name, 'PTR');
  readonly resolveCname = (name: string) => this.resolve(name, 'CNAME');

  /** Forgets every cached answer. */
  clearCache(): void {
    this.#cache.clear();
  }

  /** Ends lookups in flight (they fail with ECANCELLED); the resolver stays usable. */
  cancel(): void {
    this.#resolver.cancel();
  }

  /** One question to the nameservers, settled by the deadline at the latest. */
  async #query(host: string, type: RecordType): Promise<Outcome> {
    this.stats.queries++;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, code: 'ETIMEOUT' }), this.#timeoutMs);
    });
    // Any throw of node's (a name that is not a string) becomes an outcome too: this never rejects.
    const answer = (async () => QUERIES[type](this.#resolver, host))().then(
      (value): Outcome => ({ ok: true, value }),
      (err: unknown): Outcome => ({ ok: false, code: (err as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN' }),
    );
    try {
      return await Promise.race([answer, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  #cached(key: string): Outcome | undefined {
    const entry = this.#cache.get(key);
    if (!entry) return undefined;
    this.#cache.delete(key);
    if (entry.expires <= this.#now()) return undefined;
    this.#cache.set(key, entry); // most recently used now
    return entry.outcome;
  }

  #store(key: string, outcome: Outcome): void {
    // Failures other than "no such name/data" (timeouts, SERVFAIL) are not kept: the next lookup asks again.
    const ttl = outcome.ok ? this.#ttlMs : NEGATIVE.has(outcome.code) ? this.#negativeTtlMs : 0;
    if (ttl <= 0 || this.#maxEntries <= 0) return;
    this.#cache.set(key, { outcome, expires: this.#now() + ttl });
    while (this.#cache.size > this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
  }
}

const QUERIES: Record<RecordType, (r: Resolver, host: string) => Promise<Answers[RecordType]>> = {
  A: (r, host) => r.resolve4(host),
  AAAA: (r, host) => r.resolve6(host),
  MX: (r, host) => r.resolveMx(host),
  TXT: (r, host) => r.resolveTxt(host),
  PTR: (r, host) => r.resolvePtr(host),
  CNAME: (r, host) => r.resolveCname(host),
};
