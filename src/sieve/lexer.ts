/**
 * Sieve lexer (RFC 5228 section 8.1): identifiers, tags, numbers with K/M/G, quoted and
 * multi-line strings, comments. Errors carry the position where the token started.
 */
import type { SieveError } from './types.js';

export type TokenKind = 'identifier' | 'tag' | 'number' | 'string' | '[' | ']' | '(' | ')' | '{' | '}' | ',' | ';' | 'eof';

export interface Token {
  kind: TokenKind;
  /** identifier/tag name (tag without ':'), or the string's value. */
  text: string;
  value: number;
  line: number;
  column: number;
}

export class SieveSyntaxError extends Error {
  constructor(public readonly error: SieveError) {
    super(`line ${error.line}: ${error.message}`);
  }
}

/** Largest number Pigeonhole accepts (sieve_number_t is 64 bits; we keep exact integers). */
const MAX_NUMBER = Number.MAX_SAFE_INTEGER;

export function tokenize(script: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  let line = 1;
  let lineStart = 0;
  const fail = (message: string, l = line, c = pos - lineStart + 1): never => {
    throw new SieveSyntaxError({ line: l, column: c, message });
  };
  const advanceNewlines = (from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      if (script.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
  };
  while (pos < script.length) {
    const ch = script[pos]!;
    const startLine = line;
    const startCol = pos - lineStart + 1;
    const push = (kind: TokenKind, text = '', value = 0): void => {
      tokens.push({ kind, text, value, line: startLine, column: startCol });
    };
    if (ch === ' ' || ch === '\t' || ch === '\r') {
      pos++;
    } else if (ch === '\n') {
      pos++;
      line++;
      lineStart = pos;
    } else if (ch === '#') {
      while (pos < script.length && script[pos] !== '\n') pos++;
    } else if (ch === '/' && script[pos + 1] === '*') {
      const end = script.indexOf('*/', pos + 2);
      if (end < 0) {
        advanceNewlines(pos, script.length);
        pos = script.length;
        fail(`end of file before end of bracket comment started at line ${startLine}`);
      }
      advanceNewlines(pos, end + 2);
      pos = end + 2;
    } else if ('[](){},;'.includes(ch)) {
      push(ch as TokenKind);
      pos++;
    } else if (ch === '"') {
      let value = '';
      pos++;
      for (;;) {
        if (pos >= script.length) fail(`end of file before end of quoted string started at line ${startLine}`);
        const c = script[pos]!;
        if (c === '"') break;
        if (c === '\\') {
          // RFC 5228 2.4.2: "\" followed by any character is that character.
          pos++;
          if (pos >= script.length) continue;
          const e = script[pos]!;
          if (e === '\n') {
            line++;
            lineStart = pos + 1;
          }
          value += e;
          pos++;
          continue;
        }
        if (c === '\n') {
          line++;
          lineStart = pos + 1;
          value += c;
          pos++;
          continue;
        }
        value += c;
        pos++;
      }
      pos++;
      push('string', value);
    } else if (ch >= '0' && ch <= '9') {
      let end = pos;
      while (end < script.length && script[end]! >= '0' && script[end]! <= '9') end++;
      let value = Number(script.slice(pos, end));
      const q = script[end];
      let mult = 1;
      if (q === 'K' || q === 'k') mult = 1024;
      else if (q === 'M' || q === 'm') mult = 1024 * 1024;
      else if (q === 'G' || q === 'g') mult = 1024 * 1024 * 1024;
      if (mult !== 1) end++;
      value *= mult;
      if (!Number.isSafeInteger(value) || value > MAX_NUMBER)
        fail(`number '${script.slice(pos, end)}' is out of range`, startLine, startCol);
      if (end < script.length && /[A-Za-z_]/.test(script[end]!))
        fail(`unexpected character(s) starting with '${script[end]}' after number`, startLine, startCol);
      pos = end;
      push('number', '', value);
    } else if (/[A-Za-z_]/.test(ch) || (ch === ':' && /[A-Za-z_]/.test(script[pos + 1] ?? ''))) {
      const isTag = ch === ':';
      let end = isTag ? pos + 1 : pos;
      while (end < script.length && /[A-Za-z0-9_]/.test(script[end]!)) end++;
      const name = script.slice(isTag ? pos + 1 : pos, end);
      if (!isTag && name.toLowerCase() === 'text' && script[end] === ':') {
        // RFC 5228 2.4.2 multi-line: "text:" *(SP / HTAB) (hash-comment / CRLF), lines, "." CRLF
        let p = end + 1;
        while (script[p] === ' ' || script[p] === '\t') p++;
        if (script[p] === '#') while (p < script.length && script[p] !== '\n') p++;
        if (script[p] === '\r') p++;
        if (script[p] !== '\n')
          fail('invalid character after text: in multiline string (only whitespace or a comment)', startLine, startCol);
        p++;
        line++;
        lineStart = p;
        const lines: string[] = [];
        for (;;) {
          if (p >= script.length) {
            pos = script.length;
            fail(`end of file before end of multi-line string started at line ${startLine}`);
          }
          let nl = script.indexOf('\n', p);
          if (nl < 0) nl = script.length;
          let text = script.slice(p, nl);
          if (text.endsWith('\r')) text = text.slice(0, -1);
          p = nl + 1;
          if (nl < script.length) {
            line++;
            lineStart = p;
          }
          if (text === '.') break;
          if (nl >= script.length) {
            pos = script.length;
            fail(`end of file before end of multi-line string started at line ${startLine}`);
          }
          // dot-stuffing: a line starting with ".." loses one dot
          lines.push(text.startsWith('..') ? text.slice(1) : text);
        }
        pos = Math.min(p, script.length);
        push('string', lines.map((l) => l + '\r\n').join(''));
        continue;
      }
      pos = end;
      push(isTag ? 'tag' : 'identifier', name);
    } else {
      const code = ch.charCodeAt(0);
      const shown = code < 32 || code > 126 ? `0x${code.toString(16).padStart(2, '0')}` : ch;
      fail(`unexpected character(s) starting with '${shown}'`, startLine, startCol);
    }
  }
  tokens.push({ kind: 'eof', text: '', value: 0, line, column: pos - lineStart + 1 });
  return tokens;
}
