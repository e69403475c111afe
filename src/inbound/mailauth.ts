/**
 * mailauth's authenticate() without BIMI: DKIM, SPF, ARC and DMARC by its verifiers, in its
 * order, and the ARC seal. The package's main entry loads its BIMI module, which needs a newer
 * Node than 20 (undici); the verifiers themselves do not, so they are used one by one here.
 */
// First: it replaces mailauth's key cache before the verifiers below take it.
import './mailauth-keys.js';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type { ARCResult, ARCSealOptions, DKIMVerifyResult, DMARCResult, DNSResolver, SPFResult } from 'mailauth';
import { arc, createSeal } from 'mailauth/lib/arc/index.js';
import { evaluateDmarc } from 'mailauth/lib/dmarc/index.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { spf } from 'mailauth/lib/spf/index.js';

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

/** Folded lines back into one (RFC 5322 section 2.2.3). */
const unfold = (text: string) => text.replace(/\r?\n[ \t]+/g, ' ').trim();

export async function authenticateMessage(input: Readable | Buffer, opts: AuthenticateInput): Promise<AuthenticateOutput> {
  const dkimResult = await dkimVerify(input, {
    resolver: opts.resolver,
    sender: opts.sender,
    ...(opts.seal ? { seal: opts.seal } : {}),
  } as Parameters<typeof dkimVerify>[1]);
  // As mailauth: no HELO name means the address; an address is given in brackets.
  const heloName = opts.helo || opts.ip;
  const helo = isIP(heloName) ? `[${heloName}]` : heloName;
  const spfResult = (await spf({ ip: opts.ip, helo, sender: opts.sender, mta: opts.authservId, resolver: opts.resolver } as Parameters<
    typeof spf
  >[0])) as SPFResult | false;
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
