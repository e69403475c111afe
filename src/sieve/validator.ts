/**
 * Compile-time checks (as Pigeonhole's validator): known commands and tests of require'd
 * extensions, tagged and positional arguments of the right type, if/elsif/else order,
 * require at the top. Produces the nodes the interpreter runs.
 */
import type { Argument, CommandNode, TestNode } from './parser.js';
import { COMMANDS, SUPPORTED_EXTENSIONS, type ArgType } from './spec.js';
import type { SieveError } from './types.js';
import { decodeEncodedCharacters } from './strings.js';
import { compileRegex } from './regex.js';

export type TagValue = true | number | string | string[];
export type PositionalValue = number | string[];

export interface Node {
  name: string;
  tags: Record<string, TagValue>;
  args: PositionalValue[];
  tests: Node[];
  block?: Node[];
  line: number;
  column: number;
}

const COMPARATORS = ['i;octet', 'i;ascii-casemap', 'i;ascii-numeric'];
const RELATIONS = ['gt', 'ge', 'lt', 'le', 'eq', 'ne'];
const MAX_ERRORS = 20;

export function validate(tree: CommandNode[], allowed: string[]): { nodes: Node[]; extensions: Set<string>; errors: SieveError[] } {
  const errors: SieveError[] = [];
  const extensions = new Set<string>();
  const error = (at: { line: number; column: number }, message: string): void => {
    if (errors.length < MAX_ERRORS) errors.push({ line: at.line, column: at.column, message });
  };
  const describeArg = (a: Argument): string =>
    a.kind === 'tag' ? `a tag ':${a.name}'` : a.kind === 'number' ? 'a number' : a.list ? 'a string list' : 'a string';
  const typeName = (t: ArgType): string => (t === 'stringlist' ? 'string list' : t);
  const fits = (a: Argument, t: ArgType): boolean =>
    (t === 'number' && a.kind === 'number') ||
    (t === 'stringlist' && a.kind === 'strings') ||
    (t === 'string' && a.kind === 'strings' && !a.list);
  const str = (values: string[]): string[] => (extensions.has('encoded-character') ? values.map(decodeEncodedCharacters) : values);

  const check = (n: TestNode, kind: 'command' | 'test'): Node | undefined => {
    const spec = COMMANDS[n.name];
    const what = kind === 'command' ? 'command' : 'test';
    if (!spec || spec.kind !== kind || (spec.ext && !extensions.has(spec.ext))) {
      const other = spec && spec.kind !== kind;
      error(
        n,
        other
          ? `${kind === 'command' ? 'test' : 'command'} '${n.name}' used as ${what}`
          : `unknown ${what} '${n.name}' (only reported once at first occurrence)`,
      );
      return undefined;
    }
    const node: Node = { name: n.name, tags: {}, args: [], tests: [], line: n.line, column: n.column };
    const groups = new Map<string, string>();
    let i = 0;
    const positional: Argument[] = [];
    for (; i < n.args.length; i++) {
      const a = n.args[i]!;
      if (a.kind !== 'tag') {
        positional.push(a);
        continue;
      }
      if (positional.length > 0 && n.name !== 'hasflag') {
        error(a, `unexpected tagged argument ':${a.name}' after the positional arguments of the ${n.name} ${what}`);
        continue;
      }
      const tag = spec.tags?.[a.name];
      if (!tag || (tag.ext && !extensions.has(tag.ext))) {
        error(a, `unknown tagged argument ':${a.name}' for the ${n.name} ${what} (reported only once at first occurrence)`);
        continue;
      }
      if (tag.group) {
        const prior = groups.get(tag.group);
        if (prior) {
          const pigeonholeName: Record<string, string> = {
            'match type': 'MATCH-TYPE',
            comparator: 'COMPARATOR',
            'address part': 'ADDRESS-PART',
          };
          const upper = pigeonholeName[tag.group];
          error(
            a,
            upper
              ? `encountered duplicate ${upper} argument (:${a.name}) for the ${n.name} ${what}`
              : `conflicting :${prior} and :${a.name} arguments specified for the ${n.name} ${what}`,
          );
          continue;
        }
        groups.set(tag.group, a.name);
      } else if (a.name in node.tags) {
        error(a, `encountered duplicate tagged argument ':${a.name}' for the ${n.name} ${what}`);
        continue;
      }
      let value: TagValue = true;
      if (tag.arg) {
        const v = n.args[i + 1];
        if (!v || !fits(v, tag.arg)) {
          error(
            a,
            `the :${a.name} tag for the ${n.name} ${what} requires a ${typeName(tag.arg)} argument, but ${v ? describeArg(v) : 'none'} was found`,
          );
          i++;
          continue;
        }
        i++;
        value = v.kind === 'number' ? v.value : v.kind === 'strings' ? (tag.arg === 'string' ? str(v.values)[0]! : str(v.values)) : true;
      }
      if (a.name === 'comparator') {
        const c = String(value).toLowerCase();
        if (!COMPARATORS.includes(c) || (c === 'i;ascii-numeric' && !extensions.has('comparator-i;ascii-numeric')))
          error(a, `unknown comparator '${value}'`);
        value = c;
      }
      if ((a.name === 'count' || a.name === 'value') && !RELATIONS.includes(String(value).toLowerCase()))
        error(
          a,
          `the :${a.name} match-type requires a constant string argument being one of "gt", "ge", "lt", "le", "eq" or "ne", but "${value}" was found`,
        );
      if (a.name === 'count' || a.name === 'value') value = String(value).toLowerCase();
      node.tags[a.name] = value;
    }
    // positional arguments
    const min = spec.positional.length - (spec.optional ?? 0) - (spec.optionalLast ?? 0);
    if (positional.length < min || positional.length > spec.positional.length) {
      const wanted = positional.length < min ? min : spec.positional.length;
      error(n, `the ${n.name} ${what} requires ${wanted} positional argument(s), but ${positional.length} is/are specified`);
      return undefined;
    }
    // leading optional arguments (setflag's variable) are the ones left out, else trailing ones
    const offset = spec.optional ? spec.positional.length - positional.length : 0;
    positional.forEach((a, k) => {
      const t = spec.positional[k + offset]!;
      if (!fits(a, t)) {
        error(
          a,
          `the ${n.name} ${what} expects a ${typeName(t)} as argument ${k + 1} (${spec.names?.[k + offset] ?? 'argument'}), but ${describeArg(a)} was found`,
        );
        return;
      }
      node.args.push(a.kind === 'number' ? a.value : a.kind === 'strings' ? str(a.values) : []);
    });
    if (offset > 0) node.args.unshift(...Array.from({ length: offset }, () => [] as string[]));
    while (node.args.length < spec.positional.length) node.args.push([]);
    // tests
    if (spec.tests === 'one') {
      if (n.tests.length !== 1)
        error(n, `the ${n.name} ${what} requires one test argument${n.tests.length ? ', but a test list was found' : ''}`);
    } else if (spec.tests === 'list') {
      if (n.tests.length === 0) error(n, `the ${n.name} test requires a test list argument`);
    } else if (n.tests.length > 0) {
      // "keep\ndiscard;" parses as keep with a test: Pigeonhole words it as a missing ';'
      if (kind === 'command' && !spec.block) error(n, `missing semicolon ';' after ${n.name} command`);
      else error(n.tests[0]!, `the ${n.name} ${what} accepts no test arguments`);
    }
    for (const t of n.tests) {
      const c = check(t, 'test');
      if (c) node.tests.push(c);
    }
    specificChecks(node, error, extensions);
    return node;
  };

  const checkBlock = (commands: CommandNode[], top: boolean): Node[] => {
    const out: Node[] = [];
    let prior: string | undefined;
    let seenOther = false;
    for (const c of commands) {
      if (c.name === 'require') {
        if (!top || seenOther) {
          error(c, 'require commands can only be placed at top level at the beginning of the file');
        } else {
          const a = c.args[0];
          if (c.args.length !== 1 || !a || a.kind !== 'strings') {
            error(c, 'the require command expects a string list as first argument (capabilities)');
          } else {
            for (const cap of a.values) {
              const name = cap.toLowerCase();
              // RFC 5228 2.7.3: i;octet and i;ascii-casemap are always there and may be required
              if (name === 'comparator-i;octet' || name === 'comparator-i;ascii-casemap') continue;
              if (!SUPPORTED_EXTENSIONS.includes(name) || !allowed.includes(name))
                error(a, `require command: unknown Sieve capability \`${cap}'`);
              else extensions.add(name);
              // RFC 5235 3.2: spamtestplus implies spamtest
              if (name === 'spamtestplus' && allowed.includes(name)) extensions.add('spamtest');
            }
          }
        }
        prior = 'require';
        continue;
      }
      seenOther = true;
      if ((c.name === 'elsif' || c.name === 'else') && prior !== 'if' && prior !== 'elsif') {
        error(c, `the ${c.name} command must follow an if or elseif command`);
      }
      if (c.block && !COMMANDS[c.name]?.block && COMMANDS[c.name]) error(c, `the ${c.name} command does not accept a block`);
      if (!c.block && COMMANDS[c.name]?.block) error(c, `the ${c.name} command requires a command block`);
      const node = check(c, 'command');
      if (node && c.block) node.block = checkBlock(c.block, false);
      if (node) out.push(node);
      prior = c.name;
    }
    return out;
  };
  const nodes = checkBlock(tree, true);
  return { nodes, extensions, errors };
}

/** Header fields the address test accepts (Pigeonhole's list: RFC 5322 and common others). */
const ADDRESS_HEADERS = new Set([
  'from',
  'to',
  'cc',
  'bcc',
  'sender',
  'resent-from',
  'resent-to',
  'reply-to',
  'resent-reply-to',
  'resent-sender',
  'resent-cc',
  'resent-bcc',
  'for-approval',
  'for-handling',
  'for-comment',
  'apparently-to',
  'errors-to',
  'delivered-to',
  'return-receipt-to',
  'x-admin',
  'read-receipt-to',
  'x-confirm-reading-to',
  'return-receipt-requested',
  'registered-mail-reply-requested-by',
  'mail-followup-to',
  'mail-reply-to',
  'abuse-reports-to',
  'x-complaints-to',
  'x-report-abuse-to',
  'x-beenthere',
  'original-from',
  'original-to',
]);

/** Checks that depend on argument values (Pigeonhole's validate callbacks). */
function specificChecks(node: Node, error: (at: { line: number; column: number }, message: string) => void, extensions: Set<string>): void {
  if (node.name === 'size' && !('over' in node.tags) && !('under' in node.tags))
    error(node, 'the size test requires either the :under or the :over tag to be specified');
  if (node.name === 'address') {
    for (const h of node.args[0] as string[])
      if (!h.includes('${') && !ADDRESS_HEADERS.has(h.toLowerCase()))
        error(node, `specified header '${h}' is not allowed for the address test`);
  }
  if (node.tags.comparator === 'i;ascii-numeric') {
    const type = ['contains', 'matches', 'regex'].find((t) => t in node.tags);
    if (type)
      error(node, `the specified i;ascii-numeric comparator does not support sub-string matching as required by the :${type} match type`);
  }
  if ('last' in node.tags && !('index' in node.tags) && node.name !== 'addheader' && node.name !== 'duplicate')
    error(
      node,
      `the :last tag for the ${node.name} ${node.name === 'deleteheader' ? 'command' : 'test'} cannot be specified without the :index tag`,
    );
  // an unknown date part or a malformed :zone is only a warning in Pigeonhole (RFC 5260 4.1.1,
  // 4.2): the test is false, or the local zone is used
  if (node.name === 'addheader' || node.name === 'deleteheader') {
    const field = (node.args[0] as string[])[0] ?? '';
    if (!field.includes('${') && !/^[\x21-\x39\x3b-\x7e]+$/.test(field))
      error(node, `${node.name} command: specified field name \`${field}' is invalid`);
  }
  if (node.name === 'global' && !extensions.has('variables')) error(node, 'global command requires that variables extension is active');
  if (node.name === 'include') {
    const name = (node.args[0] as string[])[0] ?? '';
    if (name === '' || /[/\\\x00-\x1f]/.test(name)) error(node, `include: invalid script name '${name}'`);
  }
  if (node.name === 'set') {
    const name = (node.args[0] as string[])[0] ?? '';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !extensions.has('variables-namespaces')) error(node, `invalid variable name '${name}'`);
  }
  if (node.name === 'vacation' && typeof node.tags.from === 'string' && !/@/.test(node.tags.from) && !node.tags.from.includes('${'))
    error(node, `specified :from address '${node.tags.from}' is invalid for vacation action: missing '@'`);
  if (node.name === 'redirect') {
    const addr = (node.args[0] as string[])[0] ?? '';
    if (!addr.includes('${') && !/^[^@\s<>]+@[^@\s<>]+$/.test(addr.replace(/^.*<(.*)>.*$/, '$1').trim()))
      error(
        node,
        `specified redirect address '${addr}' is invalid${addr.includes('@') ? '' : `: invalid or lonely local part '${addr}' (expecting '@')`}`,
      );
  }
  if ('regex' in node.tags) {
    const keys = node.args[node.args.length - 1] as string[];
    for (const k of keys) {
      if (k.includes('${')) continue;
      try {
        compileRegex(k, false);
      } catch (e) {
        error(node, `invalid regular expression '${k}' for regex match: ${(e as Error).message}`);
      }
    }
  }
}
