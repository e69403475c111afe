/**
 * Where a recipient's mail goes, in Postfix's order (trivial-rewrite + qmgr):
 *   1. a hosted domain (or alias domain): local delivery; local domains never leave the server;
 *   2. the transport table (per domain, from the directory: MySQL `transport` or YAML `transports`);
 *   3. the relayhost (smarthost setups);
 *   4. the domain's MX records.
 * The TLS policy and relay credentials of a next hop come from the queue settings, keyed by the
 * destination domain or by "[host]:port" as Postfix's smtp_tls_policy_maps and
 * smtp_sasl_password_maps are.
 */
import { isAddressLiteral, splitAddress } from '../directory/address.js';
import type { Directory } from '../directory/directory.js';
import { MailError } from '../errors.js';
import { nextHopKey, parseNextHop } from './nexthop.js';
import type { NextHop, TlsPolicy } from './types.js';

export interface RouteSettings {
  relayhost: string;
  tls: TlsPolicy;
  tlsPolicy: Record<string, TlsPolicy>;
  relayAuth: Record<string, { user: string; password: string }>;
  mxPort: number;
}

export type Route = { kind: 'local' } | { kind: 'remote'; hop: NextHop; key: string };

export class Router {
  readonly #directory: Directory;
  readonly #settings: () => RouteSettings;

  constructor(directory: Directory, settings: () => RouteSettings) {
    this.#directory = directory;
    this.#settings = settings;
  }

  /** Throws MailError TEMP_FAIL (directory down), BAD_ADDRESS or CONFIG_INVALID (a broken transport entry). */
  async route(address: string): Promise<Route> {
    const split = splitAddress(address);
    if (!split) throw new MailError('BAD_ADDRESS', `no domain in ${JSON.stringify(address)}`);
    const domain = split.domain;
    if (!isAddressLiteral(domain) && (await this.#directory.isLocalDomain(domain))) return { kind: 'local' };
    const s = this.#settings();
    const defaults = { port: s.mxPort, tls: s.tls };
    let hop: NextHop;
    const transport = isAddressLiteral(domain) ? null : await this.#directory.transportFor(domain);
    if (transport) hop = parseNextHop(transport, { port: 25, tls: s.tls });
    else if (s.relayhost) hop = parseNextHop(s.relayhost, { port: 25, tls: s.tls });
    else if (isAddressLiteral(domain)) hop = parseNextHop(domain, defaults);
    else hop = { lookup: 'mx', host: domain, port: s.mxPort, tls: s.tls };
    const key = nextHopKey(hop);
    const policy = s.tlsPolicy[key] ?? s.tlsPolicy[hop.host] ?? (hop.lookup === 'mx' ? s.tlsPolicy[domain] : undefined);
    if (policy) hop = { ...hop, tls: policy };
    const auth = s.relayAuth[key] ?? s.relayAuth[hop.host];
    if (auth) hop = { ...hop, auth: { user: auth.user, pass: auth.password } };
    return { kind: 'remote', hop, key };
  }
}
