/** Runs the maild command line in this process, capturing what it writes. */
import { PassThrough, Readable } from 'node:stream';
import { runCli } from '../../src/cli/commands.js';

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
