/**
 * Parsing of stored passwords: which scheme a value is in and what its parts are. Pure and cheap
 * (no hashing), so it runs on the main thread (identifyScheme, dummy-cost tracking) and again in
 * the worker before the real work.
 *
 * Rules follow Dovecot (doc.dovecot.org "Password schemes"; src/auth/password-scheme.c):
 *  - `{SCHEME}` prefix, case-insensitive, with an optional `.HEX` / `.B64` / `.BASE64` encoding
 *    suffix; without a suffix a scheme's default encoding applies, and for unsalted digests the
 *    encoding is guessed (hex when the length is twice the digest size, else base64).
 *  - `{CRYPT}`, `{DES-CRYPT}`, `{MD5-CRYPT}`, `{BLF-CRYPT}`, `{SHA256-CRYPT}`, `{SHA512-CRYPT}` all
 *    end in libc crypt() (password-scheme-crypt.c), which picks the algorithm from the string
 *    itself, so the string decides; `{MD5}` is MD5-crypt when it starts with `$1$`, else PLAIN-MD5.
 *  - `{ARGON2I}` / `{ARGON2ID}` go to libsodium's crypto_pwhash_str_verify, which also reads the
 *    variant from the string.
 *  - Without a prefix, a value that names its own algorithm ($1$, $5$, $6$, $2y$, $argon2id$ ...)
 *    uses it; anything else uses the default scheme (Dovecot's default_pass_scheme).
 */
import type { PasswordScheme } from '../../config/schema.js';
import {
  BCRYPT64,
  ITOA64,
  SHA256_CRYPT_GROUPS,
  SHA512_CRYPT_GROUPS,
  MD5_CRYPT_GROUPS,
  decodeGroups,
  decodeMsbFirst,
  isCrypt64,
} from './crypt64.js';

/** A normalised upper-case scheme designation, e.g. 'SHA512-CRYPT' or 'SSHA256.HEX'. */
export type StoredScheme = string;

export type DigestAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha512';
const DIGEST_SIZE: Record<DigestAlgorithm, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

/**
 * Limits on the cost parameters read from stored hashes. Stored data is trusted only so far: a
 * typo such as rounds=500000000 must not pin a worker for minutes. Hashes beyond these limits are
 * reported as malformed. Every tool's defaults are far below (doveadm: 5000 rounds, bcrypt cost 5,
 * argon2 64 MiB).
 */
export const COST_LIMITS = {
  shaCryptRounds: 1_000_000,
  bcryptCost: 16,
  argon2MemoryKiB: 1 << 20,
  argon2TimeCost: 64,
  argon2Parallelism: 64,
  pbkdf2Rounds: 5_000_000,
} as const;

/** Longest password accepted, in UTF-8 bytes: SHA-crypt costs O(length²), so this bounds the work. */
export const MAX_PASSWORD_BYTES = 4096;

export type ParsedHash =
  | { kind: 'sha-crypt'; scheme: 'SHA512-CRYPT' | 'SHA256-CRYPT'; setting: string; rounds: number; digest: Buffer }
  | { kind: 'md5-crypt'; scheme: 'MD5-CRYPT'; salt: string; digest: Buffer }
  | { kind: 'des-crypt'; scheme: 'DES-CRYPT'; salt: string; digest: Buffer }
  | { kind: 'bcrypt'; scheme: 'BLF-CRYPT'; setting: string; cost: number; digest: Buffer }
  | {
      kind: 'argon2';
      scheme: 'ARGON2I' | 'ARGON2ID';
      memoryCost: number;
      timeCost: number;
      parallelism: number;
      version: number;
      salt: Buffer;
      digest: Buffer;
    }
  | { kind: 'salted'; scheme: 'SSHA' | 'SSHA256' | 'SSHA512' | 'SMD5'; algorithm: DigestAlgorithm; digest: Buffer; salt: Buffer }
  | {
      kind: 'digest';
      scheme: 'SHA' | 'SHA256' | 'SHA512' | 'PLAIN-MD5' | 'LDAP-MD5';
      algorithm: DigestAlgorithm;
      digest: Buffer;
    }
  | { kind: 'plain'; scheme: 'PLAIN'; value: Buffer }
  | { kind: 'pbkdf2'; scheme: 'PBKDF2'; salt: string; rounds: number; digest: Buffer };

type Encoding = 'none' | 'hex' | 'base64';
type Family = 'crypt' | 'md5' | 'argon2' | 'salted' | 'digest' | 'plain' | 'pbkdf2';

interface SchemeDef {
  /** Canonical name reported for it (aliases map to one name). */
  canonical: string;
  family: Family;
  encoding: Encoding;
  algorithm?: DigestAlgorithm;
}

// Dovecot's builtin_schemes[] table and password-scheme-crypt.c / -sodium.c, limited to what is
// implemented. Aliases: SHA1 = SHA, CLEAR = CLEARTEXT = PLAIN, DES-CRYPT = 13-character CRYPT.
const SCHEMES: Record<string, SchemeDef> = {
  CRYPT: { canonical: 'CRYPT', family: 'crypt', encoding: 'none' },
  'DES-CRYPT': { canonical: 'DES-CRYPT', family: 'crypt', encoding: 'none' },
  'MD5-CRYPT': { canonical: 'MD5-CRYPT', family: 'crypt', encoding: 'none' },
  'BLF-CRYPT': { canonical: 'BLF-CRYPT', family: 'crypt', encoding: 'none' },
  'SHA256-CRYPT': { canonical: 'SHA256-CRYPT', family: 'crypt', encoding: 'none' },
  'SHA512-CRYPT': { canonical: 'SHA512-CRYPT', family: 'crypt', encoding: 'none' },
  MD5: { canonical: 'MD5', family: 'md5', encoding: 'none' },
  ARGON2I: { canonical: 'ARGON2I', family: 'argon2', encoding: 'none' },
  ARGON2ID: { canonical: 'ARGON2ID', family: 'argon2', encoding: 'none' },
  SSHA: { canonical: 'SSHA', family: 'salted', encoding: 'base64', algorithm: 'sha1' },
  SSHA256: { canonical: 'SSHA256', family: 'salted', encoding: 'base64', algorithm: 'sha256' },
  SSHA512: { canonical: 'SSHA512', family: 'salted', encoding: 'base64', algorithm: 'sha512' },
  SMD5: { canonical: 'SMD5', family: 'salted', encoding: 'base64', algorithm: 'md5' },
  SHA: { canonical: 'SHA', family: 'digest', encoding: 'base64', algorithm: 'sha1' },
  SHA1: { canonical: 'SHA', family: 'digest', encoding: 'base64', algorithm: 'sha1' },
  SHA256: { canonical: 'SHA256', family: 'digest', encoding: 'base64', algorithm: 'sha256' },
  SHA512: { canonical: 'SHA512', family: 'digest', encoding: 'base64', algorithm: 'sha512' },
  'PLAIN-MD5': { canonical: 'PLAIN-MD5', family: 'digest', encoding: 'hex', algorithm: 'md5' },
  'LDAP-MD5': { canonical: 'LDAP-MD5', family: 'digest', encoding: 'base64', algorithm: 'md5' },
  PLAIN: { canonical: 'PLAIN', family: 'plain', encoding: 'none' },
  CLEAR: { canonical: 'PLAIN', family: 'plain', encoding: 'none' },
  CLEARTEXT: { canonical: 'PLAIN', family: 'plain', encoding: 'none' },
  PBKDF2: { canonical: 'PBKDF2', family: 'pbkdf2', encoding: 'none' },
};

/** Scheme names accepted in a `{SCHEME}` prefix or as the default scheme (each also with .HEX / .B64). */
export const SUPPORTED_VERIFY_SCHEMES: readonly string[] = Object.freeze(Object.keys(SCHEMES).sort());

/** Schemes new passwords can be hashed in (config passwords.scheme). */
export const NEW_PASSWORD_SCHEMES: readonly PasswordScheme[] = Object.freeze([
  'ARGON2ID',
  'ARGON2I',
  'SHA512-CRYPT',
  'SHA256-CRYPT',
  'BLF-CRYPT',
  'SSHA512',
]);

export type ParseResult =
  { ok: true; hash: ParsedHash; name: StoredScheme; text: string } | { ok: false; name: StoredScheme | null; text: string; reason: string };

/** A scheme designation as written ("ssha256.hex"), split and validated; null when unknown. */
export function lookupScheme(designation: string): { def: SchemeDef; explicit: Encoding | null; suffix: string } | null {
  const dot = designation.indexOf('.');
  const base = (dot < 0 ? designation : designation.slice(0, dot)).toUpperCase();
  const def = Object.hasOwn(SCHEMES, base) ? SCHEMES[base] : undefined;
  if (def === undefined) return null;
  if (dot < 0) return { def, explicit: null, suffix: '' };
  const enc = designation.slice(dot + 1).toUpperCase();
  // Dovecot: an unknown encoding makes the whole scheme unknown.
  if (enc === 'HEX') return { def, explicit: 'hex', suffix: '.HEX' };
  if (enc === 'B64' || enc === 'BASE64') return { def, explicit: 'base64', suffix: '.B64' };
  return null;
}

/** Sanitises a scheme name read from stored data for a log line. */
function shown(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}...` : name);
}

/** Splits off the `{SCHEME}` prefix or recognises a self-identifying value. */
function splitPrefix(stored: string, defaultScheme: string): { designation: string; text: string } {
  if (stored.startsWith('{')) {
    const end = stored.indexOf('}');
    if (end > 0) return { designation: stored.slice(1, end), text: stored.slice(end + 1) };
  }
  if (stored.startsWith('$1$')) {
    // Dovecot's password_get_scheme(): "$1$<salt>$<password>[$<ignored>]" is MD5-CRYPT.
    const salt = stored.indexOf('$', 3);
    const extra = salt < 0 ? -1 : stored.indexOf('$', salt + 1);
    return { designation: 'MD5-CRYPT', text: extra < 0 ? stored : stored.slice(0, extra) };
  }
  if (stored.startsWith('$5$')) return { designation: 'SHA256-CRYPT', text: stored };
  if (stored.startsWith('$6$')) return { designation: 'SHA512-CRYPT', text: stored };
  if (/^\$2[abxy]?\$/.test(stored)) return { designation: 'BLF-CRYPT', text: stored };
  if (stored.startsWith('$argon2id$')) return { designation: 'ARGON2ID', text: stored };
  if (stored.startsWith('$argon2i$')) return { designation: 'ARGON2I', text: stored };
  return { designation: defaultScheme, text: stored };
}

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;
const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeText(text: string, enc: Encoding): Buffer | null {
  if (enc === 'none') return Buffer.from(text, 'utf8');
  if (enc === 'hex') return HEX_RE.test(text) ? Buffer.from(text, 'hex') : null;
  // Node's base64 decoder skips invalid characters silently: validate first.
  if (!B64_RE.test(text) || text.replace(/=+$/, '').length % 4 === 1) return null;
  return Buffer.from(text, 'base64');
}

/**
 * Parses a stored password. Never throws: bad data gives ok:false with a reason fit for a log
 * line (it never contains the stored hash or the password).
 */
export function parseStored(stored: string, defaultScheme = 'CRYPT'): ParseResult {
  if (typeof stored !== 'string' || stored === '') {
    return { ok: false, name: null, text: '', reason: 'no stored password' };
  }
  const { designation, text } = splitPrefix(stored, defaultScheme);
  const found = lookupScheme(designation);
  if (found === null) {
    return { ok: false, name: null, text, reason: `unknown password scheme ${shown(designation)}` };
  }
  const { def, explicit, suffix } = found;
  if (text === '') {
    // Never let an empty value (e.g. "{PLAIN}") match an empty password.
    return { ok: false, name: def.canonical + suffix, text, reason: `${def.canonical}: empty stored password` };
  }
  const fail = (name: string, reason: string): ParseResult => ({ ok: false, name: name + suffix, text, reason });
  const done = (hash: ParsedHash): ParseResult => ({ ok: true, hash, name: hash.scheme + suffix, text });

  // Text-valued schemes: an explicit encoding wraps the text (Dovecot decodes, then verifies).
  let value = text;
  if (explicit !== null && (def.family === 'crypt' || def.family === 'md5' || def.family === 'argon2' || def.family === 'pbkdf2')) {
    const raw = decodeText(text, explicit);
    if (raw === null) return fail(def.canonical, `${def.canonical}${suffix}: invalid ${explicit} encoding`);
    value = raw.toString('latin1');
  }

  switch (def.family) {
    case 'crypt': {
      const r = parseCrypt(value);
      return 'reason' in r ? fail(r.scheme ?? def.canonical, r.reason) : done(r);
    }
    case 'md5': {
      // password-scheme.c md5_verify(): "$1$" is MD5-CRYPT, anything else is PLAIN-MD5.
      if (value.startsWith('$1$')) {
        const r = parseCrypt(value);
        return 'reason' in r ? fail('MD5-CRYPT', r.reason) : done(r);
      }
      // The (already decoded) value is then decoded like a PLAIN-MD5 value: hex or base64.
      return parseBinary(SCHEMES['PLAIN-MD5']!, value, null, suffix, text);
    }
    case 'argon2': {
      const r = parseArgon2(value);
      return 'reason' in r ? fail(r.scheme ?? def.canonical, r.reason) : done(r);
    }
    case 'pbkdf2': {
      const r = parsePbkdf2(value);
      return 'reason' in r ? fail('PBKDF2', r.reason) : done(r);
    }
    default:
      return parseBinary(def, value, explicit, suffix, text);
  }
}

/** Salted and unsalted digests and PLAIN: binary data in hex or base64 (or none for PLAIN). */
function parseBinary(def: SchemeDef, value: string, explicit: Encoding | null, suffix: string, text: string): ParseResult {
  const name = def.canonical + suffix;
  const fail = (reason: string): ParseResult => ({ ok: false, name, text, reason });
  let enc = explicit ?? def.encoding;
  const size = def.algorithm ? DIGEST_SIZE[def.algorithm] : 0;
  if (def.family === 'digest' && explicit === null) {
    // password_decode(): fixed-size digests are hex when twice as long as the digest, else base64
    // (and a failed hex guess falls back to base64).
    enc = value.length === size * 2 && HEX_RE.test(value) ? 'hex' : 'base64';
  }
  const raw = decodeText(value, enc);
  if (raw === null) return fail(`${name}: invalid ${enc} encoding`);
  switch (def.family) {
    case 'plain':
      return { ok: true, hash: { kind: 'plain', scheme: 'PLAIN', value: raw }, name, text };
    case 'digest':
      if (raw.length !== size) return fail(`${name}: digest is ${raw.length} bytes instead of ${size}`);
      return {
        ok: true,
        hash: { kind: 'digest', scheme: def.canonical as 'SHA', algorithm: def.algorithm!, digest: raw },
        name,
        text,
      };
    case 'salted':
      // "<digest><salt>", salt of any length but not empty (ssha_verify: "password is too short").
      if (raw.length <= size) return fail(`${name}: too short for a digest and a salt`);
      return {
        ok: true,
        hash: {
          kind: 'salted',
          scheme: def.canonical as 'SSHA',
          algorithm: def.algorithm!,
          digest: raw.subarray(0, size),
          salt: raw.subarray(size),
        },
        name,
        text,
      };
    default:
      return fail(`${name}: unsupported`);
  }
}

type Outcome<T> = T | { scheme: string | null; reason: string };

const SHA_CRYPT_RE = /^\$([56])\$(?:rounds=([0-9]{1,10})\$)?([^$]*)\$([^$]*)$/;
const MD5_CRYPT_RE = /^\$1\$([^$]*)\$([^$]*)$/;
const BCRYPT_RE = /^\$2([abxy]?)\$([0-9]{2})\$([^$]{22})([^$]*)$/;

/**
 * A crypt(3) string, dispatched on its own identifier like libc crypt(): $6$, $5$, $1$, $2[aby]$,
 * or 13 characters of traditional DES.
 */
function parseCrypt(s: string): Outcome<ParsedHash> {
  if (s === '') return { scheme: null, reason: 'empty crypt string' };
  let m: RegExpExecArray | null;
  if ((m = SHA_CRYPT_RE.exec(s))) {
    // Drepper's SHA-crypt spec: "$5$" / "$6$", optional "rounds=N$" (1000 <= N <= 999999999),
    // salt of at most 16 characters, then 43 / 86 characters of hash.
    const scheme = m[1] === '6' ? 'SHA512-CRYPT' : 'SHA256-CRYPT';
    const [, , roundsText, salt = '', hash = ''] = m;
    const rounds = roundsText === undefined ? 5000 : Number(roundsText);
    if (roundsText !== undefined && (roundsText.startsWith('0') || rounds < 1000 || rounds > 999_999_999)) {
      return { scheme, reason: `${scheme}: rounds=${roundsText} is outside 1000..999999999` };
    }
    if (rounds > COST_LIMITS.shaCryptRounds) {
      return { scheme, reason: `${scheme}: rounds=${rounds} exceeds the limit of ${COST_LIMITS.shaCryptRounds}` };
    }
    if (salt.length > 16 || !isCrypt64(salt)) return { scheme, reason: `${scheme}: malformed salt` };
    const digest = scheme === 'SHA512-CRYPT' ? decodeGroups(hash, SHA512_CRYPT_GROUPS, 64) : decodeGroups(hash, SHA256_CRYPT_GROUPS, 32);
    if (digest === null) return { scheme, reason: `${scheme}: malformed hash part` };
    const setting = `$${m[1]}$${roundsText === undefined ? '' : `rounds=${rounds}$`}${salt}`;
    return { kind: 'sha-crypt', scheme, setting, rounds, digest };
  }
  if ((m = MD5_CRYPT_RE.exec(s))) {
    // FreeBSD crypt-md5.c: "$1$", salt of at most 8 characters, 22 characters of hash.
    const [, salt = '', hash = ''] = m;
    if (salt.length > 8 || !/^[\x21-\x7e]*$/.test(salt)) return { scheme: 'MD5-CRYPT', reason: 'MD5-CRYPT: malformed salt' };
    const digest = decodeGroups(hash, MD5_CRYPT_GROUPS, 16);
    if (digest === null) return { scheme: 'MD5-CRYPT', reason: 'MD5-CRYPT: malformed hash part' };
    return { kind: 'md5-crypt', scheme: 'MD5-CRYPT', salt, digest };
  }
  if ((m = BCRYPT_RE.exec(s))) {
    // OpenBSD bcrypt / Openwall crypt_blowfish: "$2b$NN$" + 22 salt + 31 hash characters.
    const [, minor = '', costText = '', salt = '', hash = ''] = m;
    if (minor === 'x' || minor === '') {
      return {
        scheme: 'BLF-CRYPT',
        reason: `BLF-CRYPT: $2${minor}$ (${minor === 'x' ? "crypt_blowfish's emulation of its pre-2011 sign-extension bug" : 'the original 1997 variant'}) is not supported`,
      };
    }
    const cost = Number(costText);
    if (cost < 4 || cost > 31) return { scheme: 'BLF-CRYPT', reason: `BLF-CRYPT: cost ${costText} is outside 04..31` };
    if (cost > COST_LIMITS.bcryptCost) {
      return { scheme: 'BLF-CRYPT', reason: `BLF-CRYPT: cost ${cost} exceeds the limit of ${COST_LIMITS.bcryptCost}` };
    }
    if (decodeMsbFirst(salt, BCRYPT64, 16) === null) return { scheme: 'BLF-CRYPT', reason: 'BLF-CRYPT: malformed salt' };
    const digest = decodeMsbFirst(hash, BCRYPT64, 23);
    if (digest === null) return { scheme: 'BLF-CRYPT', reason: 'BLF-CRYPT: malformed hash part' };
    return { kind: 'bcrypt', scheme: 'BLF-CRYPT', setting: `$2${minor}$${costText}$${salt}`, cost, digest };
  }
  if (s.length === 13 && isCrypt64(s)) {
    // Traditional DES crypt: 2 salt characters, then 11 characters for the 64-bit block.
    const digest = decodeMsbFirst(s.slice(2), ITOA64, 8);
    if (digest === null) return { scheme: 'DES-CRYPT', reason: 'DES-CRYPT: malformed hash part' };
    return { kind: 'des-crypt', scheme: 'DES-CRYPT', salt: s.slice(0, 2), digest };
  }
  const known = /^\$(1|5|6|2[aby]?)\$/.exec(s)?.[1];
  if (known !== undefined) {
    const scheme = known === '1' ? 'MD5-CRYPT' : known === '5' ? 'SHA256-CRYPT' : known === '6' ? 'SHA512-CRYPT' : 'BLF-CRYPT';
    return { scheme, reason: `${scheme}: malformed crypt string` };
  }
  const method = /^\$([a-z0-9]{1,8})\$/.exec(s)?.[1];
  if (method !== undefined) return { scheme: null, reason: `unsupported crypt method $${method}$` };
  if (s.startsWith('_')) return { scheme: null, reason: 'unsupported crypt method (BSDi extended DES)' };
  if (s.startsWith('$')) return { scheme: null, reason: 'malformed crypt string' };
  return { scheme: null, reason: 'not a crypt string (expected $id$... or 13 characters of DES crypt)' };
}

const ARGON2_RE = /^\$(argon2id|argon2i|argon2d)\$(?:v=([0-9]+)\$)?([a-z]=[0-9]+(?:,[a-z]=[0-9]+)*)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/**
 * PHC string format as written by libsodium and the reference argon2 (RFC 9106 parameters):
 * "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt b64>$<hash b64>", base64 without padding.
 * libsodium insists on the order m,t,p; the argon2 npm package writes m,p,t, which is accepted
 * here too (the values are what matter).
 */
function parseArgon2(s: string): Outcome<ParsedHash> {
  const m = ARGON2_RE.exec(s);
  if (!m) return { scheme: null, reason: 'malformed argon2 hash' };
  const [, id = '', v, paramText = '', saltB64 = '', hashB64 = ''] = m;
  if (id === 'argon2d') return { scheme: null, reason: 'argon2d is not supported (as in Dovecot/libsodium)' };
  const scheme = id === 'argon2id' ? 'ARGON2ID' : 'ARGON2I';
  const params = new Map(paramText.split(',').map((kv) => [kv[0]!, Number(kv.slice(2))] as const));
  const memoryCost = params.get('m');
  const timeCost = params.get('t');
  const parallelism = params.get('p');
  if (params.size !== 3 || memoryCost === undefined || timeCost === undefined || parallelism === undefined) {
    return { scheme, reason: `${scheme}: expected the parameters m, t and p` };
  }
  const version = v === undefined ? 0x10 : Number(v);
  if (version !== 0x10 && version !== 0x13) return { scheme, reason: `${scheme}: unknown version v=${v}` };
  if (parallelism < 1 || timeCost < 1 || memoryCost < 8 * parallelism) return { scheme, reason: `${scheme}: invalid parameters` };
  if (memoryCost > COST_LIMITS.argon2MemoryKiB || timeCost > COST_LIMITS.argon2TimeCost || parallelism > COST_LIMITS.argon2Parallelism) {
    return { scheme, reason: `${scheme}: m=${memoryCost},t=${timeCost},p=${parallelism} exceeds the limits` };
  }
  const salt = Buffer.from(saltB64, 'base64');
  const digest = Buffer.from(hashB64, 'base64');
  // Argon2 (RFC 9106 section 3.1): salt of at least 8 bytes, tag of at least 4.
  if (saltB64.length % 4 === 1 || salt.length < 8) return { scheme, reason: `${scheme}: malformed salt` };
  if (hashB64.length % 4 === 1 || digest.length < 4 || digest.length > 1024) return { scheme, reason: `${scheme}: malformed hash part` };
  return { kind: 'argon2', scheme, memoryCost, timeCost, parallelism, version, salt, digest };
}

/** Dovecot's PBKDF2 (password-scheme-pbkdf2.c): "$1$<salt>$<rounds>$<hex PBKDF2-HMAC-SHA1, 20 bytes>". */
function parsePbkdf2(s: string): Outcome<ParsedHash> {
  const m = /^\$1\$([^$]+)\$([0-9]{1,10})\$([0-9a-fA-F]{40})$/.exec(s);
  if (!m) return { scheme: 'PBKDF2', reason: 'malformed PBKDF2 hash' };
  const [, salt = '', roundsText = '', hex = ''] = m;
  const rounds = Number(roundsText);
  if (rounds < 1 || rounds > COST_LIMITS.pbkdf2Rounds) {
    return { scheme: 'PBKDF2', reason: `PBKDF2: rounds=${rounds} is outside 1..${COST_LIMITS.pbkdf2Rounds}` };
  }
  return { kind: 'pbkdf2', scheme: 'PBKDF2', salt, rounds, digest: Buffer.from(hex, 'hex') };
}

/**
 * Which scheme a stored password is in, and the hash part after any `{SCHEME}` prefix. The scheme
 * is normalised: upper case, aliases resolved (SHA1 -> SHA, CLEARTEXT -> PLAIN), crypt() strings
 * resolved to the algorithm they name ({CRYPT}$6$... -> SHA512-CRYPT), an explicit encoding kept
 * ('SSHA256.HEX'). Null when the scheme is unknown. A known scheme with a malformed hash is still
 * identified: verification then fails with the reason.
 */
export function identifyScheme(stored: string, defaultScheme = 'CRYPT'): { scheme: StoredScheme; hash: string } | null {
  const r = parseStored(stored, defaultScheme);
  if (r.name === null) return null;
  return { scheme: r.name, hash: r.text };
}

/**
 * The cost parameters of a hash: verifyDummy() imitates the most recent real verification by
 * verifying against a dummy hash with the same profile.
 */
export type CostProfile =
  | { scheme: 'SHA512-CRYPT' | 'SHA256-CRYPT'; rounds: number }
  | { scheme: 'BLF-CRYPT'; cost: number }
  | {
      scheme: 'ARGON2I' | 'ARGON2ID';
      memoryCost: number;
      timeCost: number;
      parallelism: number;
      version: number;
      hashLength: number;
    }
  | { scheme: 'PBKDF2'; rounds: number }
  | { scheme: 'MD5-CRYPT' | 'DES-CRYPT' | 'PLAIN' }
  | { scheme: 'SSHA' | 'SSHA256' | 'SSHA512' | 'SMD5' | 'SHA' | 'SHA256' | 'SHA512' | 'PLAIN-MD5' | 'LDAP-MD5' };

export function costProfile(h: ParsedHash): CostProfile {
  switch (h.kind) {
    case 'sha-crypt':
      return { scheme: h.scheme, rounds: h.rounds };
    case 'bcrypt':
      return { scheme: 'BLF-CRYPT', cost: h.cost };
    case 'argon2': {
      const { scheme, memoryCost, timeCost, parallelism, version } = h;
      return { scheme, memoryCost, timeCost, parallelism, version, hashLength: h.digest.length };
    }
    case 'pbkdf2':
      return { scheme: 'PBKDF2', rounds: h.rounds };
    default:
      return { scheme: h.scheme };
  }
}

/** The argon2 package's defaults (argon2.cjs `defaults`), used for new ARGON2I/ARGON2ID hashes. */
const ARGON2_DEFAULTS = { memoryCost: 65536, timeCost: 3, parallelism: 1, version: 0x13, hashLength: 32 } as const;

/** The profile new passwords are hashed with, per scheme. */
export function newPasswordProfile(scheme: PasswordScheme): CostProfile {
  switch (scheme) {
    case 'ARGON2ID':
    case 'ARGON2I':
      return { scheme, ...ARGON2_DEFAULTS };
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT':
      return { scheme, rounds: 5000 };
    case 'BLF-CRYPT':
      return { scheme, cost: 10 };
    case 'SSHA512':
      return { scheme };
  }
}

/**
 * Is a stored hash with this profile weaker than new ones (passwords.rehash)? Yes when its scheme
 * is another than the new-password scheme (whichever: the configured scheme is what the operator
 * wants stored), or the same scheme with lower costs: argon2 with less memory, fewer passes or an
 * older version; SHA-crypt with fewer rounds; bcrypt with a lower cost. Higher costs are kept.
 */
export function isWeakerProfile(stored: CostProfile, target: CostProfile): boolean {
  if (stored.scheme !== target.scheme) return true;
  if ('memoryCost' in stored && 'memoryCost' in target) {
    return stored.version < target.version || stored.memoryCost < target.memoryCost || stored.timeCost < target.timeCost;
  }
  if ('rounds' in stored && 'rounds' in target) return stored.rounds < target.rounds;
  if ('cost' in stored && 'cost' in target) return stored.cost < target.cost;
  return false;
}

export function profileKey(p: CostProfile): string {
  return JSON.stringify(p);
}
