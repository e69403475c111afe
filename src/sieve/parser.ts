/**
 * Sieve parser (RFC 5228 section 8.2): commands with arguments, tests, test lists and blocks,
 * each node with its line and column. Nesting is bounded (hostile scripts).
 */
import { SieveSyntaxError, tokenize, type Token } from './lexer.js';

export type Argument =
  | { kind: 'tag'; name: string; line: number; column: number }
  | { kind: 'number'; value: number; line: number; column: number }
  | { kind: 'strings'; values: string[]; list: boolean; line: number; column: number };

export interface TestNode {
  name: string;
  args: Argument[];
  tests: TestNode[];
  line: number;
  column: number;
}

export interface CommandNode extends TestNode {
  block?: CommandNode[];
}

/** Pigeonhole's SIEVE_MAX_BLOCK_NESTING and SIEVE_MAX_TEST_NESTING. */
export const MAX_BLOCK_NESTING = 32;
export const MAX_TEST_NESTING = 32;

export function parseSieve(script: string): CommandNode[] {
  const tokens = tokenize(script);
  let i = 0;
  const peek = (): Token => tokens[i]!;
  const next = (): Token => tokens[Math.min(i++, tokens.length - 1)]!;
  const fail = (t: Token, message: string): never => {
    throw new SieveSyntaxError({ line: t.line, column: t.column, message });
  };
  const describe = (t: Token): string =>
    t.kind === 'eof'
      ? 'end of file'
      : t.kind === 'identifier'
        ? `identifier '${t.text}'`
        : t.kind === 'tag'
          ? `tag ':${t.text}'`
          : t.kind === 'number'
            ? 'number'
            : t.kind === 'string'
              ? 'string'
              : `'${t.kind}'`;

  const parseArguments = (depth: number): { args: Argument[]; tests: TestNode[] } => {
    const args: Argument[] = [];
    for (;;) {
      const t = peek();
      if (t.kind === 'tag') {
        next();
        args.push({ kind: 'tag', name: t.text.toLowerCase(), line: t.line, column: t.column });
      } else if (t.kind === 'number') {
        next();
        args.push({ kind: 'number', value: t.value, line: t.line, column: t.column });
      } else if (t.kind === 'string') {
        next();
        args.push({ kind: 'strings', values: [t.text], list: false, line: t.line, column: t.column });
      } else if (t.kind === '[') {
        next();
        const values: string[] = [];
        for (;;) {
          const s = next();
          if (s.kind !== 'string') fail(s, `expecting string after '[' or ',' in string list, but found ${describe(s)}`);
          values.push(s.text);
          const sep = next();
          if (sep.kind === ']') break;
          if (sep.kind !== ',') fail(sep, `expecting ',' or end of string list ']', but found ${describe(sep)}`);
        }
        args.push({ kind: 'strings', values, list: true, line: t.line, column: t.column });
      } else break;
    }
    const tests: TestNode[] = [];
    const t = peek();
    if (t.kind === 'identifier') {
      tests.push(parseTest(depth + 1));
    } else if (t.kind === '(') {
      next();
      for (;;) {
        const s = peek();
        if (s.kind !== 'identifier') fail(s, `expecting test identifier after '(' or ',' in test list, but found ${describe(s)}`);
        tests.push(parseTest(depth + 1));
        const sep = next();
        if (sep.kind === ')') break;
        if (sep.kind !== ',') fail(sep, `expecting ',' or end of test list ')', but found ${describe(sep)}`);
      }
    }
    return { args, tests };
  };

  const parseTest = (depth: number): TestNode => {
    const t = next();
    if (depth > MAX_TEST_NESTING) fail(t, `cannot nest tests deeper than ${MAX_TEST_NESTING} levels`);
    const { args, tests } = parseArguments(depth);
    return { name: t.text.toLowerCase(), args, tests, line: t.line, column: t.column };
  };

  const parseCommands = (depth: number, closing: boolean): CommandNode[] => {
    const commands: CommandNode[] = [];
    for (;;) {
      const t = peek();
      if (t.kind === 'eof') {
        if (closing) fail(t, "expected end of compound block '}', but found end of file");
        return commands;
      }
      if (t.kind === '}') {
        if (!closing) fail(t, "unexpected '}' without a block to close");
        next();
        return commands;
      }
      if (t.kind !== 'identifier') fail(t, `expected identifier, but found ${describe(t)}`);
      next();
      const { args, tests } = parseArguments(0);
      const command: CommandNode = { name: t.text.toLowerCase(), args, tests, line: t.line, column: t.column };
      const end = next();
      if (end.kind === '{') {
        if (depth + 1 > MAX_BLOCK_NESTING) fail(end, `cannot nest command blocks deeper than ${MAX_BLOCK_NESTING} levels`);
        command.block = parseCommands(depth + 1, true);
      } else if (end.kind !== ';') {
        fail(end, `expected end of command ';' or the beginning of a compound block '{', but found ${describe(end)}`);
      }
      commands.push(command);
    }
  };
  return parseCommands(0, false);
}
