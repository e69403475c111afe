/**
 * DKIM signing of outbound mail (RFC 6376) and the keys it uses: one PEM private key per domain
 * at DIR/DOMAIN/SELECTOR.pem, created by `maild dkim generate` and picked up by a running daemon
 * without a restart.
 *
 * Signatures are made by mailauth's signer and checked in the tests with its verifier. mailauth
 * signs each listed field that is present and cannot over-sign (list From once more than it
 * occurs, RFC 6376 section 8.15); a receiver that enforces RFC 5322's single From still refuses
 * a message with a From added in front.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, randomBytes, type KeyObject } from 'node:crypto';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { domainToASCII } from 'node:url';
import { promisify } from 'node:util';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';
import { fsyncDir } from '../store/fsio.js';

/** How long a key (or its absence) is trusted before the file is looked at again. */
const RECHECK_MS = 60_000;
/** A header block larger than this is not signed (the queue hands over at most 256 KiB anyway). */
/** RFC 8301 section 3.2: signers MUST use RSA keys of at least 1024 bits. */
const MIN_RSA_BITS = 1024;

/**
 * The header fields signed, each instance present (RFC 6376 section 5.4). Trace fields
 * (Received, Return-Path) are never signed: relays add to them.
 */
const SIGNED_HEADERS = [
  'From',
  'Sender',
  'Reply-To',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'In-Reply-To',
  'References',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
] as const;

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const DNS_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

/**
 * A domain as it may appear in d= and in a key path: lower case, A-labels, no trailing dot, and
 * only letters, digits, '-', '_' and single dots (so never '/', '..' or a leading '.').
 * Undefined when it is not a usable domain name.
 */
export function normalizeDomain(domain: string): string | undefined {
  const lower = domain.trim().toLowerCase().replace(/\.$/, '');
  if (!lower || lower.length > 253) return undefined;
  const ascii = /^[\x21-\x7e]*$/.test(lower) ? lower : domainToASCII(lower);
  return ascii && ascii.length <= 253 && DNS_NAME.test(ascii) ? ascii : undefined;
}

/** A selector (RFC 6376 section 3.1: sub-domain *("." sub-domain)); undefined when unusable. */
function normalizeSelector(selector: string): string | undefined {
  const lower = selector.trim().toLowerCase();
  return lower.length <= 253 && DNS_NAME.test(lower) ? lower : undefined;
}

export interface DkimKey {
  domain: string;
  selector: string;
  key: KeyObject;
  /** The key as PEM (PKCS#8), as the signer takes it. */
  pem: string;
  /** 'rsa' or 'ed25519' (RFC 8463). */
  type: 'rsa' | 'ed25519';
}

interface CacheEntry {
  key: DkimKey | undefined;
  checkedAt: number;
  /** Identity of the file the key came from, to notice a replaced key. */
  stamp: string | undefined;
}

export interface DkimKeysOptions {
  dir: string;
  selector: string;
  logger: Logger;
  /** Milliseconds clock, for tests. */
  now?: () => number;
}

/** The signing keys under DIR/DOMAIN/SELECTOR.pem, cached, re-read at most once a minute. */
export class DkimKeys {
  readonly dir: string;
  readonly selector: string;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly loading = new Map<string, Promise<DkimKey | undefined>>();

  constructor(opts: DkimKeysOptions) {
    const selector = normalizeSelector(opts.selector);
    if (!selector) throw new MailError('CONFIG_INVALID', `invalid DKIM selector ${JSON.stringify(opts.selector)}`);
    this.dir = opts.dir;
    this.selector = selector;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
  }

  /** Where the key of a domain lives; undefined for a name that is not a domain. */
  keyPath(domain: string): string | undefined {
    const d = normalizeDomain(domain);
    return d && path.join(this.dir, d, `${this.selector}.pem`);
  }

  /** The key of a domain, or undefined when it has none (or it is unreadable: logged). Never throws. */
  async get(domain: string): Promise<DkimKey | undefined> {
    const d = normalizeDomain(domain);
    if (!d) return undefined;
    const cached = this.cache.get(d);
    if (cached && this.now() - cached.checkedAt < RECHECK_MS) return cached.key;
    let pending = this.loading.get(d);
    if (!pending) {
      pending = this.load(d, cached).finally(() => this.loading.delete(d));
      this.loading.set(d, pending);
    }
    return pending;
  }

  private async load(domain: string, cached: CacheEntry | undefined): Promise<DkimKey | undefined> {
    const file = path.join(this.dir, domain, `${this.selector}.pem`);
    const checkedAt = this.now();
    let stamp: string | undefined;
    let mode = 0;
    try {
      const st = await stat(file);
      stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
      mode = st.mode;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') this.logger.error({ err, file }, 'cannot read DKIM key');
      this.cache.set(domain, { key: undefined, checkedAt, stamp: undefined });
      return undefined;
    }
    if (cached && cached.stamp === stamp) {
      cached.checkedAt = checkedAt;
      return cached.key;
    }
    let key: DkimKey | undefined;
    try {
      key = parseKey(await readFile(file), domain, this.selector);
      this.logger.info({ file, type: key.type }, cached?.stamp === undefined ? 'DKIM key loaded' : 'DKIM key changed');
      if (mode & 0o077) this.logger.warn({ file, mode: (mode & 0o777).toString(8) }, 'DKIM key is readable by others: chmod 600 it');
    } catch (err) {
      this.logger.error({ err: (err as Error).message, file }, 'unusable DKIM key: not signing for this domain');
    }
    this.cache.set(domain, { key, checkedAt, stamp });
    return key;
  }

  /**
   * The DKIM-Signature header field for a message from `domain` (folded, each line ending in
   * CRLF), or undefined when the domain has no key or the message cannot be signed (no From).
   */
  async signatureFor(domain: string, message: Readable | Buffer, opts: { now?: Date } = {}): Promise<string | undefined> {
    const key = await this.get(domain);
    if (!key) {
      if (!Buffer.isBuffer(message)) message.destroy();
      return undefined;
    }
    try {
      return await signMessage(message, key, opts);
    } catch (err) {
      if (!(err instanceof Unsignable)) throw err;
      this.logger.warn({ reason: err.message, domain }, 'message not DKIM-signed');
      return undefined;
    }
  }
}

/** A message that cannot be signed (no From field, a huge header block). */
class Unsignable extends Error {}

/** Reads a PEM private key (RSA of at least 1024 bits, or Ed25519); throws when unusable. */
export function parseKey(pem: Buffer | string, domain: string, selector: string): DkimKey {
  const key = createPrivateKey(pem);
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw new Error(`RSA key of ${bits} bits: at least ${MIN_RSA_BITS} needed (RFC 8301)`);
    return { domain, selector, key, type, pem: key.export({ format: 'pem', type: 'pkcs8' }) as string };
  }
  if (type === 'ed25519') return { domain, selector, key, type, pem: key.export({ format: 'pem', type: 'pkcs8' }) as string };
  throw new Error(`unsupported key type ${type}: rsa or ed25519 expected`);
}

/**
 * Signs a message (LF or CRLF line ends) with mailauth's signer: relaxed/relaxed
 * canonicalization, rsa-sha256 or ed25519-sha256 (RFC 8463), the header fields of SIGNED_HEADERS
 * that are present. Returns the DKIM-Signature field, folded, ending in CRLF. Throws Unsignable
 * when the message has no From field (RFC 6376 section 5.4: From MUST be signed) or the signer
 * reports an error.
 */
async function signMessage(message: Readable | Buffer, key: DkimKey, opts: { now?: Date } = {}): Promise<string> {
  const result = await dkimSign(message, {
    canonicalization: 'relaxed/relaxed',
    algorithm: key.type === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256',
    headerList: SIGNED_HEADERS.join(':'),
    signTime: opts.now ?? new Date(),
    // The options go in signatureData: mailauth 7 ignores the top-level form its types describe.
    signatureData: [{ signingDomain: key.domain, selector: key.selector, privateKey: key.pem }],
  } as unknown as Parameters<typeof dkimSign>[1]);
  if (result.errors?.length || !result.signatures) {
    throw new Unsignable(`signer: ${result.errors?.map((e) => String((e as { err?: unknown }).err ?? e)).join('; ') || 'no signature'}`);
  }
  const signature = `${result.signatures.replace(/\r?\n/g, '\r\n').replace(/(\r\n)+$/, '')}\r\n`;
  // RFC 6376 section 5.4: From MUST be signed; a message without one is not signed at all.
  const h = /[;\s]h=([^;]*)/.exec(signature.replace(/\r\n[ \t]+/g, ' '))?.[1] ?? '';
  if (!h.split(':').some((name) => name.trim().toLowerCase() === 'from')) throw new Unsignable('no From header field');
  return signature;
}

export interface DkimRecord {
  /** The DNS name of the TXT record: SELECTOR._domainkey.DOMAIN */
  name: string;
  /** The TXT value: v=DKIM1; k=rsa; p=... */
  record: string;
  /** The record as a BIND zone file line, the value split into strings of at most 255 characters. */
  zone: string;
}

/** The TXT record publishing the public half of a key (RFC 6376 section 3.6.1). */
export function dkimRecord(domain: string, selector: string, key: KeyObject): DkimRecord {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const type = pub.asymmetricKeyType;
  // RSA: the SubjectPublicKeyInfo DER; Ed25519: the bare 32-byte key (RFC 8463 section 4.2).
  const der = pub.export({ type: 'spki', format: 'der' });
  const p = type === 'ed25519' ? der.subarray(der.length - 32).toString('base64') : der.toString('base64');
  const k = type === 'ed25519' ? 'ed25519' : 'rsa';
  const name = `${selector}._domainkey.${domain}`;
  const head = `v=DKIM1; k=${k}; `;
  const strings = [head, ...(`p=${p}`.match(/.{1,255}/g) ?? [])];
  return { name, record: `${head}p=${p}`, zone: `${name}. IN TXT ( ${strings.map((s) => `"${s}"`).join(' ')} )` };
}

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * Creates DIR/DOMAIN/SELECTOR.pem with a new RSA key (mode 0600, directories 0700), written to a
 * temporary file and linked into place, so it never overwrites a key (ALREADY_EXISTS) and a
 * daemon never reads half a key. Returns the path and the TXT record to publish.
 */
export async function generateKey(dir: string, domain: string, selector: string, bits = 2048): Promise<{ path: string } & DkimRecord> {
  const d = normalizeDomain(domain);
  if (!d) throw new MailError('BAD_ADDRESS', `not a domain name: ${JSON.stringify(domain)}`);
  const s = normalizeSelector(selector);
  if (!s) throw new MailError('CONFIG_INVALID', `invalid DKIM selector ${JSON.stringify(selector)}`);
  if (!Number.isInteger(bits) || bits < MIN_RSA_BITS || bits > 8192) throw new MailError('CONFIG_INVALID', `invalid key size ${bits}`);
  const domainDir = path.join(dir, d);
  const file = path.join(domainDir, `${s}.pem`);
  const exists = () => new MailError('ALREADY_EXISTS', `${file} already exists: not overwriting a DKIM key`);
  if (
    await stat(file).then(
      () => true,
      () => false,
    )
  )
    throw exists();

  const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: bits });
  // PKCS#1 "RSA PRIVATE KEY", as opendkim-genkey writes it.
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' });

  await mkdir(domainDir, { recursive: true, mode: 0o700 });
  const tmp = path.join(domainDir, `.${s}.pem.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(pem);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    // link() fails with EEXIST instead of replacing, unlike rename().
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw exists();
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await fsyncDir(domainDir);
  return { path: file, ...dkimRecord(d, s, privateKey) };
}
