/**
 * Pigeonhole's sieve-test (Debian package dovecot-sieve) as the oracle of the Sieve interpreter:
 * a temporary directory with a minimal Dovecot config (mail as `nobody`, no mail store needed),
 * invocations run concurrently in a bounded pool.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const SIEVE_TEST = '/usr/bin/sieve-test';

export interface PigeonholeRun {
  /** 'ok' (actions printed), 'runtime-error' (exit 1, implicit keep), 'compile-error' (exit 89 before running). */
  status: 'ok' | 'runtime-error' | 'compile-error' | 'failed';
  stdout: string;
  stderr: string;
}

export interface Envelope {
  from: string;
  to: string;
}

export class Pigeonhole {
  private constructor(
    readonly dir: string,
    private readonly config: string,
  ) {}

  /**
   * `includes`: scripts for RFC 6609 include, by location and name (written to DIR/personal and
   * DIR/global, Pigeonhole's `sieve` and `sieve_global` locations).
   */
  static async start(
    includes: { personal: Record<string, string>; global: Record<string, string> } = { personal: {}, global: {} },
  ): Promise<Pigeonhole> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-pigeonhole-'));
    // sieve-test drops privileges to mail_uid and writes the compiled script next to the script
    await chmod(dir, 0o777);
    for (const location of ['personal', 'global'] as const) {
      await mkdir(path.join(dir, location));
      await chmod(path.join(dir, location), 0o777);
      for (const [name, text] of Object.entries(includes[location])) {
        await writeFile(path.join(dir, location, `${name}.sieve`), text);
        await chmod(path.join(dir, location, `${name}.sieve`), 0o644);
      }
    }
    const config = path.join(dir, 'dovecot.conf');
    await writeFile(
      config,
      [
        'mail_uid = nobody',
        'mail_gid = nogroup',
        'first_valid_uid = 0',
        'first_valid_gid = 0',
        `mail_location = maildir:${dir}/mail`,
        'plugin {',
        `  sieve = file:${dir}/personal;active=${dir}/personal/.active.sieve`,
        `  sieve_global = ${dir}/global`,
        '}',
        '',
      ].join('\n'),
    );
    await chmod(config, 0o644);
    return new Pigeonhole(dir, config);
  }

  /** Copy a file into the directory sieve-test (as nobody) can read. */
  async put(name: string, content: Buffer | string): Promise<string> {
    const file = path.join(this.dir, name);
    await writeFile(file, content);
    await chmod(file, 0o644);
    return file;
  }

  run(script: string, message: string, envelope: Envelope, extensions = '+vacation-seconds'): Promise<PigeonholeRun> {
    const args = ['-c', this.config, '-x', extensions, '-f', envelope.from, '-r', envelope.to, '-a', envelope.to, script, message];
    return new Promise((resolve) => {
      execFile(SIEVE_TEST, args, { timeout: 20_000 }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        const status =
          code === 0
            ? 'ok'
            : code === 1 && stderr.includes('resolved with successful implicit keep')
              ? 'runtime-error'
              : stderr.includes('failed to compile sieve script')
                ? 'compile-error'
                : 'failed';
        resolve({ status, stdout, stderr });
      });
    });
  }

  async stop(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Run `tasks` with at most `limit` of them at once, results in order. */
export async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
