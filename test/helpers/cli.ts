/** Runs the maild command line, in this process or as a process, capturing what it writes. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { runCli } from '../../src/cli/commands.js';
import { ROOT, compiledEntry } from './daemon.js';

/** In this process. */
export async function runCliCaptured(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  const code = await runCli(args, { stdin: Readable.from([]), stdout, stderr });
  return { code, stdout: out, stderr: err };
}

/** Runs the maild command line as a process: compiled (npm test builds it first), or from source with compiled: false. */
export function runCliProcess(
  args: string[],
  opts: { compiled?: boolean } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const entry = opts.compiled === false ? ['--import', 'tsx', path.join(ROOT, 'src/cli/index.ts')] : [compiledEntry('src/cli/index.ts')];
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [...entry, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
