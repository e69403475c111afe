/**
 * The input side of a line-protocol session that runs one command at a time (POP3, ManageSieve):
 * what the reader parsed waits in order; the socket is paused while anything waits, so a client
 * that pipelines a lot queues in TCP, not here; a running command may take the client's next
 * input itself (SASL continuations); a server shutdown waits for the running command.
 */
import type { Socket } from 'node:net';

export interface CommandQueueHost<T> {
  readonly closed: boolean;
  /** The socket in use now (the TLS one after STARTTLS). */
  socket(): Socket;
  /** Runs one command; the next waits until it settles. */
  execute(item: T): Promise<void>;
  /** A command threw where it should have answered: the session is logged and closed. */
  crashed(err: unknown): void;
  armIdleTimer(): void;
  /** Says goodbye and closes (a shutdown that waited for the running command). */
  shutdownNow(): void;
}

export class CommandQueue<T> {
  readonly #host: CommandQueueHost<T>;
  readonly #items: T[] = [];
  #busy = false;
  #waiter: ((item: T | null) => void) | undefined;
  #closeWhenIdle = false;

  constructor(host: CommandQueueHost<T>) {
    this.#host = host;
  }

  /** A command is running and not waiting for the client (idle and login timers wait for it). */
  get running(): boolean {
    return this.#busy && !this.#waiter;
  }

  push(items: Iterable<T>): void {
    for (const item of items) this.#items.push(item);
    this.#pump();
  }

  /** The client's next input, for the running command; null when the connection closes. */
  next(): Promise<T | null> {
    return new Promise((resolve) => {
      if (this.#host.closed) return resolve(null);
      this.#waiter = resolve;
      this.#host.armIdleTimer();
      this.#pump();
    });
  }

  /** Drops what waits (input pipelined behind STARTTLS must not count as sent under TLS). */
  clear(): void {
    this.#items.length = 0;
  }

  /** Server shutdown: now when no command runs, else once it is done. */
  shutdown(): void {
    if (this.#host.closed) return;
    if (this.running) {
      this.#closeWhenIdle = true;
      return;
    }
    this.#host.shutdownNow();
  }

  /** The connection closed: nothing waits any more, a command waiting for input gets null. */
  closed(): void {
    this.#items.length = 0;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.(null);
  }

  #flowInput(): void {
    if (this.#host.closed) return;
    if (this.#items.length > 0) this.#host.socket().pause();
    else this.#host.socket().resume();
  }

  #pump(): void {
    if (this.#host.closed) return;
    if (this.#waiter) {
      const next = this.#items.shift();
      if (next !== undefined) {
        const waiter = this.#waiter;
        this.#waiter = undefined;
        waiter(next);
      }
      this.#flowInput();
      return;
    }
    if (this.#busy) return this.#flowInput();
    const next = this.#items.shift();
    this.#flowInput();
    if (next === undefined) return;
    this.#busy = true;
    void this.#host
      .execute(next)
      .catch((err: unknown) => this.#host.crashed(err))
      .finally(() => {
        this.#busy = false;
        if (this.#host.closed) return;
        if (this.#closeWhenIdle) return this.#host.shutdownNow();
        this.#host.armIdleTimer();
        this.#pump();
      });
  }
}
