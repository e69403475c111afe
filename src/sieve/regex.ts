/**
 * The regex match type (draft-ietf-sieve-regex, as Pigeonhole: POSIX extended regular
 * expressions) turned into JavaScript regular expressions. V8 backtracks and cannot be
 * interrupted, so patterns whose cost can explode are refused: a repeated group that itself
 * contains a repetition or an alternation ("(a+)+", "(a|aa)*"), and back-references.
 */

/** Longest regex key accepted (a script's strings are bounded by its size; this bounds one key). */
export const MAX_REGEX_LENGTH = 1024;

const POSIX_CLASSES: Record<string, string> = {
  alpha: 'A-Za-z',
  digit: '0-9',
  alnum: 'A-Za-z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: ' \\t\\r\\n\\v\\f',
  blank: ' \\t',
  punct: '!-\\/:-@\\[-`{-~',
  print: ' -~',
  graph: '!-~',
  cntrl: '\\x00-\\x1f\\x7f',
  xdigit: '0-9A-Fa-f',
};

export class RegexError extends Error {}

interface Group {
  /** The group contains a quantifier or an alternation. */
  risky: boolean;
}

/** POSIX ERE to a JavaScript source string; throws RegexError on what it refuses. */
export function posixToJs(pattern: string): string {
  if (pattern.length > MAX_REGEX_LENGTH) throw new RegexError(`regular expression longer than ${MAX_REGEX_LENGTH} characters`);
  let out = '';
  const stack: Group[] = [];
  let lastWasGroup: Group | undefined;
  const markRisky = (): void => {
    for (const g of stack) g.risky = true;
  };
  const isQuantifierAt = (k: number): boolean => {
    const c = pattern[k];
    return c === '*' || c === '+' || c === '?' || (c === '{' && /^\{\d+(,\d*)?\}/.test(pattern.slice(k)));
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '[') {
      // bracket expression: "]" first is literal, backslash is literal, [:class:]
      let j = i + 1;
      let body = '';
      if (pattern[j] === '^') {
        body += '^';
        j++;
      }
      if (pattern[j] === ']') {
        body += '\\]';
        j++;
      }
      for (; j < pattern.length && pattern[j] !== ']'; j++) {
        const d = pattern[j]!;
        if (d === '[' && pattern[j + 1] === ':') {
          const end = pattern.indexOf(':]', j + 2);
          const cls = end < 0 ? undefined : POSIX_CLASSES[pattern.slice(j + 2, end)];
          if (!cls) throw new RegexError('invalid character class');
          body += cls;
          j = end + 1;
        } else if (d === '\\' || d === '[' || d === '/') body += '\\' + d;
        else body += d;
      }
      if (j >= pattern.length) throw new RegexError('unmatched [');
      out += `[${body}]`;
      i = j;
      lastWasGroup = undefined;
      continue;
    }
    if (c === '\\') {
      const d = pattern[i + 1];
      if (d === undefined) throw new RegexError('trailing backslash');
      if (/[1-9]/.test(d)) throw new RegexError('back-references are not supported');
      out += /[wWsSbB]/.test(d) ? '\\' + d : /[A-Za-z0-9]/.test(d) ? d : '\\' + d;
      i++;
      lastWasGroup = undefined;
      continue;
    }
    if (c === '(') {
      stack.push({ risky: false });
      out += '(';
      lastWasGroup = undefined;
      continue;
    }
    if (c === ')') {
      const g = stack.pop();
      if (!g) throw new RegexError('unmatched )');
      out += ')';
      lastWasGroup = g;
      if (isQuantifierAt(i + 1) && g.risky) throw new RegexError('nested repetition is too costly');
      continue;
    }
    if (c === '|') {
      markRisky();
      out += '|';
      lastWasGroup = undefined;
      continue;
    }
    if (isQuantifierAt(i)) {
      markRisky();
      if (c === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i))!;
        if (Number(m[1]) > 255 || (m[3] && Number(m[3]) > 255)) throw new RegexError('repetition count too large');
        out += m[0];
        i += m[0].length - 1;
      } else out += c;
      // "a**" or "(x)*+" stacks quantifiers
      if (isQuantifierAt(i + 1) && lastWasGroup === undefined) throw new RegexError('nested repetition is too costly');
      lastWasGroup = undefined;
      continue;
    }
    out += c === '/' ? '\\/' : c;
    lastWasGroup = undefined;
  }
  if (stack.length > 0) throw new RegexError('unmatched (');
  return out;
}

const cache = new Map<string, RegExp>();

/** The compiled regex for a key; case-insensitive under i;ascii-casemap. */
export function compileRegex(key: string, caseInsensitive: boolean): RegExp {
  const id = `${caseInsensitive ? 'i' : 'o'}${key}`;
  let re = cache.get(id);
  if (!re) {
    const source = posixToJs(key);
    try {
      re = new RegExp(source, caseInsensitive ? 'is' : 's');
    } catch (e) {
      throw new RegexError((e as Error).message);
    }
    if (cache.size > 256) cache.clear();
    cache.set(id, re);
  }
  return re;
}
