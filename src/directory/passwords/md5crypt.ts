/**
 * MD5-crypt ("$1$", Poul-Henning Kamp's crypt-md5.c from FreeBSD, 1994; also glibc's md5-crypt.c
 * and Dovecot's password_generate_md5_crypt). Written here over node:crypto because the npm
 * packages measured for it fail real fixtures: apache-md5 feeds the password to MD5 as 'ascii'
 * (non-ASCII passwords hash wrongly) and nano-md5 throws "too long key" for long passwords. The
 * password is taken as UTF-8 bytes, as every C implementation takes the bytes the client sent.
 */
import { createHash } from 'node:crypto';
import { MD5_CRYPT_GROUPS, encodeGroups } from './crypt64.js';

const MAGIC = Buffer.from('$1$');
const md5 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};

/**
 * The raw 16-byte MD5-crypt digest of `password` with `salt` (at most 8 characters; callers pass
 * the salt already cut at the first '$', as crypt() does).
 */
export function md5CryptDigest(password: Uint8Array, salt: Uint8Array): Buffer {
  // "Alternate" sum: MD5(pw, salt, pw).
  const alt = md5(password, salt, password);

  // Initial sum: pw, magic, salt, then as many bytes of the alternate sum as the password is long.
  const ctx = createHash('md5');
  ctx.update(password).update(MAGIC).update(salt);
  for (let left = password.length; left > 0; left -= 16) ctx.update(alt.subarray(0, Math.min(16, left)));
  // Then, for each bit of the length from the lowest: a NUL byte when the bit is set, else the
  // first password byte (the original code's famous oddity, kept by every implementation).
  const nul = Buffer.alloc(1);
  const first = password.subarray(0, 1);
  for (let i = password.length; i > 0; i >>>= 1) ctx.update(i & 1 ? nul : first);
  let final = ctx.digest();

  // 1000 rounds to slow down brute force, mixing pw, salt and the previous sum.
  for (let i = 0; i < 1000; i++) {
    const h = createHash('md5');
    h.update(i & 1 ? password : final);
    if (i % 3) h.update(salt);
    if (i % 7) h.update(password);
    h.update(i & 1 ? final : password);
    final = h.digest();
  }
  return final;
}

/** The full "$1$salt$hash" string, as crypt() returns it. */
export function md5Crypt(password: Uint8Array, salt: string): string {
  const saltBytes = Buffer.from(salt, 'latin1');
  return `$1$${salt}$${encodeGroups(md5CryptDigest(password, saltBytes), MD5_CRYPT_GROUPS)}`;
}
