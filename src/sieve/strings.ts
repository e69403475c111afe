/**
 * String helpers: encoded-character (RFC 5228 2.4.2.4), variable expansion (RFC 5229 section 3),
 * set modifiers (RFC 5229 section 4.1).
 */

/** "${hex:41 42}" and "${unicode:263a}" decoded; malformed sequences stay as written. */
export function decodeEncodedCharacters(s: string): string {
  if (!s.includes('${')) return s;
  return s.replace(/\$\{(hex|unicode):([\s0-9A-Fa-f]*)\}/gi, (whole, kind: string, body: string) => {
    const parts = body.trim().split(/\s+/).filter(Boolean);
    if (parts.length === 0) return '';
    if (kind.toLowerCase() === 'hex') {
      const bytes = parts.map((p) => parseInt(p, 16));
      if (bytes.some((b) => b > 255)) return whole;
      return Buffer.from(bytes).toString('utf8');
    }
    const cps = parts.map((p) => parseInt(p, 16));
    if (cps.some((c) => c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))) return whole;
    return String.fromCodePoint(...cps);
  });
}

export interface VariableScope {
  get(name: string): string | undefined;
  /** ${0}..${9} from the last successful :matches/:regex. */
  match: string[];
}

/** Largest value a variable holds (Pigeonhole's sieve_variables_max_variable_size default 4 KiB). */
export const MAX_VARIABLE_SIZE = 4096;

/** RFC 5229 section 3: "${name}" and "${N}" replaced, anything else left as is. */
/** Longest string variable expansion may produce ("${x}" 250 000 times must not take a gigabyte). */
export const MAX_EXPANDED_SIZE = 1024 * 1024;

export function expandVariables(s: string, scope: VariableScope): string {
  if (!s.includes('${')) return s;
  let grown = 0;
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[0-9]+)\}/g, (_whole, name: string) => {
    const value = /^[0-9]+$/.test(name) ? (scope.match[Number(name)] ?? '') : (scope.get(name.toLowerCase()) ?? '');
    grown += value.length;
    if (grown > MAX_EXPANDED_SIZE) throw new Error('string too long after variable expansion');
    return value;
  });
}

/** RFC 5229 4.1: modifiers applied in order of precedence (:lower/:upper, :lowerfirst/:upperfirst, :quotewildcard, :length). */
export function applyModifiers(value: string, tags: Record<string, unknown>): string {
  let v = value;
  if (tags.lower) v = v.toLowerCase();
  if (tags.upper) v = v.toUpperCase();
  if (tags.lowerfirst) v = v.charAt(0).toLowerCase() + v.slice(1);
  if (tags.upperfirst) v = v.charAt(0).toUpperCase() + v.slice(1);
  if (tags.quotewildcard) v = v.replace(/[*?\\]/g, (c) => '\\' + c);
  if (tags.length) v = String([...v].length);
  return v;
}

/** Cut a string to at most `max` UTF-8 bytes without splitting a character. */
export function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = Buffer.from(s).subarray(0, max).toString('utf8');
  if (out.endsWith('\uFFFD')) out = out.slice(0, -1);
  return out;
}
