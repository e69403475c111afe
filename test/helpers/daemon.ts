/**
 * Runs the daemon as a separate process (signals, crashes, exit codes), from source through
 * tsx or from the compiled output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The compiled counterpart of a source file (dist/src/...js), for tests that start many
 * processes; fails when src/ changed after the last build (npm test builds first).
 */
export function compiledEntry(source: string): string {
  const compiled = path.join(ROOT, 'dist', source.replace(/\.ts$/, '.js'));
  let built: number;
  try {
    built = statSync(compiled).mtimeMs;
  } catch {
    throw new Error(`${compiled} is missing: run npm run build (npm test does)`);
  }
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).mtimeMs,
      ),
    );
  if (newest(path.join(ROOT, 'src')) > built) throw new Error(`src/ is newer than ${compiled}: run npm run build (npm test does)`);
  return compiled;
}

export interface Daemon {
  proc: ChildProcess;
  /** Parsed JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Port of a listener by name, from its 'listening' log line. */
  port(name: string): number;
  /** Waits for a log line matching the predicate. */
  waitLog(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

/** Daemons still running; any left when the test process ends (a test failed before stopping its own) are killed. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

export function spawnDaemon(
  args: string[],
  opts: { compiled?: boolean; env?: NodeJS.ProcessEnv; cwd?: string; wrapper?: string[]; command?: string[] } = {},
): Daemon {
  const entry = opts.compiled ? [compiledEntry('src/main.ts')] : ['--import', 'tsx', path.join(ROOT, 'src/main.ts')];
  // command: another way in that ends up running the daemon (the container's entrypoint script).
  const [command, ...prefix] =
    opts.command ?? (opts.wrapper ? [...opts.wrapper, process.execPath, ...entry] : [process.execPath, ...entry]);
  const proc = spawn(command!, [...prefix, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  let partial = '';
  const waiters: Array<() => void> = [];
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    partial += d;
    let nl;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ raw: line });
      }
    }
    for (const w of waiters.splice(0)) w();
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      for (const w of waiters.splice(0)) w();
      resolve({ code, signal });
    });
  });
  let done = false;
  void exited.then(() => (done = true));

  const daemon: Daemon = {
    proc,
    logs,
    stderr: () => stderr,
    port(name) {
      const line = logs.find((l) => l.msg === 'listening' && l.listener === name);
      const at = line?.at as { port?: number } | undefined;
      if (!at?.port) throw new Error(`no listening line for ${name}: ${JSON.stringify(logs.slice(-5))}`);
      return at.port;
    },
    async waitLog(pred, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = logs.find(pred);
        if (hit) return hit;
        if (done)
          throw new Error(`daemon exited before the expected log line; stderr: ${stderr}; last logs: ${JSON.stringify(logs.slice(-5))}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`log line not seen within ${ms} ms; last logs: ${JSON.stringify(logs.slice(-5))}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    exited,
    kill(signal = 'SIGTERM') {
      if (!done) proc.kill(signal);
    },
  };
  return daemon;
}
