/**
 * mailauth's authenticate() without BIMI: DKIM, SPF, ARC and DMARC by its verifiers, in its
 * order, and the ARC seal. The package's main entry loads its BIMI module, which needs a newer
 * Node than 20 (undici); the verifiers themselves do not, so they are used one by one here.
 */
// First: it replaces mailauth's key cache before the verifiers below take it.
import './mailauth-keys.js';
import './mailauth-parser.js';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type { ARCResult, ARCSealOptions, DKIMVerifyResult, DMARCResult, DNSResolver, SPFResult } from 'mailauth';
import { arc, createSeal } from 'mailauth/lib/arc/index.js';
import { evaluateDmarc } from 'mailauth/lib/dmarc/index.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { spf } from 'mailauth/lib/spf/index.js';
import { LookupCache } from '../directory/cache.js';

export interface AuthenticateInput {
  ip: string;
  helo: string;
  sender: string;
  /** The authserv-id (RFC 8601 section 2.5). */
  authservId: string;
  resolver: DNSResolver;
  /** Seal the message (RFC 8617 section 5.1) when its chain is none or pass. */
  seal?: ARCSealOptions;
}

export interface AuthenticateOutput {
  dkim: DKIMVerifyResult;
  spf: SPFResult | false;
  arc: ARCResult | false;
  dmarc: DMARCResult | false;
  /** The Authentication-Results value: authserv-id and the results, each unfolded. */
  authResults: string;
  /** ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results as header lines (when sealed). */
  arcHeaders: string[];
  sealErrors?: unknown[];
}

/**
 * SPF results of the last minute, per resolver, by client address, HELO name, sender and
 * authserv-id: a sending server mostly delivers one sender's messages in a row, and the result
 * is a function of those and of DNS, whose answers our resolver caches longer than this anyway.
 * A temporary error is never kept.
 */
const SPF_TTL_MS = 60_000;
const spfCaches = new WeakMap<DNSResolver, LookupCache>();

class TemporarySpfResult {
  constructor(readonly result: SPFResult | false) {}
}

async function checkSpf(args: {
  ip: string;
  helo: string;
  sender: string;
  mta: string;
  resolver: DNSResolver;
}): Promise<SPFResult | false> {
  let cache = spfCaches.get(args.resolver);
  if (!cache) spfCaches.set(args.resolver, (cache = new LookupCache({ positiveTtlMs: SPF_TTL_MS, negativeTtlMs: 0, maxEntries: 10_000 })));
  const key = [args.ip, args.helo, args.sender, args.mta].join('\u0000');
  try {
    const found = await cache.get(key, async () => {
      const result = (await spf(args as Parameters<typeof spf>[0])) as SPFResult | false;
      if (!result || result.status.result === 'temperror') throw new TemporarySpfResult(result);
      return result;
    });
    return found ?? false;
  } catch (err) {
    if (err instanceof TemporarySpfResult) return err.result;
    throw err;
  }
}

type DkimVerifyOptions = Parameters<typeof dkimVerify>[1] & { resolver: DNSResolver; sender: string; seal?: ARCSealOptions };

interface DkimVerifierInstance {
  writeAsync(chunk: Buffer): Promise<void>;
  finish(): Promise<void>;
  headerFrom: unknown;
  fromFields: unknown;
  envelopeFrom: unknown;
  results: unknown;
  headers: unknown;
  arc: unknown;
  seal: unknown;
}

const { DkimVerifier } = createRequire(import.meta.url)('mailauth/lib/dkim/dkim-verifier.js') as {
  DkimVerifier: new (options: object) => DkimVerifierInstance;
};

/** The size of the pieces mailauth's dkimVerify writes a buffer in. */
const DKIM_CHUNK = 64 * 1024;

/**
 * mailauth's dkimVerify, for a message in memory without the stream between it and the verifier:
 * the verifier's own write and finish steps are called in the order the stream would call them
 * (one event-loop turn per piece less). A stream (a message held in a file) goes through dkimVerify.
 */
export async function verifyDkim(input: Readable | Buffer, options: DkimVerifyOptions): Promise<DKIMVerifyResult> {
  if (!Buffer.isBuffer(input)) return dkimVerify(input, options);
  const verifier = new DkimVerifier(options);
  for (let pos = 0; pos < input.length; pos += DKIM_CHUNK) await verifier.writeAsync(input.subarray(pos, pos + DKIM_CHUNK));
  await verifier.finish();
  const result = {
    headerFrom: verifier.headerFrom,
    fromFields: verifier.fromFields,
    envelopeFrom: verifier.envelopeFrom,
    results: verifier.results,
  } as DKIMVerifyResult;
  // As dkimVerify: the parsed header, the ARC chain and the seal data ride along, not enumerable.
  for (const name of ['headers', 'arc', 'seal'] as const) {
    if (verifier[name]) Object.defineProperty(result, name, { enumerable: false, value: verifier[name] });
  }
  return result;
}

/** Folded lines back into one (RFC 5322 section 2.2.3). */
const unfold = (text: string) => text.replace(/\r?\n[ \t]+/g, ' ').trim();

export async function authenticateMessage(input: Readable | Buffer, opts: AuthenticateInput): Promise<AuthenticateOutput> {
  const dkimResult = await verifyDkim(input, {
    resolver: opts.resolver,
    sender: opts.sender,
    ...(opts.seal ? { seal: opts.seal } : {}),
  });
  // As mailauth: no HELO name means the address; an address is given in brackets.
  const heloName = opts.helo || opts.ip;
  const helo = isIP(heloName) ? `[${heloName}]` : heloName;
  const spfResult = await checkSpf({ ip: opts.ip, helo, sender: opts.sender, mta: opts.authservId, resolver: opts.resolver });
  const dkimData = dkimResult as DKIMVerifyResult & { arc?: unknown; seal?: ARCSealOptions; headers?: unknown };
  const arcResult = (await arc(
    dkimData.arc as Parameters<typeof arc>[0],
    { resolver: opts.resolver, ip: opts.ip } as Parameters<typeof arc>[1],
  )) as ARCResult | false;

  const parts: string[] = [];
  for (const row of dkimResult.results ?? []) parts.push(unfold((row as { info: string }).info));
  if (spfResult) parts.push(unfold(spfResult.info));
  if (arcResult && arcResult.info) parts.push(unfold(arcResult.info));

  let dmarcResult: DMARCResult | false = false;
  if (dkimResult.headerFrom) {
    const evaluated = await evaluateDmarc({
      headerFrom: dkimResult.headerFrom,
      fromFields: dkimResult.fromFields,
      spfDomains: spfResult && spfResult.status.result === 'pass' && spfResult.domain ? [spfResult.domain] : [],
      dkimDomains: (dkimResult.results ?? [])
        .filter((r) => r.status.result === 'pass')
        .map((r) => ({
          id: r.id,
          domain: r.signingDomain,
          aligned: (r.status as { aligned?: unknown }).aligned,
          underSized: (r.status as { underSized?: unknown }).underSized,
        })),
      arcResult,
      resolver: opts.resolver,
    } as unknown as Parameters<typeof evaluateDmarc>[0]);
    dmarcResult = evaluated.response;
    if (dmarcResult && dmarcResult.info) parts.push(unfold(dmarcResult.info));
  }
  const authResults = `${opts.authservId}; ${parts.length ? parts.join('; ') : 'none'}`;

  const out: AuthenticateOutput = { dkim: dkimResult, spf: spfResult, arc: arcResult, dmarc: dmarcResult, authResults, arcHeaders: [] };
  // Seal only what has no chain or a valid one (RFC 8617 section 5.1.2).
  if (dkimData.seal && arcResult && ['none', 'pass'].includes(arcResult.status.result)) {
    const sealed = await createSeal(false, {
      headers: dkimData.headers,
      arc: dkimData.arc,
      seal: { cv: arcResult.status.result, authResults: authResults, signTime: new Date(), ...dkimData.seal },
    } as unknown as Parameters<typeof createSeal>[1]);
    if (sealed.errors?.length) out.sealErrors = sealed.errors;
    out.arcHeaders = sealed.headers ?? [];
  }
  return out;
}
