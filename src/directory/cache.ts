/**
 * A bounded cache with separate lifetimes for hits and misses (Dovecot's auth_cache_ttl and
 * auth_cache_negative_ttl), least-recently-used eviction, and coalescing of concurrent lookups of
 * one key so a burst of RCPTs for one address costs one query. Failures are never cached.
 */
export interface CacheOptions {
  positiveTtlMs: number;
  negativeTtlMs: number;
  maxEntries: number;
  now?: () => number;
}

interface Entry<V> {
  value: V;
  expires: number;
}

export class LookupCache {
  readonly #entries = new Map<string, Entry<unknown>>();
  readonly #inFlight = new Map<string, Promise<unknown>>();
  readonly #opts: CacheOptions;
  readonly #now: () => number;
  #generation = 0;

  constructor(opts: CacheOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** Returns the cached value or runs `load` once for all concurrent callers. `null` is a miss. */
  async get<V>(key: string, load: () => Promise<V | null>): Promise<V | null> {
    const hit = this.#entries.get(key);
    if (hit) {
      if (hit.expires > this.#now()) {
        // Refresh recency: Map iteration order is insertion order.
        this.#entries.delete(key);
        this.#entries.set(key, hit);
        return hit.value as V | null;
      }
      this.#entries.delete(key);
    }
    const pending = this.#inFlight.get(key);
    if (pending) return pending as Promise<V | null>;
    const generation = this.#generation;
    const promise = load().then(
      (value) => {
        this.#inFlight.delete(key);
        // A clear() while the lookup ran means the answer may predate the change: do not keep it.
        if (generation === this.#generation) this.#store(key, value);
        return value;
      },
      (err: unknown) => {
        this.#inFlight.delete(key);
        throw err;
      },
    );
    this.#inFlight.set(key, promise);
    return promise;
  }

  #store(key: string, value: unknown): void {
    const ttl = value === null ? this.#opts.negativeTtlMs : this.#opts.positiveTtlMs;
    if (ttl <= 0 || this.#opts.maxEntries <= 0) return;
    this.#entries.set(key, { value, expires: this.#now() + ttl });
    while (this.#entries.size > this.#opts.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#generation++;
  }

  get size(): number {
    return this.#entries.size;
  }
}
