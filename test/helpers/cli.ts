/** Runs the maild command line, in this process or as a process, capturing what it writes. */
import { spawn } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import { runCli } from '../../src/cli/commands.js';
import { compiledEntry } from './daemon.js';

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

/** Runs the compiled maild command line as a process (npm test builds it first). */
export function runCliProcess(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [compiledEntry('src/cli/index.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
