/**
 * Next-hop syntax as Postfix writes it in transport maps and relayhost:
 *
 *   smtp:[host]:port   relay:[192.0.2.1]   [host]   [host]:587   host   host:25   [2001:db8::1]:25
 *
 * Brackets mean "connect to this host" (no MX lookup); a bare name means "look up its MX records".
 * Only the SMTP transports (smtp:, relay:) are supported; lmtp:, error:, local: and others are
 * configuration errors here.
 */
import net from 'node:net';
import { MailError } from '../errors.js';
import type { NextHop, TlsPolicy } from './types.js';

/** Transports that deliver over SMTP; anything else is refused. */
const SMTP_TRANSPORTS = new Set(['smtp', 'relay']);

/** Service names Postfix accepts in place of a port number. */
const SERVICES: Record<string, number> = { smtp: 25, submission: 587, submissions: 465, smtps: 465 };

/** A DNS name: LDH labels (underscores tolerated, they occur in the wild), optional trailing dot. */
const HOSTNAME = /^(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

function invalid(text: string, why: string): MailError {
  return new MailError('CONFIG_INVALID', `invalid next hop ${JSON.stringify(text)}: ${why}`);
}

function parsePort(text: string, port: string): number {
  const service = SERVICES[port.toLowerCase()];
  if (service !== undefined) return service;
  if (!/^\d{1,5}$/.test(port)) throw invalid(text, `bad port ${JSON.stringify(port)}`);
  const n = Number(port);
  if (n < 1 || n > 65535) throw invalid(text, `port ${n} out of range`);
  return n;
}

/**
 * Parses a Postfix-style next hop. The result carries `defaults.tls`; the caller applies the
 * tls_policy and relay_auth maps (keyed by nextHopKey()) afterwards.
 * Throws MailError('CONFIG_INVALID') for anything it does not understand.
 */
export function parseNextHop(text: string, defaults: { port: number; tls: TlsPolicy }): NextHop {
  // Whitespace and control characters never belong in a next hop; CR/LF would reach logs and DSNs.
  if (/[\s\x00-\x1f\x7f]/.test(text)) throw invalid(text, 'contains whitespace or control characters');
  let rest = text;
  // "transport:nexthop". A bare "host:25" is not a transport prefix: its remainder is only a port.
  const prefix = /^([a-z][a-z0-9_-]*):(.*)$/i.exec(rest);
  if (prefix && !/^\d+$/.test(prefix[2]!)) {
    const transport = prefix[1]!.toLowerCase();
    if (!SMTP_TRANSPORTS.has(transport)) throw invalid(text, `transport "${transport}" is not supported (only smtp: and relay:)`);
    rest = prefix[2]!;
  }
  if (!rest) throw invalid(text, 'no host');

  let host: string;
  let port = defaults.port;
  let lookup: NextHop['lookup'];
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw invalid(text, 'unbalanced "["');
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after) {
      if (!after.startsWith(':')) throw invalid(text, `unexpected ${JSON.stringify(after)} after "]"`);
      port = parsePort(text, after.slice(1));
    }
    // RFC 5321 section 4.1.3 writes IPv6 address literals as [IPv6:...]; accept both forms.
    if (/^ipv6:/i.test(host)) {
      host = host.slice(5);
      if (!net.isIPv6(host)) throw invalid(text, 'bad IPv6 address literal');
    }
    lookup = 'host';
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0) {
      port = parsePort(text, rest.slice(colon + 1));
      host = rest.slice(0, colon);
    } else {
      host = rest;
    }
    if (host.includes(':')) throw invalid(text, 'an IPv6 address must be written in brackets');
    lookup = 'mx';
  }
  if (!host) throw invalid(text, 'no host');
  if (net.isIP(host)) {
    // An IP address has no MX records: "1.2.3.4" and "[1.2.3.4]" mean the same.
    lookup = 'host';
  } else if (!HOSTNAME.test(host)) {
    throw invalid(text, `bad host name ${JSON.stringify(host)}`);
  } else {
    host = host.toLowerCase().replace(/\.$/, '');
  }
  // Port 465 speaks TLS from the first byte (RFC 8314 section 3.3; Postfix's smtp_tls_wrappermode).
  return { lookup, host, port, tls: defaults.tls, ...(port === 465 ? { implicitTls: true } : {}) };
}

/**
 * The key of a destination: "[host]:port" for an explicit host, "host" for an MX lookup on port
 * 25 ("host:port" on another port). Used for per-destination concurrency and to look up the
 * tls_policy and relay_auth maps, so two spellings of one destination give the same key.
 */
export function nextHopKey(hop: Pick<NextHop, 'lookup' | 'host' | 'port'>): string {
  const host = hop.host.toLowerCase().replace(/\.$/, '');
  if (hop.lookup === 'host') return `[${host}]:${hop.port}`;
  return hop.port === 25 ? host : `${host}:${hop.port}`;
}
