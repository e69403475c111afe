import { systemFlagBit } from '../../store/mail/types.js';
import { ParseError, type Token } from '../parser.js';

/** A keyword is an atom (RFC 3501 flag-keyword); these characters are atom-specials. */
const KEYWORD = /^[^\s(){%*"\\\]\u0000-\u001f\u007f-\uffff]{1,64}$/;

/**
 * Parses a flag list (or bare flags, as STORE allows) into system flag bits and keywords.
 * \Recent cannot be set (RFC 3501 section 2.3.2); other unknown \-flags are refused.
 */
export function parseFlags(tokens: Token[]): { flags: number; keywords: string[] } {
  let flags = 0;
  const keywords: string[] = [];
  for (const t of tokens) {
    if (t.type !== 'atom' || t.section !== undefined) throw new ParseError('flag expected');
    const v = t.value;
    if (v.startsWith('\\')) {
      const bit = systemFlagBit(v);
      if (bit === undefined) {
        if (v.toLowerCase() === '\\recent') continue;
        throw new ParseError(`invalid system flag ${v.slice(0, 30)}`);
      }
      flags |= bit;
    } else {
      if (!KEYWORD.test(v)) throw new ParseError(`invalid keyword ${v.slice(0, 30)}`);
      if (!keywords.some((k) => k.toLowerCase() === v.toLowerCase())) keywords.push(v);
    }
  }
  return { flags, keywords };
}
