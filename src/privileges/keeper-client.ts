/** The daemon's side of the privileged keeper (keeper.ts): started before the drop, asked on SIGHUP. */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MailError } from '../errors.js';
import type { Credentials } from '../tls/certificates.js';

export interface KeeperRequest {
  id: number;
  type: 'reload';
}

export type KeeperReply = { id: number; ok: true; configText: string; credentials: Credentials } | { id: number; ok: false; error: string };

export class Keeper {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, (reply: KeeperReply) => void>();
  #nextId = 1;
  #gone: string | undefined;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (reply: KeeperReply) => {
      const resolve = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      resolve?.(reply);
    });
    child.on('exit', (code, signal) => {
      this.#gone = `the privileged keeper exited (${signal ?? code})`;
      for (const [id, resolve] of this.#pending) resolve({ id, ok: false, error: this.#gone });
      this.#pending.clear();
    });
  }

  /** Starts the keeper with the daemon's own runtime flags (tsx in development); call it while still root. */
  static start(configPath: string): Keeper {
    const here = fileURLToPath(import.meta.url);
    const entry = path.join(path.dirname(here), `keeper${path.extname(here)}`);
    const child = fork(entry, [path.resolve(configPath)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: process.execArgv,
      env: process.env,
    });
    // The keeper must never keep the daemon alive, nor die with a terminal's Ctrl-C before it.
    child.unref();
    child.channel?.unref();
    return new Keeper(child);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The configuration's text and credentials, read as root; rejects with the keeper's reason. */
  reload(timeoutMs = 30_000): Promise<{ configText: string; credentials: Credentials }> {
    if (this.#gone) return Promise.reject(new MailError('TEMP_FAIL', `${this.#gone}: restart maild to re-read the certificates`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new MailError('TEMP_FAIL', 'the privileged keeper did not answer'));
      }, timeoutMs);
      this.#pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.ok) resolve({ configText: reply.configText, credentials: reply.credentials });
        else reject(new MailError('CONFIG_INVALID', reply.error));
      });
      this.#child.send({ id, type: 'reload' } satisfies KeeperRequest);
    });
  }

  close(): void {
    if (this.#child.connected) this.#child.disconnect();
  }
}
