/**
 * The Sieve interpreter (RFC 5228 and extensions): compile once, run per message. Pure: no I/O
 * (included scripts come from a callback).
 */
import { SieveSyntaxError } from './lexer.js';
import { execute, type ScriptUnit, type SieveChecks } from './interpreter.js';
import { parseSieve } from './parser.js';
import { SUPPORTED_EXTENSIONS } from './spec.js';
import type { SieveError, SieveInput, SieveLimits, SieveResult } from './types.js';
import { validate, type Node } from './validator.js';

export type { SieveChecks } from './interpreter.js';
export type { SieveAction, SieveError, SieveInput, SieveLimits, SieveResult } from './types.js';

/** A script that compiled, with the scripts it includes: run it with runSieve. */
export type CompiledSieve = ScriptUnit;

/** RFC 6609: the text of an included script, undefined when there is none. */
export type SieveIncludeResolver = (name: string, location: 'personal' | 'global') => string | undefined;

export interface CompileOptions {
  extensions?: string[];
  limits?: Partial<SieveLimits>;
  include?: SieveIncludeResolver;
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

/** Scripts one include tree may hold (Pigeonhole's sieve_include_max_includes). */
const MAX_INCLUDED_SCRIPTS = 255;

function compileOne(script: string, allowed: string[], limits: SieveLimits): { nodes: Node[]; extensions: Set<string> } | SieveError[] {
  if (Buffer.byteLength(script) > limits.maxScriptSize)
    return [{ line: 1, column: 1, message: `script is too large (max ${limits.maxScriptSize} bytes)` }];
  let tree;
  try {
    tree = parseSieve(script);
  } catch (e) {
    if (e instanceof SieveSyntaxError) return [e.error];
    if (e instanceof RangeError) return [{ line: 1, column: 1, message: 'script is too complex' }];
    throw e;
  }
  const { nodes, extensions, errors } = validate(tree, allowed);
  return errors.length > 0 ? errors : { nodes, extensions };
}

function includeCommands(nodes: Node[]): Node[] {
  return nodes.flatMap((n) => [...(n.name === 'include' ? [n] : []), ...includeCommands(n.block ?? [])]);
}

export function compileSieve(
  script: string,
  opts: CompileOptions = {},
): { ok: true; script: CompiledSieve } | { ok: false; errors: SieveError[] } {
  const limits = { ...DEFAULT_SIEVE_LIMITS, ...opts.limits };
  const allowed = (opts.extensions ?? SIEVE_EXTENSIONS).map((e) => e.toLowerCase());
  const units = new Map<string, { nodes: Node[]; extensions: Set<string>; includes: Map<string, ScriptUnit> }>();
  // RFC 6609 3.2: included scripts compile on their own; a script included twice is one unit
  const build = (
    text: string,
    depth: number,
    path: string[],
  ): { nodes: Node[]; extensions: Set<string>; includes: Map<string, ScriptUnit> } | SieveError[] => {
    const compiled = compileOne(text, allowed, limits);
    if (Array.isArray(compiled)) return compiled;
    const unit = { ...compiled, includes: new Map<string, ScriptUnit>() };
    for (const inc of includeCommands(unit.nodes)) {
      const name = (inc.args[0] as string[])[0] ?? '';
      const location = inc.tags.global ? 'global' : 'personal';
      const key = `${location}:${name}`;
      const at = { line: inc.line, column: inc.column };
      if (path.includes(key)) return [{ ...at, message: `include: circular include of ${location} script '${name}'` }];
      if (depth + 1 > limits.maxIncludeDepth)
        return [{ ...at, message: `include: cannot nest includes deeper than ${limits.maxIncludeDepth} levels` }];
      let child = units.get(key);
      if (!child) {
        const source = opts.include?.(name, location);
        if (source === undefined) {
          if (inc.tags.optional) continue;
          return [{ ...at, message: `included ${location} script '${name}' does not exist` }];
        }
        if (units.size >= MAX_INCLUDED_SCRIPTS) return [{ ...at, message: 'include: too many included scripts' }];
        const result = build(source, depth + 1, [...path, key]);
        if (Array.isArray(result))
          return [
            { ...at, message: `failed to compile included ${location} script '${name}': line ${result[0]!.line}: ${result[0]!.message}` },
          ];
        child = result;
        units.set(key, child);
      }
      unit.includes.set(key, child);
    }
    return unit;
  };
  const result = build(script, 0, []);
  if (Array.isArray(result)) return { ok: false, errors: result };
  return { ok: true, script: result };
}

export function runSieve(
  script: CompiledSieve,
  input: SieveInput,
  opts: { limits?: Partial<SieveLimits> } & SieveChecks = {},
): SieveResult {
  const limits = { ...DEFAULT_SIEVE_LIMITS, ...opts.limits };
  const checks: SieveChecks = {};
  if (opts.isDuplicate) checks.isDuplicate = opts.isDuplicate;
  if (opts.mailboxExists) checks.mailboxExists = opts.mailboxExists;
  return execute(script, input, limits, checks);
}
