/**
 * Arguments several IMAP commands share: mailbox names, flag lists and the month names of date
 * and date-time (RFC 3501 section 9).
 */
import { systemFlagBit } from '../store/mail/types.js';
import { ParseError, astring, type Token } from './parser.js';
import type { ImapSession } from './session.js';

/** A mailbox name argument: modified UTF-7 is 7-bit, so 8-bit bytes make the name invalid. */
export function mailboxArg(session: ImapSession, t: Token | undefined): string {
  return session.ctx.mail.names.canonical(astring(t, 'mailbox name', false));
}

/** date-month (RFC 3501 section 9), as servers write it. */
export const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

/** The month index (0-11) of a three-letter name in any case, -1 for anything else. */
export function monthIndex(name: string): number {
  const lower = name.toLowerCase();
  return MONTHS.findIndex((m) => m.toLowerCase() === lower);
}

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
