/**
 * `maild sieve check FILE` and `maild sieve test SCRIPT MESSAGE`: a script's compile errors with
 * their lines, and the actions it would perform on a message, printed as Pigeonhole's sieve-test
 * prints them ("Performed actions:"), so the two can be compared line for line.
 */
import { readFile } from 'node:fs/promises';
import { compileSieve, runSieve } from '../sieve/index.js';
import { renderSieveResult } from '../sieve/render.js';
import type { CliIo } from './commands.js';

export interface SieveTestOptions {
  /** Envelope sender (default: the message's Return-Path or From, as sieve-test). */
  from?: string;
  /** Envelope recipient (default: recipient@example.com, as sieve-test). */
  to?: string;
}

export async function sieveCheck(file: string, io: CliIo): Promise<number> {
  const result = compileSieve(await readFile(file, 'utf8'));
  if (result.ok) {
    io.stdout.write(`${file}: ok\n`);
    return 0;
  }
  for (const e of result.errors) io.stderr.write(`${file}: line ${e.line}: error: ${e.message}\n`);
  return 1;
}

export async function sieveTest(scriptFile: string, messageFile: string, opts: SieveTestOptions, io: CliIo): Promise<number> {
  const compiled = compileSieve(await readFile(scriptFile, 'utf8'));
  if (!compiled.ok) {
    for (const e of compiled.errors) io.stderr.write(`${scriptFile}: line ${e.line}: error: ${e.message}\n`);
    return 1;
  }
  const message = await readFile(messageFile);
  const result = runSieve(compiled.script, {
    message,
    envelope: { from: opts.from ?? envelopeSender(message), to: opts.to ?? 'recipient@example.com' },
  });
  io.stdout.write(renderSieveResult(result));
  return result.error ? 1 : 0;
}

/** The sender sieve-test assumes: Return-Path, else the first From address. */
function envelopeSender(message: Buffer): string {
  const head = message.subarray(0, 64 * 1024).toString('latin1');
  const returnPath = /^Return-Path:\s*<([^>]*)>/im.exec(head);
  if (returnPath) return returnPath[1]!;
  const from = /^From:[^\n]*?<?([^\s<>]+@[^\s<>]+)>?/im.exec(head);
  return from ? from[1]! : '';
}
