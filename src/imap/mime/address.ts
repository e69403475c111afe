/**
 * Address lists (From, To, ...) as Dovecot 2.3's message-address.c parses them for ENVELOPE,
 * with MESSAGE_ADDRESS_PARSE_FLAG_FILL_MISSING and non-strict dots: the display name is the
 * phrase with its words joined by single spaces, still RFC 2047-encoded (IMAP sends it raw);
 * a missing mailbox or domain becomes MISSING_MAILBOX / MISSING_DOMAIN; a broken angle address
 * gets the domain SYNTAX_ERROR; groups become a start marker (mailbox = group name, no host)
 * and an end marker (all NIL).
 */
import { NUL_REPLACEMENT, Rfc822Parser } from './rfc822.js';

export interface Address {
  name: string | null;
  route: string | null;
  mailbox: string | null;
  domain: string | null;
}

function emptyAddress(): Address & { invalid: boolean } {
  return { name: null, route: null, mailbox: null, domain: null, invalid: false };
}

class AddressParser {
  readonly p: Rfc822Parser;
  readonly list: Address[] = [];
  addr = emptyAddress();
  str = { s: '' };

  constructor(data: string) {
    this.p = new Rfc822Parser(data, true);
    this.p.nulReplacement = NUL_REPLACEMENT;
  }

  private addAddress(): void {
    const { name, route, mailbox, domain } = this.addr;
    this.list.push({ name, route, mailbox, domain });
    this.addr = emptyAddress();
  }

  private parseNonstrictDotAtom(out: { s: string }): number {
    const p = this.p;
    let ret = -1;
    do {
      while (p.cur() === 0x2e) {
        out.s += '.';
        p.pos++;
        if (p.pos === p.end) return 0; // @domain is missing, but local-part parsing was successful
        ret = 1;
      }
      if (p.cur() === 0x40) break;
      ret = p.parseAtom(out);
    } while (ret > 0 && p.cur() === 0x2e);
    return ret;
  }

  private parseLocalPart(): number {
    this.str.s = '';
    const ret = this.p.cur() === 0x22 ? this.p.parseQuotedString(this.str) : this.parseNonstrictDotAtom(this.str);
    if (ret < 0) return -1;
    this.addr.mailbox = this.str.s;
    return ret;
  }

  private parseDomain(): number {
    this.str.s = '';
    const ret = this.p.parseDomain(this.str);
    if (ret < 0) return -1;
    this.addr.domain = this.str.s;
    return ret;
  }

  private parseDomainList(): number {
    const p = this.p;
    this.str.s = '';
    for (;;) {
      if (p.pos >= p.end) return 0;
      if (p.cur() !== 0x40) break;
      if (this.str.s.length > 0) this.str.s += ',';
      this.str.s += '@';
      const ret = p.parseDomain(this.str);
      if (ret <= 0) return ret;
      while (p.skipLwsp() > 0 && p.cur() === 0x2c) p.pos++;
    }
    this.addr.route = this.str.s;
    return 1;
  }

  private parseAngleAddr(): number {
    const p = this.p;
    p.pos++; // '<'
    if (p.skipLwsp() <= 0) return -1;
    if (p.cur() === 0x40) {
      if (this.parseDomainList() > 0 && p.cur() === 0x3a) {
        p.pos++;
      } else {
        this.addr.route = 'INVALID_ROUTE';
        if (p.pos >= p.end) return -1;
        // try to continue anyway
      }
      if (p.skipLwsp() <= 0) return -1;
    }
    if (p.cur() === 0x3e) {
      // <> address isn't valid
    } else {
      if (this.parseLocalPart() <= 0) return -1;
      if (p.cur() === 0x40) {
        if (this.parseDomain() <= 0) return -1;
      }
    }
    if (p.cur() !== 0x3e) return -1;
    p.pos++;
    return p.skipLwsp();
  }

  private parseNameAddr(): number {
    const p = this.p;
    this.str.s = '';
    if (p.parsePhrase(this.str) <= 0 || p.cur() !== 0x3c) return -1;
    this.addr.name = this.str.s === '' ? null : this.str.s;
    if (this.parseAngleAddr() < 0) {
      this.addr.domain = 'SYNTAX_ERROR';
      this.addr.invalid = true;
    }
    return p.pos < p.end ? 1 : 0;
  }

  private parseAddrSpec(): number {
    const p = this.p;
    let ret2 = -2;
    p.lastComment = '';
    const quotedString = p.cur() === 0x22;
    let ret = this.parseLocalPart();
    if (ret <= 0) this.addr.invalid = true;
    if (ret !== 0 && p.pos < p.end && p.cur() === 0x40) {
      ret2 = this.parseDomain();
      if (ret2 <= 0) ret = ret2;
    }
    if (p.lastComment!.length > 0) {
      this.addr.name = p.lastComment!;
    } else if (ret2 === -2) {
      // A lone "user" is a mailbox, but "user more words" is a display name.
      this.str.s += ' ';
      const origLen = this.str.s.length;
      p.parsePhrase(this.str);
      if (this.str.s.length !== origLen) {
        this.addr.mailbox = null;
        this.addr.name = this.str.s;
      } else if (!quotedString) {
        this.addr.domain = '';
      }
      this.addr.invalid = true;
      ret = -1;
    }
    return ret;
  }

  private addFixedAddress(): void {
    if (this.addr.mailbox === null) {
      this.addr.mailbox = 'MISSING_MAILBOX';
      this.addr.invalid = true;
    }
    if (this.addr.domain === null || this.addr.domain === '') {
      this.addr.domain = 'MISSING_DOMAIN';
      this.addr.invalid = true;
    }
    this.addAddress();
  }

  private parseMailbox(): number {
    const p = this.p;
    const start = p.pos;
    let ret = this.parseNameAddr();
    if (ret < 0) {
      p.pos = start;
      ret = this.parseAddrSpec();
      const a = this.addr;
      if (a.invalid && a.name === null && a.mailbox !== null && a.domain === null) {
        a.name = a.mailbox;
        a.mailbox = null;
      }
    }
    if (ret < 0) this.addr.invalid = true;
    this.addFixedAddress();
    return ret;
  }

  private parseGroup(): number {
    const p = this.p;
    this.str.s = '';
    if (p.parsePhrase(this.str) <= 0 || p.cur() !== 0x3a) return -1;
    // from now on don't return -1 even if there are problems, so the caller knows it's a group
    p.pos++;
    let ret = p.skipLwsp();
    if (ret <= 0) this.addr.invalid = true;
    this.addr.mailbox = this.str.s;
    this.addAddress();
    if (ret > 0 && p.cur() !== 0x3b) {
      for (;;) {
        this.parseMailbox(); // a broken mailbox: try to continue anyway
        if (p.pos >= p.end || p.cur() !== 0x2c) break;
        p.pos++;
        if (p.skipLwsp() <= 0) {
          ret = -1;
          break;
        }
      }
    }
    if (ret >= 0) {
      if (p.pos >= p.end || p.cur() !== 0x3b) {
        ret = -1;
      } else {
        p.pos++;
        ret = p.skipLwsp();
      }
    }
    if (ret < 0) this.addr.invalid = true;
    this.addAddress();
    return ret === 0 ? 0 : 1;
  }

  private parseAddress(): number {
    const start = this.p.pos;
    let ret = this.parseGroup();
    if (ret < 0) {
      this.p.pos = start;
      ret = this.parseMailbox();
    }
    return ret;
  }

  parseAddressList(): void {
    const p = this.p;
    if (p.skipLwsp() <= 0) return; // no addresses
    for (;;) {
      if (this.parseAddress() === 0) break;
      if (p.pos >= p.end || p.cur() !== 0x2c) break;
      p.pos++;
      const ret = p.skipLwsp();
      if (ret <= 0) {
        if (ret < 0) this.addFixedAddress(); // ends with some garbage
        break;
      }
    }
  }
}

/** message_address_parse(..., FILL_MISSING): the addresses of one header value. */
export function parseAddresses(value: string): Address[] {
  const parser = new AddressParser(value);
  parser.parseAddressList();
  return parser.list;
}

// RFC 5322 section 3.2.3 atext (8-bit too) and dots: a name of only these is not quoted.
const PLAIN_PHRASE = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.\u0080-\uffff]*$/;

/** A display name as Dovecot writes it: quoted when it has more than atext (a space, say). */
function phrase(text: string): string {
  // Encoded words cannot stand in a quoted string (RFC 2047 section 5): they stay as they are.
  if (PLAIN_PHRASE.test(text) || text.includes('=?')) return text;
  return `"${text.replace(/["\\]/g, '\\$&')}"`;
}

/**
 * An address list written out again from what parseAddresses found, as Dovecot's
 * message_address_write does for SEARCH FROM/TO/CC/BCC: `mailbox@domain`, or
 * `name <mailbox@domain>`, groups as `name: ...;`. Comments and folding are gone (RFC 5322
 * section 3.4.1: CFWS is not part of the address), a comment after a bare address is its name.
 */
export function writeAddresses(list: readonly Address[]): string {
  let out = '';
  let first = true;
  let inGroup = false;
  for (const a of list) {
    if (!first) out += ', ';
    first = false;
    if (a.domain === null) {
      if (!inGroup) {
        out += `${a.mailbox ? phrase(a.mailbox) : '""'}: `;
        first = true;
      } else {
        out = `${out.endsWith(', ') ? out.slice(0, -2) : out};`;
      }
      inGroup = !inGroup;
      continue;
    }
    const spec = a.mailbox ? `${a.mailbox}@${a.domain}` : '';
    if (!a.name && !a.route) out += spec;
    else out += `${a.name ? phrase(a.name) : ''} <${a.route ? `${a.route}:` : ''}${spec}>`;
  }
  return out;
}
