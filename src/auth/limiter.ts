/**
 * Failed-login throttling shared by IMAP, POP3 and submission: each failure from an address
 * makes its next attempts wait longer (doubling from `baseDelayMs` up to `maxDelayMs`), and the
 * count decays after `forgetAfterMs` without failures. A delay costs the server a timer, not a
 * thread, and slows a password-guessing client to a crawl. Also counts open sessions per
 * user+address (Dovecot's mail_max_userip_connections).
 */
export interface AuthLimiterOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  forgetAfterMs: number;
  /** Entries kept at most (oldest dropped first). */
  maxEntries: number;
}

interface Failures {
  count: number;
  last: number;
}

export class AuthLimiter {
  readonly #failures = new Map<string, Failures>();
  readonly #sessions = new Map<string, number>();
  readonly #opts: AuthLimiterOptions;
  readonly #now: () => number;

  constructor(opts: AuthLimiterOptions, now: () => number = Date.now) {
    this.#opts = opts;
    this.#now = now;
  }

  #current(ip: string): Failures | undefined {
    const f = this.#failures.get(ip);
    if (f && this.#now() - f.last > this.#opts.forgetAfterMs) {
      this.#failures.delete(ip);
      return undefined;
    }
    return f;
  }

  /** How long to wait before answering a login from this address (0 with no recent failures). */
  delayFor(ip: string): number {
    const f = this.#current(ip);
    if (!f) return 0;
    return Math.min(this.#opts.maxDelayMs, this.#opts.baseDelayMs * 2 ** Math.min(f.count - 1, 20));
  }

  failures(ip: string): number {
    return this.#current(ip)?.count ?? 0;
  }

  recordFailure(ip: string): void {
    const f = this.#current(ip) ?? { count: 0, last: 0 };
    f.count++;
    f.last = this.#now();
    this.#failures.delete(ip);
    this.#failures.set(ip, f);
    while (this.#failures.size > this.#opts.maxEntries) this.#failures.delete(this.#failures.keys().next().value as string);
  }

  recordSuccess(ip: string): void {
    this.#failures.delete(ip);
  }

  /** Waits out the delay for this address (at most `maxMs`: a client that gives up sooner). */
  async wait(ip: string, maxMs = Infinity): Promise<void> {
    const ms = Math.min(this.delayFor(ip), maxMs);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** Registers a session of user+ip; false when `limit` sessions are open already. */
  openSession(user: string, ip: string, limit: number): boolean {
    const key = `${user}\u0000${ip}`;
    const n = this.#sessions.get(key) ?? 0;
    if (n >= limit) return false;
    this.#sessions.set(key, n + 1);
    return true;
  }

  closeSession(user: string, ip: string): void {
    const key = `${user}\u0000${ip}`;
    const n = this.#sessions.get(key) ?? 0;
    if (n <= 1) this.#sessions.delete(key);
    else this.#sessions.set(key, n - 1);
  }
}
