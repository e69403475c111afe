/**
 * A process-wide memo of parsed DKIM/ARC key records for mailauth. Its verifier parses the key
 * record of every signature anew (tag list, base64 check, createPublicKey, PEM export): about a
 * quarter of the cost of verifying a 4 KB message. The parse depends only on the record's text
 * and the question's options, so it is remembered by those; the record itself is still looked up
 * for every message (through our resolver and its cache, so DNS changes are seen as before).
 *
 * The key is remembered as a KeyObject, not the PEM text mailauth returns: crypto.verify takes
 * either, and parses a PEM key on every call (some 300 us for RSA-2048, ten times the
 * verification itself). Its toString() still gives the PEM text, which is what mailauth reports.
 *
 * mailauth builds its per-message key cache with tools.createKeyCache, which its DKIM verifier
 * and ARC module take when they are loaded: this module replaces it first, and is imported before
 * them (src/inbound/mailauth.ts). Failures are never remembered.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';

type Lookup = (
  type: string,
  name: string,
  minBitLength: number | undefined,
  options?: { strict?: boolean; hashAlgo?: string },
) => Promise<unknown>;
type Resolver = (name: string, rrtype: string) => Promise<unknown>;

interface MailauthTools {
  getPublicKey: (type: string, name: string, minBitLength: number | undefined, resolver: Resolver, options?: object) => Promise<unknown>;
  createKeyCache: (resolver: Resolver) => { resolver: Resolver; get: Lookup };
  toALabel: (name: string) => string;
}

const tools = createRequire(import.meta.url)('mailauth/lib/tools.js') as MailauthTools;
const { getPublicKey, toALabel } = tools;

/** Parsed records kept (the least recently used go first). */
const MAX_PARSED = 2000;
const parsed = new Map<string, Promise<unknown>>();

function remembered(key: string, parse: () => Promise<unknown>): Promise<unknown> {
  const hit = parsed.get(key);
  if (hit) {
    parsed.delete(key);
    parsed.set(key, hit);
    return hit;
  }
  const result = parse();
  parsed.set(key, result);
  result.catch(() => parsed.delete(key));
  while (parsed.size > MAX_PARSED) parsed.delete(parsed.keys().next().value!);
  return result;
}

/** The parsed record with its PEM public key as a KeyObject that prints as the PEM text. */
function withKeyObject(parsed: unknown): unknown {
  const pem = (parsed as { publicKey?: unknown }).publicKey;
  if (typeof pem !== 'string' && !Buffer.isBuffer(pem)) return parsed;
  const key: KeyObject = createPublicKey(pem);
  const text = pem.toString();
  Object.defineProperty(key, 'toString', { value: () => text });
  return { ...(parsed as object), publicKey: key };
}

tools.createKeyCache = (resolver: Resolver) => {
  const perMessage = new Map<string, Promise<unknown>>();
  return {
    resolver,
    get(type, name, minBitLength, options = {}) {
      const question = [type, Boolean(options.strict), minBitLength ?? '', options.hashAlgo ?? ''].join(':');
      let lookup = perMessage.get(`${question}:${name}`);
      if (!lookup) {
        lookup = (async () => {
          const answer = await resolver(toALabel(name), 'TXT');
          const record = JSON.stringify(answer);
          // The parse gets the answer we already have; an unusable record throws as it would have.
          return remembered(`${question}:${name}:${record}`, () =>
            getPublicKey(type, name, minBitLength, async () => answer, options).then(withKeyObject),
          ).then((key) => ({ ...(key as object), warnings: [...(((key as { warnings?: unknown[] }).warnings ?? []) as unknown[])] }));
        })();
        lookup.catch(() => false);
        perMessage.set(`${question}:${name}`, lookup);
      }
      return lookup;
    },
  };
};
