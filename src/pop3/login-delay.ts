/**
 * RFC 2449 section 6.5 LOGIN-DELAY: the least time between two logins of one user. A client
 * that logs in sooner is refused with -ERR [LOGIN-DELAY] (section 8.1.2), which tells it to
 * wait rather than to ask the user for the password again. Remembered per process, for at most
 * `maxEntries` users (the oldest forgotten first).
 */
export class LoginDelay {
  readonly #last = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(maxEntries = 100_000, now: () => number = Date.now) {
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  /** Milliseconds the user must still wait (0: may log in now). */
  remaining(user: string, delayMs: number): number {
    if (delayMs <= 0) return 0;
    const last = this.#last.get(user);
    if (last === undefined) return 0;
    return Math.max(0, last + delayMs - this.#now());
  }

  record(user: string): void {
    this.#last.delete(user);
    this.#last.set(user, this.#now());
    while (this.#last.size > this.#maxEntries) this.#last.delete(this.#last.keys().next().value as string);
  }
}
