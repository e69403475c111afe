/**
 * The CPU-heavy part: computing hashes. Imported only by worker.ts (never on the main thread).
 *
 * Implementations, chosen by checking them against hashes from doveadm, openssl, mkpasswd,
 * python crypt, the argon2 CLI and MariaDB ENCRYPT(), then by speed (bench/passwords.ts):
 *  - SHA512-CRYPT / SHA256-CRYPT: unixcrypt (node:crypto, ~10 ms for 5000 rounds; the pure-JS
 *    sha512crypt-node takes ~65 ms and fails UTF-8 passwords and rounds=).
 *  - BLF-CRYPT: bcryptjs (correct for $2a$/$2b$/$2y$; the native bcrypt package is only ~1.5x
 *    faster and rejects $2y$, the form doveadm writes).
 *  - ARGON2I / ARGON2ID: argon2 (the reference C implementation, prebuilt), used for the raw
 *    tag only: its encoder writes "m=,p=,t=", which Dovecot's libsodium rejects.
 *  - DES-CRYPT: unix-crypt-td-js (a port of V7 crypt.c), fed the UTF-8 bytes.
 *  - MD5-CRYPT: ./md5crypt.ts over node:crypto (no npm package passed the fixtures).
 *  - SSHA*, SMD5, SHA*, PLAIN-MD5, LDAP-MD5, PBKDF2, PLAIN: node:crypto.
 * Every comparison is crypto.timingSafeEqual over digests of equal length.
 */
import { createHash, pbkdf2Sync, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import unixCryptTD from 'unix-crypt-td-js';
import { encrypt as shaCrypt } from 'unixcrypt';
import { BCRYPT64, ITOA64, SHA256_CRYPT_GROUPS, SHA512_CRYPT_GROUPS, decodeGroups, decodeMsbFirst, encodeMsbFirst } from './crypt64.js';
import { md5Crypt, md5CryptDigest } from './md5crypt.js';
import type { CostProfile, DigestAlgorithm, ParsedHash } from './schemes.js';

/** Constant-time equality of two digests; different lengths are simply unequal (lengths are public). */
function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const digestOf = (algorithm: DigestAlgorithm, ...parts: Uint8Array[]): Buffer => {
  const h = createHash(algorithm);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Checks `plain` against a parsed stored hash. Throws only on internal failures. */
export async function verifyHash(h: ParsedHash, plain: string): Promise<boolean> {
  const pw = Buffer.from(plain, 'utf8');
  switch (h.kind) {
    case 'sha-crypt': {
      // unixcrypt computes the whole "$6$salt$hash" string; compare the decoded hash parts.
      const out = shaCrypt(plain, h.setting);
      const hashPart = out.slice(out.lastIndexOf('$') + 1);
      const computed =
        h.scheme === 'SHA512-CRYPT' ? decodeGroups(hashPart, SHA512_CRYPT_GROUPS, 64) : decodeGroups(hashPart, SHA256_CRYPT_GROUPS, 32);
      if (computed === null) throw new Error('unixcrypt returned an unexpected string');
      return digestsEqual(computed, h.digest);
    }
    case 'md5-crypt':
      return digestsEqual(md5CryptDigest(pw, Buffer.from(h.salt, 'latin1')), h.digest);
    case 'des-crypt': {
      // crypt(3) sees C bytes: pass the UTF-8 bytes, not UTF-16 code units.
      const out = unixCryptTD(Array.from(pw), h.salt);
      const computed = decodeMsbFirst(out.slice(2), ITOA64, 8);
      if (computed === null) throw new Error('unix-crypt-td-js returned an unexpected string');
      return digestsEqual(computed, h.digest);
    }
    case 'bcrypt': {
      const out = bcrypt.hashSync(plain, h.setting);
      const computed = decodeMsbFirst(out.slice(-31), BCRYPT64, 23);
      if (computed === null) throw new Error('bcryptjs returned an unexpected string');
      return digestsEqual(computed, h.digest);
    }
    case 'argon2': {
      const { memoryCost, timeCost, parallelism, version, salt } = h;
      const tag = await argon2Raw(pw, h.scheme, { memoryCost, timeCost, parallelism, version, salt, hashLength: h.digest.length });
      return digestsEqual(tag, h.digest);
    }
    case 'salted':
      return digestsEqual(digestOf(h.algorithm, pw, h.salt), h.digest);
    case 'digest':
      return digestsEqual(digestOf(h.algorithm, pw), h.digest);
    case 'plain':
      // Compare SHA-256 digests so neither the time nor an early length check tells the length.
      return digestsEqual(digestOf('sha256', pw), digestOf('sha256', h.value));
    case 'pbkdf2':
      return digestsEqual(pbkdf2Sync(pw, Buffer.from(h.salt, 'latin1'), h.rounds, h.digest.length, 'sha1'), h.digest);
  }
}

interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  version: number;
  hashLength: number;
  salt: Buffer;
}

/** The raw Argon2 tag (the reference C implementation, run on libuv's thread pool by the addon). */
function argon2Raw(pw: Buffer, scheme: 'ARGON2I' | 'ARGON2ID', o: Argon2Params): Promise<Buffer> {
  const { memoryCost, timeCost, parallelism, version, hashLength, salt } = o;
  const type = scheme === 'ARGON2ID' ? argon2.argon2id : argon2.argon2i;
  return argon2.hash(pw, { type, memoryCost, timeCost, parallelism, version, hashLength, salt, raw: true });
}

/** `n` random characters of the crypt(3) alphabet (unbiased). */
function cryptSalt(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ITOA64[randomInt(64)];
  return s;
}

/**
 * Hashes `plain` with a cost profile and returns it the way `doveadm pw -s SCHEME` prints it,
 * `{SCHEME}` prefix included. Used for new passwords and for verifyDummy's dummy hashes.
 */
export async function hashWithProfile(p: CostProfile, plain: string): Promise<string> {
  const pw = Buffer.from(plain, 'utf8');
  switch (p.scheme) {
    case 'ARGON2ID':
    case 'ARGON2I': {
      // Encoded here rather than by argon2.hash(), which writes "m=,p=,t=": libsodium (Dovecot)
      // only accepts the reference order "m=,t=,p=" and rejects those hashes.
      const salt = randomBytes(16);
      const { memoryCost, timeCost, parallelism, version, hashLength } = p;
      const digest = await argon2Raw(pw, p.scheme, { memoryCost, timeCost, parallelism, version, hashLength, salt });
      const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
      const params = `v=${p.version}$m=${p.memoryCost},t=${p.timeCost},p=${p.parallelism}`;
      return `{${p.scheme}}$${p.scheme.toLowerCase()}$${params}$${b64(salt)}$${b64(digest)}`;
    }
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT': {
      // 16-character salt; "rounds=" only when not the default 5000 (Drepper's spec, as glibc).
      const id = p.scheme === 'SHA512-CRYPT' ? '6' : '5';
      const rounds = p.rounds === 5000 ? '' : `rounds=${p.rounds}$`;
      return `{${p.scheme}}${shaCrypt(plain, `$${id}$${rounds}${cryptSalt(16)}`)}`;
    }
    case 'BLF-CRYPT': {
      // "$2y$" like doveadm (crypt_blowfish's name for the correct algorithm; same as $2b$).
      const cost = String(p.cost).padStart(2, '0');
      const out = bcrypt.hashSync(plain, `$2y$${cost}$${encodeMsbFirst(randomBytes(16), BCRYPT64)}`);
      return `{BLF-CRYPT}${out}`;
    }
    case 'MD5-CRYPT':
      return `{MD5-CRYPT}${md5Crypt(pw, cryptSalt(8))}`;
    case 'DES-CRYPT':
      return `{DES-CRYPT}${unixCryptTD(Array.from(pw), cryptSalt(2))}`;
    case 'PBKDF2': {
      const salt = cryptSalt(16);
      return `{PBKDF2}$1$${salt}$${p.rounds}$${pbkdf2Sync(pw, salt, p.rounds, 20, 'sha1').toString('hex')}`;
    }
    case 'SSHA':
    case 'SSHA256':
    case 'SSHA512':
    case 'SMD5': {
      // base64(digest(pw + salt) + salt). Dovecot uses 4 salt bytes; 16 are as valid and stronger.
      const algorithm = SALTED_ALGORITHM[p.scheme];
      const salt = randomBytes(16);
      return `{${p.scheme}}${Buffer.concat([digestOf(algorithm, pw, salt), salt]).toString('base64')}`;
    }
    case 'SHA':
    case 'SHA256':
    case 'SHA512':
    case 'LDAP-MD5':
      return `{${p.scheme}}${digestOf(UNSALTED_ALGORITHM[p.scheme], pw).toString('base64')}`;
    case 'PLAIN-MD5':
      return `{PLAIN-MD5}${digestOf('md5', pw).toString('hex')}`;
    case 'PLAIN':
      return `{PLAIN}${plain}`;
  }
}

const SALTED_ALGORITHM = { SSHA: 'sha1', SSHA256: 'sha256', SSHA512: 'sha512', SMD5: 'md5' } as const;
const UNSALTED_ALGORITHM = { SHA: 'sha1', SHA256: 'sha256', SHA512: 'sha512', 'LDAP-MD5': 'md5' } as const;
