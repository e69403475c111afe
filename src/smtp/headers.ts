/**
 * The header block of a submitted message, as far as submission needs it: which fields are
 * present (Date, Message-ID, From) and the From: addresses (RFC 5322 sections 2.2 and 3.6).
 * Pure functions over the bytes the queue hands to beforeCommit.
 */
import addressparser from 'nodemailer/lib/addressparser';

export interface HeaderField {
  /** Lower case. */
  name: string;
  /** Unfolded (RFC 5322 section 2.2.3), without the line end. */
  value: string;
}

/**
 * Splits a header block (up to the first empty line; CRLF or LF line ends) into fields.
 * Continuation lines (starting with space or tab) belong to the field before them; lines that
 * are no field (no colon, or a first line that is a continuation) are skipped, as MTAs do.
 */
export function parseHeaderBlock(block: Buffer | string): HeaderField[] {
  const text = typeof block === 'string' ? block : block.toString('utf8');
  const fields: HeaderField[] = [];
  let current: { name: string; parts: string[] } | undefined;
  const flush = () => {
    if (current) fields.push({ name: current.name, value: current.parts.join('').trim() });
    current = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') break; // end of the header section
    if (line[0] === ' ' || line[0] === '\t') {
      current?.parts.push(line);
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    // RFC 5322 section 3.6.8: field-name is printable ASCII except the colon, no spaces; a
    // space before the colon (obsolete syntax, section 4.5) is tolerated.
    const name = colon > 0 ? line.slice(0, colon).replace(/[ \t]+$/, '') : '';
    if (!name || !/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    current = { name: name.toLowerCase(), parts: [line.slice(colon + 1)] };
  }
  flush();
  return fields;
}

export function hasField(fields: HeaderField[], name: string): boolean {
  const n = name.toLowerCase();
  return fields.some((f) => f.name === n);
}

/** Every address of every From: field (groups flattened); an address-less From: gives none. */
export function fromAddresses(fields: HeaderField[]): string[] {
  const out: string[] = [];
  for (const f of fields) {
    if (f.name !== 'from') continue;
    for (const a of addressparser(f.value, { flatten: true })) if (a.address) out.push(a.address);
  }
  return out;
}
