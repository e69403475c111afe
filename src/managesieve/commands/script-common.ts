/** What the script commands share: the name argument, the store, the check of a script. */
import { scriptNameProblem, type SieveScriptStore } from '../../store/sieve-scripts.js';
import { ManageSieveError } from '../errors.js';
import { textArg, utf8, type Token } from '../parser.js';
import type { ManageSieveSession } from '../session.js';

/** A script name argument (RFC 5804 section 1.6). */
export function scriptName(args: Token[], index: number): string {
  const name = textArg(args, index, 'script name');
  const problem = scriptNameProblem(name);
  if (problem) throw new ManageSieveError(`${problem}.`);
  return name;
}

export function store(session: ManageSieveSession): SieveScriptStore {
  if (!session.scripts) throw new ManageSieveError('Authenticate first.', { bad: true });
  return session.scripts;
}

/**
 * Checks a script as PUTSCRIPT and CHECKSCRIPT do (RFC 5804 sections 2.6, 2.12): invalid
 * octets or a compile error are NO "line N: ..." (as Pigeonhole words it); the warnings, if
 * any, are returned for OK (WARNINGS).
 */
export async function checkScript(session: ManageSieveSession, data: Buffer): Promise<string | undefined> {
  const text = utf8(data);
  if (text === undefined) throw new ManageSieveError(`line ${firstBadLine(data)}: script is not valid UTF-8.`);
  const result = await session.ctx.validate(text);
  if (!result.ok) throw new ManageSieveError(`line ${result.line}: ${result.message}`);
  return result.warnings;
}

/** The number of the first line whose octets are not UTF-8. */
function firstBadLine(data: Buffer): number {
  let line = 1;
  let start = 0;
  for (;;) {
    const lf = data.indexOf(0x0a, start);
    const end = lf === -1 ? data.length : lf;
    if (utf8(data.subarray(start, end)) === undefined || lf === -1) return line;
    line++;
    start = lf + 1;
  }
}
