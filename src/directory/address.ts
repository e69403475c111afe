/**
 * Address handling shared by the directory, the store and the SMTP sessions. Pure functions.
 */

export interface SplitAddress {
  local: string;
  /** Lower case, without a trailing dot. */
  domain: string;
}

/** Splits at the last '@' (a quoted local part may contain one). Returns null without a domain. */
export function splitAddress(address: string): SplitAddress | null {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return null;
  let domain = address.slice(at + 1).toLowerCase();
  // RFC 5321 does not allow a trailing dot, but resolvers treat "example.com." as example.com.
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (!domain) return null;
  return { local: address.slice(0, at), domain };
}

/** The key under which the directory stores an address: all lower case (MySQL compares case-insensitively too). */
export function addressKey(address: string): string {
  const split = splitAddress(address);
  if (!split) return address.toLowerCase();
  return `${split.local.toLowerCase()}@${split.domain}`;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** What no path component may be or contain: it could leave the mail root or corrupt a name. */
function isUnsafePathPart(value: string): boolean {
  return (
    value.length === 0 || value.length > 255 || CONTROL.test(value) || value.includes('/') || value.includes('\\') || value.includes('..')
  );
}

/** A local part that must never become a path component. Checked before any lookup or file operation. */
export function isUnsafeLocalPart(local: string): boolean {
  return isUnsafePathPart(local) || local === '.';
}

/** A domain that is no usable path component (a DNS name never starts with a dot either). */
export function isUnsafeDomain(domain: string): boolean {
  return isUnsafePathPart(domain) || domain.startsWith('.');
}

/**
 * Sender-specified routing inside the local part: user%other@, user!other@ (bang path),
 * "user@other"@. Postfix refuses these from untrusted clients (allow_untrusted_routing = no)
 * because a downstream MTA may honour them and relay.
 */
export function hasSenderRouting(local: string): boolean {
  return local.includes('%') || local.includes('!') || local.includes('@') || local.startsWith('"');
}

/** An address-literal domain such as [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 section 4.1.3). */
export function isAddressLiteral(domain: string): boolean {
  return domain.startsWith('[');
}

/** Strips characters that would break a header line or a log line (CR, LF, other controls). */
export function headerSafe(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]/g, '');
}
