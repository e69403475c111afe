/**
 * The line format of Dovecot's authentication protocol: one command per LF-terminated line,
 * fields separated by TAB, parameters as `key=value` or a bare flag, and values tab-escaped
 * (Dovecot's str_tabescape: 0x01 -> 0x01 '1', TAB -> 0x01 't', CR -> 0x01 'r', LF -> 0x01 'n').
 */

const ESCAPES: Record<string, string> = { '1': '\u0001', t: '\t', r: '\r', n: '\n' };

/** Escapes a value so that it stays one field of one line. */
export function tabEscape(value: string): string {
  return value.replace(/[\u0001\t\r\n]/g, (c) => `\u0001${c === '\u0001' ? '1' : c === '\t' ? 't' : c === '\r' ? 'r' : 'n'}`);
}

/** Reverses tabEscape; an unknown escape keeps the character after 0x01. */
export function tabUnescape(value: string): string {
  if (!value.includes('\u0001')) return value;
  return value.replace(/\u0001(.?)/gs, (_m, c: string) => ESCAPES[c] ?? c);
}

/** The parameters after a request's fixed fields: flags (`secured`) and `key=value` pairs. */
export interface Params {
  flags: Set<string>;
  values: Map<string, string>;
}

export function parseParams(fields: readonly string[]): Params {
  const flags = new Set<string>();
  const values = new Map<string, string>();
  for (const field of fields) {
    if (field === '') continue; // a trailing TAB, as some clients send
    const eq = field.indexOf('=');
    if (eq === -1) flags.add(field);
    // The first occurrence counts: a later duplicate cannot override what was checked.
    else if (!values.has(field.slice(0, eq))) values.set(field.slice(0, eq), tabUnescape(field.slice(eq + 1)));
  }
  return { flags, values };
}

/** One reply line: fields joined by TAB, the free-text ones escaped by the caller. */
export function line(...fields: string[]): string {
  return `${fields.join('\t')}\n`;
}

/** A request id: a decimal number below 2^32, as Dovecot's (unsigned int) ids. */
export function isRequestId(text: string): boolean {
  return /^\d{1,10}$/.test(text) && Number(text) <= 0xffffffff;
}
