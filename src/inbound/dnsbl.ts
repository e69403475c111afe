/**
 * DNS blocklists and allowlists: DNSBL/DNSWL on the client's address, RHSBL on the sender's
 * domain (and optionally the HELO name), as Postfix's reject_rbl_client / reject_rhsbl_sender /
 * permit_dnswl_client and postscreen's scored lists do it.
 *
 * A list is asked for the A records of a name under its zone (RFC 5782 section 2): the client's
 * IPv4 octets in reverse ("10.2.0.192.zone"), an IPv6 address as 32 reversed nibbles (section
 * 2.4), or a domain name as it is ("example.com.zone", section 3). An answer inside the list's
 * `match` ranges is a listing; its TXT record (section 2.1) is the reason given to the client.
 *
 * A list that fails (timeout, SERVFAIL) is skipped and logged: an outage of a blocklist must not
 * stop mail, as in Postfix. Answers in 127.255.255.0/24 are Spamhaus's error codes ("query via a
 * public resolver", "excessive number of queries", "typing error in the zone name"), never
 * listings: they are ignored and logged.
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import type { Logger } from '../log.js';
import { NetworkList } from '../net.js';
import type { CheckResult } from './types.js';

/** An IPv4 address or range, as DNSBL answers are compared with. */
const ipv4Range = z.string().refine(
  (v) => {
    const [addr, bits, extra] = v.trim().split('/');
    return extra === undefined && net.isIPv4(addr!) && (bits === undefined || (/^\d{1,2}$/.test(bits) && Number(bits) <= 32));
  },
  { message: 'expected an IPv4 address or range such as 127.0.0.2 or 127.0.0.0/24' },
);

/** A DNS zone name such as "zen.spamhaus.org" (a trailing dot is dropped). */
const zoneName = z
  .string()
  .transform((v) => v.trim().toLowerCase().replace(/\.$/, ''))
  .refine((v) => v.length > 0 && v.length <= 200 && v.split('.').every((l) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l)), {
    message: 'expected a DNS zone name such as zen.spamhaus.org',
  });

export const dnsblListSchema = z.strictObject({
  /** The list's DNS zone, e.g. "zen.spamhaus.org", "dbl.spamhaus.org", "list.dnswl.org". */
  zone: zoneName,
  /** ip: the client's address is looked up (DNSBL/DNSWL); domain: the sender's domain (RHSBL). */
  type: z.enum(['ip', 'domain']).default('ip'),
  /** An allowlist (DNSWL): a listing accepts the client and skips every blocklist. */
  allow: z.boolean().default(false),
  /** Answers that count as a listing: addresses or ranges (default: anything in 127.0.0.0/8). */
  match: z.array(ipv4Range).min(1).default(['127.0.0.0/8']),
  /**
   * Answers that are the list's error codes, never listings: logged and ignored. Spamhaus's are
   * 127.255.255.0/24; dnswl.org's "query limit exceeded" is 127.0.0.255 (add it for that list).
   */
  ignore: z.array(ipv4Range).default(['127.255.255.0/24']),
  /** reject: a listing refuses the mail; score: it adds `score`, refused at reject_score. */
  action: z.enum(['reject', 'score']).default('reject'),
  score: z.number().finite().default(1),
  /** For domain lists: look up the HELO name as well (Postfix's reject_rhsbl_helo). */
  helo: z.boolean().default(false),
  /**
   * The refusal's text, with Postfix's rbl_reply_maps variables: $rbl_class ("client", "Sender
   * address", "Helo command"), $rbl_what (the address or name), $rbl_domain (the zone),
   * $rbl_reason (the list's TXT record, '' without one), $client_address; ${name?text} gives text
   * only when name is not empty.
   */
  message: z.string().min(1).default('Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}'),
});
export type DnsblList = z.infer<typeof dnsblListSchema>;

/** The `dnsbl:` section (to be mounted under `inbound:`). */
export const dnsblConfigSchema = z.strictObject({
  lists: z.array(dnsblListSchema).default([]),
  /** The sum of the scores of the `score` lists that refuses the mail (postscreen_dnsbl_threshold). */
  reject_score: z.number().finite().positive().default(1),
});
export type DnsblConfig = z.infer<typeof dnsblConfigSchema>;

/** What this check needs of the resolver (src/dns.ts Dns has it, with its deadline and cache). */
export interface DnsblResolver {
  resolve4(name: string): Promise<string[]>;
  resolveTxt(name: string): Promise<string[][]>;
}

/** What is looked up: the client's address, the MAIL FROM address ('' for the null sender), the HELO name. */
export interface DnsblSubject {
  clientIp?: string;
  sender?: string;
  helo?: string;
}

export interface DnsblHit {
  zone: string;
  /** What was listed: 'client', 'sender' or 'helo', and its value (address or domain). */
  what: 'client' | 'sender' | 'helo';
  value: string;
  /** The name asked for. */
  name: string;
  /** The answers that matched. */
  answers: string[];
  list: DnsblList;
}

export interface DnsblResult extends CheckResult {
  /** The allowlist zone that listed the client: the caller may skip its later checks. */
  allowlisted?: string;
  /** Listings, allowlists' included. */
  hits: DnsblHit[];
  /** The sum of the scores of the `score` lists that listed. */
  score: number;
}

/** The name under a DNSBL zone for an address (RFC 5782 section 2.1 and 2.4); undefined if it is not one. */
export function reversedIp(ip: string): string | undefined {
  if (!net.isIP(ip)) return undefined;
  const addr = ipaddr.process(ip); // IPv4-mapped IPv6 is looked up as IPv4
  const bytes = addr.toByteArray();
  if (addr.kind() === 'ipv4') return bytes.reverse().join('.');
  return bytes
    .flatMap((b) => [(b >> 4).toString(16), (b & 15).toString(16)])
    .reverse()
    .join('.');
}

/** A domain name usable under a zone (letters, digits, hyphens, underscores), lower-cased; else undefined. */
function domainName(value: string): string | undefined {
  const name = value.trim().toLowerCase().replace(/\.$/, '');
  if (name.length === 0 || name.length > 253 || !name.includes('.')) return undefined;
  return name.split('.').every((l) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l)) ? name : undefined;
}

/** Text from DNS made safe for a reply line: printable ASCII, at most 200 characters. */
function replyText(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?').trim();
  return printable.length > 200 ? `${printable.slice(0, 197)}...` : printable;
}

/** Expands Postfix-style $name, ${name} and ${name?text} in a reply template. */
function expand(template: string, vars: Record<string, string>): string {
  const withConditionals = template.replace(/\$\{(\w+)\?([^}]*)\}/g, (_, name: string, text: string) => (vars[name] ? text : ''));
  return withConditionals.replace(
    /\$\{(\w+)\}|\$(\w+)/g,
    (whole, a: string | undefined, b: string | undefined) => vars[(a ?? b)!] ?? whole,
  );
}

const RBL_CLASS: Record<DnsblHit['what'], string> = { client: 'client', sender: 'Sender address', helo: 'Helo command' };

export class Dnsbl {
  readonly #config: DnsblConfig;
  readonly #dns: DnsblResolver;
  readonly #log: Logger | undefined;
  readonly #match: Map<DnsblList, { match: NetworkList; ignore: NetworkList }>;

  constructor(config: DnsblConfig, dns: DnsblResolver, logger?: Logger) {
    this.#config = config;
    this.#dns = dns;
    this.#log = logger;
    this.#match = new Map(config.lists.map((l) => [l, { match: new NetworkList(l.match), ignore: new NetworkList(l.ignore) }]));
  }

  /**
   * Asks every list about the subject, in parallel (a list whose subject is missing is left
   * out), and decides: an allowlist listing accepts; else the first `reject` list that lists
   * refuses, or the `score` lists' sum reaching reject_score does; else accept.
   */
  async check(subject: DnsblSubject): Promise<DnsblResult> {
    const lookups = this.#config.lists.flatMap((list) => this.#questions(list, subject).map((q) => ({ list, ...q })));
    // Each lookup settles as a hit, nothing, a failure or ignored error codes; never a rejection.
    const answered = await Promise.all(
      lookups.map(async (q): Promise<{ hit?: DnsblHit; failure?: string; ignored?: string }> => {
        let answers: string[];
        try {
          answers = await this.#dns.resolve4(q.name);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException)?.code ?? String(err);
          if (code === 'ENOTFOUND' || code === 'ENODATA') return {}; // not listed
          this.#log?.warn({ zone: q.list.zone, name: q.name, code }, 'dnsbl lookup failed; list skipped');
          return { failure: `${q.list.zone}: ${code}` };
        }
        const { match, ignore } = this.#match.get(q.list)!;
        const errors = answers.filter((a) => ignore.contains(a));
        if (errors.length > 0) {
          this.#log?.warn(
            { zone: q.list.zone, name: q.name, answers: errors },
            'dnsbl answered with an error code (query refused, rate limited or wrong zone); ignored',
          );
        }
        const listed = answers.filter((a) => !ignore.contains(a) && match.contains(a));
        return {
          ...(listed.length > 0
            ? { hit: { zone: q.list.zone, what: q.what, value: q.value, name: q.name, answers: listed, list: q.list } }
            : {}),
          ...(errors.length > 0 ? { ignored: `${q.list.zone}=${errors.join(',')}` } : {}),
        };
      }),
    );
    const failures = answered.flatMap((a) => (a.failure ? [a.failure] : []));
    const ignored = answered.flatMap((a) => (a.ignored ? [a.ignored] : []));
    const hits = answered.flatMap((a) => (a.hit ? [a.hit] : []));
    const scored = hits.filter((h) => !h.list.allow && h.list.action === 'score');
    const score = scored.reduce((sum, h) => sum + h.list.score, 0);
    const log: Record<string, unknown> = { dnsbl: 'clean' };
    if (hits.length > 0) log.dnsbl_hits = hits.map((h) => `${h.zone}=${h.answers.join(',')}`);
    if (scored.length > 0) log.dnsbl_score = score;
    if (failures.length > 0) log.dnsbl_failed = failures;
    if (ignored.length > 0) log.dnsbl_ignored = ignored;

    const allow = hits.find((h) => h.list.allow);
    if (allow) return { action: 'accept', allowlisted: allow.zone, hits, score, log: { ...log, dnsbl: 'allowlisted' } };

    // The first refusing list in configuration order (hits are in that order), else the
    // highest-scoring one once the sum reaches the threshold.
    let deciding = hits.find((h) => h.list.action === 'reject');
    if (!deciding && scored.length > 0 && score >= this.#config.reject_score) {
      deciding = scored.reduce((best, h) => (h.list.score > best.list.score ? h : best));
    }
    if (!deciding) return { action: 'accept', hits, score, log };
    const text = await this.#replyText(deciding, subject.clientIp ?? '');
    return {
      action: 'reject',
      status: { code: 554, enhanced: '5.7.1', text },
      hits,
      score,
      log: { ...log, dnsbl: 'listed', dnsbl_zone: deciding.zone },
    };
  }

  /** The names to ask a list about for this subject. */
  #questions(list: DnsblList, subject: DnsblSubject): Array<{ name: string; what: DnsblHit['what']; value: string }> {
    if (list.type === 'ip') {
      const reversed = subject.clientIp ? reversedIp(subject.clientIp) : undefined;
      if (!reversed) return [];
      return [{ name: `${reversed}.${list.zone}`, what: 'client', value: ipaddr.process(subject.clientIp!).toString() }];
    }
    const out: Array<{ name: string; what: DnsblHit['what']; value: string }> = [];
    const senderDomain = subject.sender?.includes('@') ? domainName(subject.sender.slice(subject.sender.lastIndexOf('@') + 1)) : undefined;
    if (senderDomain) out.push({ name: `${senderDomain}.${list.zone}`, what: 'sender', value: senderDomain });
    const heloName = list.helo && subject.helo ? domainName(subject.helo) : undefined;
    if (heloName && heloName !== senderDomain) out.push({ name: `${heloName}.${list.zone}`, what: 'helo', value: heloName });
    // RFC 1035 section 2.3.4: a name longer than 253 characters cannot be asked for.
    return out.filter((q) => q.name.length <= 253);
  }

  /** The refusal's text, with the list's TXT record as the reason when it has one. */
  async #replyText(hit: DnsblHit, clientIp: string): Promise<string> {
    let reason = '';
    try {
      const records = await this.#dns.resolveTxt(hit.name);
      reason = replyText(records.map((r) => r.join('')).join('; '));
    } catch {
      // No reason, or none in time: the refusal stands without it.
    }
    const text = expand(hit.list.message, {
      rbl_class: RBL_CLASS[hit.what],
      rbl_what: hit.value,
      rbl_domain: hit.zone,
      rbl_reason: reason,
      client_address: clientIp,
    });
    return replyText(text) || 'Service unavailable';
  }
}
