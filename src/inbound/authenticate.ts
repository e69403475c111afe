/**
 * SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617) for a message received on
 * the MX, by mailauth's verifiers, and the verdict the domain owner's DMARC policy asks for with
 * the operator's overrides. The results become one Authentication-Results field (RFC 8601) under
 * our authserv-id; a message that is forwarded off the server gets an ARC set sealed by us.
 */
import type { DNSResolver } from 'mailauth';
import { authenticateMessage } from './mailauth.js';
import type { NetworkList } from '../net.js';
import type { Readable } from 'node:stream';
import type { CheckResult, HeaderField, InboundEnvelope } from './types.js';

export interface AuthenticationSettings {
  /** RFC 8601 authserv-id: our host name unless set. */
  authservId: string;
  /** Refuse (p=reject) and send to Junk (p=quarantine) as the author domain's DMARC record asks. */
  enforceDmarc: boolean;
  /** Author domains (and their subdomains) whose DMARC failures are only recorded (mailing lists, forwarders). */
  dmarcExemptDomains: string[];
  /** Client networks whose DMARC failures are only recorded (a forwarder that does not seal). */
  dmarcExemptNetworks: NetworkList;
  /** Sealers whose passing ARC chain overrides a DMARC failure (RFC 8617 section 7.2.1). */
  trustedArcSealers: string[];
  /** A check DNS could not answer: answer 451 (the sender retries) or deliver with temperror recorded. */
  onTemporaryError: 'tempfail' | 'accept';
}

/** The key that seals forwarded mail (our DKIM key for the forwarding domain or the host name's). */
export interface ArcSealKey {
  signingDomain: string;
  selector: string;
  privateKey: string;
}

export interface AuthenticationResult extends CheckResult {
  /** The header fields to add, Authentication-Results (and the ARC set when sealed) first. */
  addHeaders: HeaderField[];
  /** RFC 8617 section 5.2 chain validation, for the trusted-sealer override and the log. */
  arc: string;
}

/** The next-lower policy for the messages outside a pct= sample (RFC 7489 section 6.6.4). */
const LOWER: Record<string, string> = { reject: 'quarantine', quarantine: 'none', none: 'none' };

/**
 * What the verifiers found, as plain data (it crosses from the verification worker to the main
 * thread): each method's result keyword and what the policy needs.
 */
export interface AuthenticationFindings {
  spf: string;
  /** One result per DKIM signature. */
  dkim: string[];
  arc: string;
  /** The signing domain of the newest ARC set, when the chain passes. */
  arcSealer?: string;
  dmarc: string;
  /** The author domain (RFC 5322 From). */
  fromDomain: string;
  /** The DMARC policy to apply (p=, sp= or np=, lowered by t=y) and the record it came from. */
  dmarcPolicy?: string;
  dmarcRecord?: string;
  dmarcTestMode?: boolean;
  /** The Authentication-Results value, authserv-id first. */
  authResults: string;
  /** The ARC set we added, as header lines (when sealing). */
  arcHeaders: string[];
  sealFailed: boolean;
}

/** Runs the verifiers on one message (in the verification worker). `seal` adds an ARC set. */
export async function findAuthentication(
  message: Readable | Buffer,
  env: Pick<InboundEnvelope, 'clientIp' | 'helo' | 'sender'>,
  authservId: string,
  resolver: DNSResolver,
  seal?: ArcSealKey,
): Promise<AuthenticationFindings> {
  const result = await authenticateMessage(message, {
    ip: env.clientIp,
    helo: env.helo,
    sender: env.sender,
    authservId,
    resolver,
    ...(seal ? { seal } : {}),
  });
  const sealer = result.arc && result.arc.status.result === 'pass' && result.arc.signature ? result.arc.signature.signingDomain : undefined;
  return {
    spf: result.spf ? result.spf.status.result : 'none',
    dkim: (result.dkim.results ?? []).map((r) => r.status.result),
    arc: result.arc ? result.arc.status.result : 'none',
    ...(sealer ? { arcSealer: sealer } : {}),
    dmarc: result.dmarc ? result.dmarc.status.result : 'none',
    fromDomain: result.dmarc ? (result.dmarc.status.header?.from ?? '') : '',
    ...(result.dmarc
      ? {
          dmarcPolicy: result.dmarc.policy,
          ...(result.dmarc.rr ? { dmarcRecord: result.dmarc.rr } : {}),
          dmarcTestMode: Boolean(result.dmarc.testMode),
        }
      : {}),
    authResults: result.authResults,
    arcHeaders: result.arcHeaders,
    sealFailed: Boolean(result.sealErrors),
  };
}

/**
 * The verdict on the findings: the Authentication-Results field (and the ARC set) to add, and
 * what the author domain's DMARC policy asks, with the operator's overrides. `random` decides
 * pct= sampling (tests pass a fixed one).
 */
export function decideAuthentication(
  found: AuthenticationFindings,
  clientIp: string,
  settings: AuthenticationSettings,
  random: () => number = Math.random,
): AuthenticationResult {
  const { spf, dkim, arc, dmarc, fromDomain } = found;
  const log: Record<string, unknown> = { spf, dkim: dkim.length ? dkim.join(',') : 'none', dmarc, arc };
  // The ARC set on top when sealed (RFC 8617 section 5.1), then our Authentication-Results.
  const addHeaders: HeaderField[] = [...headerFields(found.arcHeaders.join('\r\n')), ['Authentication-Results', found.authResults]];
  if (found.sealFailed) log.arc_seal = 'failed';
  else if (found.arcHeaders.length) log.arc_seal = 'sealed';

  // DMARC fails when no identifier aligned; if a lookup failed on the way, one might have.
  const temporary = dmarc === 'temperror' || (dmarc === 'fail' && (spf === 'temperror' || dkim.includes('temperror')));
  if (temporary) {
    log.dmarc_action = settings.onTemporaryError;
    if (settings.onTemporaryError === 'accept') return { action: 'accept', addHeaders, arc, log };
    return {
      action: 'tempfail',
      status: { code: 451, enhanced: '4.7.5', text: 'Sender authentication could not be checked (DNS); try again later' },
      addHeaders,
      arc,
      log,
    };
  }
  if (dmarc !== 'fail' || !found.dmarcPolicy || !settings.enforceDmarc) return { action: 'accept', addHeaders, arc, log };

  let policy = found.dmarcPolicy;
  const pct = samplePercent(found.dmarcRecord);
  if (!found.dmarcTestMode && pct < 100 && random() * 100 >= pct) {
    policy = LOWER[policy] ?? 'none';
    log.dmarc_pct = pct;
  }
  log.dmarc_policy = policy;
  if (policy === 'none') return { action: 'accept', addHeaders, arc, log };
  const exempt = overrideReason(found, clientIp, settings);
  if (exempt) {
    log.dmarc_override = exempt;
    return { action: 'accept', addHeaders, arc, log };
  }
  if (policy === 'reject') {
    return {
      action: 'reject',
      // Postfix + OpenDMARC's reply for a p=reject failure.
      status: { code: 550, enhanced: '5.7.1', text: `rejected by DMARC policy for ${fromDomain}` },
      addHeaders,
      arc,
      log,
    };
  }
  return { action: 'junk', addHeaders, arc, log };
}

/** Why a DMARC failure is not acted on, or undefined when it is. */
function overrideReason(found: AuthenticationFindings, ip: string, settings: AuthenticationSettings): string | undefined {
  const domain = found.fromDomain.toLowerCase();
  if (settings.dmarcExemptDomains.some((d) => domain === d.toLowerCase() || domain.endsWith(`.${d.toLowerCase()}`))) return 'domain';
  if (ip && settings.dmarcExemptNetworks.contains(ip)) return 'network';
  // RFC 8617 section 7.2.1: a receiver may honour the authentication results an intermediary it
  // trusts recorded before it changed the message. The newest seal must be one we trust.
  const sealer = found.arcSealer?.toLowerCase();
  if (sealer && settings.trustedArcSealers.some((d) => d.toLowerCase() === sealer)) return `arc:${sealer}`;
  return undefined;
}

/** pct= of the DMARC record (RFC 7489 section 6.3), 100 when absent or malformed. */
function samplePercent(record: string | undefined): number {
  const match = record ? /(?:^|;)\s*pct\s*=\s*(\d{1,3})\s*(?:;|$)/i.exec(record) : null;
  if (!match) return 100;
  const pct = Number(match[1]);
  return pct >= 0 && pct <= 100 ? pct : 100;
}

/** Header lines ("Name: value\r\n folded...") as fields, unfolded. */
function headerFields(block: string): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const raw of block.split(/\r?\n(?![ \t])/)) {
    if (!raw.trim()) continue;
    const colon = raw.indexOf(':');
    if (colon <= 0) continue;
    const name = raw.slice(0, colon);
    fields.push([
      name,
      raw
        .slice(colon + 1)
        .replace(/\r?\n[ \t]+/g, ' ')
        .trim(),
    ]);
  }
  return fields;
}
