/**
 * The base-64 encodings of crypt(3) strings. Two bit orders exist:
 *  - LSB first (PHK's MD5-crypt and Drepper's SHA-crypt, "b64_from_24bit"): groups of up to three
 *    digest bytes are packed into one integer, and its low 6 bits are written first. The digest
 *    bytes are also permuted into groups (tables below, from the two algorithm descriptions).
 *  - MSB first (traditional DES crypt, bcrypt): plain base64 bit order with another alphabet.
 * Decoders are strict: a character outside the alphabet, a wrong length or non-zero padding bits
 * make the string malformed (null), because no crypt() implementation ever writes such a string.
 */

/** The crypt(3) alphabet (DES, MD5-crypt, SHA-crypt). */
export const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** bcrypt's alphabet (OpenBSD bcrypt.c): same symbols, another order. */
export const BCRYPT64 = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const STD64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

const INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < ITOA64.length; i++) INDEX[ITOA64.charCodeAt(i)] = i;

/** True when every character of s is in the crypt(3) alphabet. */
export function isCrypt64(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || INDEX[c]! < 0) return false;
  }
  return true;
}

/**
 * A group: the digest byte indices packed high..low into one integer; 3 bytes give 4 characters,
 * 2 bytes give 3, 1 byte gives 2.
 */
export type Group = readonly number[];

/** MD5-crypt (FreeBSD crypt-md5.c): to64((f[0]<<16)|(f[6]<<8)|f[12], 4) ... to64(f[11], 2). */
export const MD5_CRYPT_GROUPS: readonly Group[] = [[0, 6, 12], [1, 7, 13], [2, 8, 14], [3, 9, 15], [4, 10, 5], [11]];

/**
 * Drepper's SHA-crypt specification (akkadia.org/drepper/SHA-crypt.txt), step 22: SHA-256 writes
 * b64_from_24bit(f[0], f[10], f[20]), (f[21], f[1], f[11]), (f[12], f[22], f[2]), ... then
 * (0, f[31], f[30]). Each triple is a rotation of (k, k+10, k+20).
 */
export const SHA256_CRYPT_GROUPS: readonly Group[] = [
  ...Array.from({ length: 10 }, (_, k) => rotate([k, k + 10, k + 20], (3 - (k % 3)) % 3)),
  [31, 30],
];

/** SHA-512: (f[0], f[21], f[42]), (f[22], f[43], f[1]), (f[44], f[2], f[23]), ... then (0, 0, f[63]). */
export const SHA512_CRYPT_GROUPS: readonly Group[] = [...Array.from({ length: 21 }, (_, k) => rotate([k, k + 21, k + 42], k % 3)), [63]];

function rotate(a: number[], left: number): number[] {
  return [...a.slice(left), ...a.slice(0, left)];
}

/** Length in characters of a digest encoded with these groups. */
function encodedLength(groups: readonly Group[]): number {
  return groups.reduce((n, g) => n + g.length + 1, 0);
}

/** Encodes a digest LSB first, group by group. */
export function encodeGroups(digest: Uint8Array, groups: readonly Group[]): string {
  let out = '';
  for (const g of groups) {
    let w = 0;
    for (const idx of g) w = w * 256 + digest[idx]!;
    for (let n = g.length + 1; n > 0; n--) {
      out += ITOA64[w & 0x3f];
      w = Math.floor(w / 64);
    }
  }
  return out;
}

/**
 * Decodes an LSB-first string back into the digest in its natural byte order, or null when the
 * string could not have been written by encodeGroups (bad length, alphabet or padding bits).
 */
export function decodeGroups(s: string, groups: readonly Group[], size: number): Buffer | null {
  if (s.length !== encodedLength(groups)) return null;
  const out = Buffer.alloc(size);
  let pos = 0;
  for (const g of groups) {
    let w = 0;
    let scale = 1;
    for (let n = g.length + 1; n > 0; n--) {
      const c = s.charCodeAt(pos++);
      const v = c < 128 ? INDEX[c]! : -1;
      if (v < 0) return null;
      w += v * scale;
      scale *= 64;
    }
    if (w >= 2 ** (8 * g.length)) return null; // padding bits set
    for (let i = g.length - 1; i >= 0; i--) {
      out[g[i]!] = w & 0xff;
      w = Math.floor(w / 256);
    }
  }
  return out;
}

/**
 * Decodes an MSB-first string (DES crypt: ITOA64, bcrypt: BCRYPT64) of exactly `size` bytes, or
 * null. Implemented by mapping the alphabet onto standard base64 and checking that re-encoding
 * gives the same string back (which rejects non-zero padding bits).
 */
export function decodeMsbFirst(s: string, alphabet: string, size: number): Buffer | null {
  if (s.length !== Math.ceil((size * 8) / 6)) return null;
  let std = '';
  for (let i = 0; i < s.length; i++) {
    const v = alphabet.indexOf(s[i]!);
    if (v < 0) return null;
    std += STD64[v];
  }
  const buf = Buffer.from(std, 'base64');
  if (buf.length !== size || buf.toString('base64').replace(/=+$/, '') !== std) return null;
  return buf;
}

/** Encodes bytes MSB first in the given alphabet, without padding. */
export function encodeMsbFirst(bytes: Uint8Array, alphabet: string): string {
  const std = Buffer.from(bytes).toString('base64').replace(/=+$/, '');
  let out = '';
  for (let i = 0; i < std.length; i++) out += alphabet[STD64.indexOf(std[i]!)];
  return out;
}
