/**
 * The Sieve interpreter (RFC 5228 and extensions): compile once, run per message. Pure: no I/O.
 */
import { SieveSyntaxError } from './lexer.js';
import { execute } from './interpreter.js';
import { parseSieve } from './parser.js';
import { SUPPORTED_EXTENSIONS } from './spec.js';
import type { SieveError, SieveInput, SieveLimits, SieveResult } from './types.js';
import { validate, type Node } from './validator.js';

export type { SieveAction, SieveError, SieveInput, SieveLimits, SieveResult } from './types.js';

/** A script that compiled: run it with runSieve. */
export interface CompiledSieve {
  readonly nodes: Node[];
  readonly extensions: ReadonlySet<string>;
}

/** What ManageSieve's SIEVE capability and the IMAP/LMTP side advertise. */
export const SIEVE_EXTENSIONS: string[] = [...SUPPORTED_EXTENSIONS];

/** Pigeonhole's defaults (sieve_max_script_size 1M, sieve_max_actions 32, sieve_max_redirects 4). */
export const DEFAULT_SIEVE_LIMITS: SieveLimits = {
  maxScriptSize: 1024 * 1024,
  maxActions: 32,
  maxRedirects: 4,
  maxIncludeDepth: 10,
  maxCpuMs: 10_000,
};

export function compileSieve(
  script: string,
  opts: { extensions?: string[]; limits?: Partial<SieveLimits> } = {},
): { ok: true; script: CompiledSieve } | { ok: false; errors: SieveError[] } {
  const limits = { ...DEFAULT_SIEVE_LIMITS, ...opts.limits };
  if (Buffer.byteLength(script) > limits.maxScriptSize)
    return { ok: false, errors: [{ line: 1, column: 1, message: `script is too large (max ${limits.maxScriptSize} bytes)` }] };
  let tree;
  try {
    tree = parseSieve(script);
  } catch (e) {
    if (e instanceof SieveSyntaxError) return { ok: false, errors: [e.error] };
    if (e instanceof RangeError) return { ok: false, errors: [{ line: 1, column: 1, message: 'script is too complex' }] };
    throw e;
  }
  const allowed = (opts.extensions ?? SIEVE_EXTENSIONS).map((e) => e.toLowerCase());
  const { nodes, extensions, errors } = validate(tree, allowed);
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, script: { nodes, extensions } };
}

export function runSieve(script: CompiledSieve, input: SieveInput, opts: { limits?: Partial<SieveLimits> } = {}): SieveResult {
  const limits = { ...DEFAULT_SIEVE_LIMITS, ...opts.limits };
  return execute(script.nodes, new Set(script.extensions), input, limits);
}
