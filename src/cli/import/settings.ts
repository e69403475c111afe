/**
 * The remaining settings: certificate, clients that may relay or send passwords before TLS,
 * limits, the outbound queue, and the Postfix and Dovecot features maild has no counterpart for.
 */
import { allSettingValues, fileValue, findSections, setting } from './dovecot-conf.js';
import type { ImportContext } from './context.js';
import { splitList } from './main-cf.js';
import { DNS_LIST_RESTRICTIONS } from './inbound.js';

export interface OtherSettings {
  hostname?: string;
  tls?: { cert: string; key: string; from: string };
  trustedNetworks: string[];
  cleartext?: { value: string; comment: string };
  messageSize?: { value: number; comment: string };
  delimiter?: { value: string; comment: string };
  relayhost: string;
  queueTls?: string;
  userIpConnections?: { value: number; comment: string };
}

export function importTls(ctx: ImportContext): OtherSettings['tls'] {
  const { main, dovecot, dv, dvLabel, mainLabel, skip } = ctx;
  let tls: { cert: string; key: string; from: string } | undefined;
  const dovecotCert = dv('ssl_cert') ?? dv('ssl_cert_file');
  const dovecotKey = dv('ssl_key') ?? dv('ssl_key_file');
  if (dovecot && dovecotCert && dovecotKey && dv('ssl') !== 'no') {
    const cert = dv('ssl_cert') !== undefined ? fileValue(dovecotCert) : dovecotCert;
    const key = dv('ssl_key') !== undefined ? fileValue(dovecotKey) : dovecotKey;
    if (cert && key) tls = { cert, key, from: `${dvLabel(dv('ssl_cert') !== undefined ? 'ssl_cert' : 'ssl_cert_file')}, ssl_key` };
    else skip('ssl_cert / ssl_key', 'given inline rather than as <file; write them to files and set tls.cert and tls.key');
  }
  if (main && main.get('smtpd_tls_cert_file')) {
    const cert = main.get('smtpd_tls_cert_file');
    const key = main.get('smtpd_tls_key_file') || cert;
    if (!tls) tls = { cert, key, from: `${mainLabel('smtpd_tls_cert_file')}, smtpd_tls_key_file` };
    else if (tls.cert !== cert || tls.key !== key)
      skip(mainLabel('smtpd_tls_cert_file'), `maild has one certificate for every listener; Dovecot's (${tls.cert}) was taken`);
  }
  if (main?.has('smtpd_tls_chain_files'))
    skip(mainLabel('smtpd_tls_chain_files'), 'maild reads tls.cert and tls.key; split the chain file into the two');
  for (const key of ['ssl_cipher_list', 'ssl_min_protocol', 'ssl_prefer_server_ciphers', 'ssl_ca', 'ssl_verify_client_cert']) {
    if (dv(key) !== undefined) skip(dvLabel(key), "maild uses Node's TLS defaults (TLS 1.2 and newer, its cipher list)");
  }

  return tls;
}

export function importOtherSettings(ctx: ImportContext, quotaPlugin: boolean): Omit<OtherSettings, 'tls'> {
  const { main, dovecot, dv, dvLabel, mainLabel, skip } = ctx;
  const hostname = main?.has('myhostname') ? main.get('myhostname') : undefined;
  // ---- auth ---------------------------------------------------------------------------------
  const mechanisms = splitList(dv('auth_mechanisms') ?? 'plain').map((m) => m.toLowerCase());
  const unsupported = mechanisms.filter((m) => m !== 'plain' && m !== 'login');
  if (unsupported.length) skip(dvLabel('auth_mechanisms'), `maild offers PLAIN and LOGIN; ${unsupported.join(', ').toUpperCase()} not`);
  let trustedNetworks: string[] = [];
  if (main?.has('mynetworks')) {
    for (const n of splitList(main.get('mynetworks'))) {
      const cidr = n.replace(/^\[([^\]]+)\](\/\d+)?$/, '$1$2');
      if (/^[0-9a-f.:]+(\/\d{1,3})?$/i.test(cidr)) trustedNetworks.push(cidr);
      else skip(`mynetworks entry ${n} (main.cf)`, 'maild takes addresses and CIDR ranges only');
    }
  } else if (main)
    skip(
      'mynetworks',
      "not set: Postfix trusted this machine's own addresses (mynetworks_style); maild trusts no network unless listed in trusted_networks",
    );
  trustedNetworks = [...new Set(trustedNetworks)];
  let cleartext: { value: string; comment: string } | undefined;
  const plaintext = dv('disable_plaintext_auth') ?? dv('auth_allow_cleartext');
  if ((plaintext === 'no' || dv('auth_allow_cleartext') === 'yes') && dv('ssl') !== 'required') {
    if (trustedNetworks.length) {
      cleartext = {
        value: 'trusted_networks',
        comment: `${dvLabel(dv('disable_plaintext_auth') !== undefined ? 'disable_plaintext_auth' : 'auth_allow_cleartext')}: passwords before TLS, here only from trusted_networks`,
      };
      skip(
        dvLabel(dv('disable_plaintext_auth') !== undefined ? 'disable_plaintext_auth' : 'auth_allow_cleartext'),
        'Dovecot took passwords before TLS from anywhere; maild only from trusted_networks (mynetworks)',
      );
    } else
      skip(dvLabel('disable_plaintext_auth'), 'maild takes passwords before TLS only from trusted_networks, and mynetworks named none');
  }
  if (dv('login_trusted_networks') !== undefined)
    skip(dvLabel('login_trusted_networks'), 'maild has no trusted proxies (their clients are not treated as secured)');

  // ---- everything else that Postfix did -------------------------------------------------------
  if (main) {
    for (const [name, reason] of POSTFIX_NOT_CARRIED) {
      if (!main.has(name) || main.get(name).trim() === '') continue;
      if (name === 'mydestination' && splitList(main.get(name)).every((d) => /^localhost(\.|$)/.test(d) || d === main!.get('myhostname')))
        continue;
      if (name === 'alias_maps' && /^(hash|lmdb):\/etc\/aliases$/.test(main.get(name).trim())) continue;
      skip(mainLabel(name), reason);
    }
    for (const name of [
      'smtpd_recipient_restrictions',
      'smtpd_client_restrictions',
      'smtpd_sender_restrictions',
      'smtpd_helo_restrictions',
      'smtpd_relay_restrictions',
    ]) {
      if (!main.has(name)) continue;
      const extra = restrictionItems(main.get(name)).filter((r) => !STANDARD_RESTRICTIONS.has(r) && !DNS_LIST_RESTRICTIONS.test(r));
      if (extra.length)
        skip(
          `${name} items ${extra.join(', ')} (main.cf)`,
          'maild applies its fixed policy (no open relay, owned senders, known recipients)',
        );
    }
  }
  const messageSizeRaw = main?.get('message_size_limit');
  let messageSize: { value: number; comment: string } | undefined;
  if (messageSizeRaw !== undefined) {
    const n = Number(messageSizeRaw);
    if (n > 0)
      messageSize = {
        value: n,
        comment: main!.has('message_size_limit') ? mainLabel('message_size_limit') : "Postfix's default message_size_limit",
      };
    else skip(mainLabel('message_size_limit'), 'no limit: maild keeps one (limits.message_size, 25M by default)');
  }
  const delimiterRaw = main?.get('recipient_delimiter');
  let delimiter: { value: string; comment: string } | undefined;
  if (delimiterRaw !== undefined) {
    const value = delimiterRaw.slice(0, 1);
    delimiter = {
      value,
      comment: main!.has('recipient_delimiter')
        ? mainLabel('recipient_delimiter')
        : 'Postfix had no recipient_delimiter: bob+tag@ is not bob@',
    };
    if (delimiterRaw.length > 1) skip(mainLabel('recipient_delimiter'), `maild takes one delimiter; "${value}" was kept`);
  }
  const relayhost = main?.get('relayhost') ?? '';
  const smtpTls = main?.has('smtp_tls_security_level') ? main.get('smtp_tls_security_level') : undefined;
  let queueTls: string | undefined;
  if (smtpTls !== undefined && smtpTls !== '') {
    const mapped = { none: 'none', may: 'may', encrypt: 'encrypt', verify: 'verify', secure: 'verify', dane: 'may', 'dane-only': 'verify' }[
      smtpTls
    ];
    if (mapped) queueTls = mapped;
    if (!mapped || smtpTls.startsWith('dane'))
      skip(mainLabel('smtp_tls_security_level'), mapped ? `maild has no DANE; ${mapped} was used` : 'no counterpart');
  }

  // ---- everything else that Dovecot did -------------------------------------------------------
  if (dovecot) {
    const plugins = allSettingValues(dovecot, 'mail_plugins');
    for (const plugin of new Set(splitList(plugins.replace(/\$mail_plugins/g, '')))) {
      if ((plugin === 'quota' || plugin === 'imap_quota') && quotaPlugin) continue;
      // Sieve filtering is maild's own: the users' scripts run where Pigeonhole kept them.
      if (plugin === 'sieve') continue;
      skip(`mail_plugins ${plugin}`, 'maild has no plugins');
    }
    const globalQuota = findSections(dovecot, 'plugin')
      .map((p) => setting(p, 'quota_rule'))
      .find(Boolean);
    if (globalQuota) skip(`plugin { quota_rule = ${globalQuota} }`, "maild has no default quota; set the user query's quota column");
    const pop3 = [dovecot, ...findSections(dovecot, 'protocol', 'pop3')].find((s) => setting(s, 'pop3_uidl_format') !== undefined);
    const uidl = pop3 && setting(pop3, 'pop3_uidl_format');
    if (uidl !== undefined && uidl !== '%08Xu%08Xv')
      skip(
        dvLabel('pop3_uidl_format', pop3),
        "maild's POP3 UIDLs are Dovecot's default format (%08Xu%08Xv): POP3 clients may download messages again",
      );
  }

  let userIpConnections: { value: number; comment: string } | undefined;
  if (dovecot) {
    const inImap = findSections(dovecot, 'protocol', 'imap').find((p) => setting(p, 'mail_max_userip_connections') !== undefined);
    const value = inImap ? setting(inImap, 'mail_max_userip_connections') : dv('mail_max_userip_connections');
    if (value !== undefined && Number(value) >= 1)
      userIpConnections = {
        value: Number(value),
        comment: inImap ? `protocol imap { mail_max_userip_connections = ${value} }` : dvLabel('mail_max_userip_connections'),
      };
  }

  return {
    ...(hostname ? { hostname } : {}),
    trustedNetworks,
    ...(cleartext ? { cleartext } : {}),
    ...(messageSize ? { messageSize } : {}),
    ...(delimiter ? { delimiter } : {}),
    relayhost,
    ...(queueTls ? { queueTls } : {}),
    ...(userIpConnections ? { userIpConnections } : {}),
  };
}

const STANDARD_RESTRICTIONS = new Set([
  'permit_mynetworks',
  'permit_sasl_authenticated',
  'reject_unauth_destination',
  'defer_unauth_destination',
  'reject',
  'reject_unknown_recipient_domain',
  'reject_unlisted_recipient',
  'reject_non_fqdn_recipient',
  'reject_non_fqdn_sender',
  'reject_unknown_sender_domain',
  'reject_sender_login_mismatch',
  'reject_authenticated_sender_login_mismatch',
  'reject_unauthenticated_sender_login_mismatch',
  'permit',
  'reject_invalid_helo_hostname',
  'reject_non_fqdn_helo_hostname',
]);

/** main.cf settings that maild has no counterpart for, with the reason. */
const POSTFIX_NOT_CARRIED: Array<[string, string]> = [
  ['content_filter', 'maild hands mail to no content filter (amavis); mail is not scanned'],
  ['header_checks', 'maild has no header checks'],
  ['body_checks', 'maild has no body checks'],
  ['mime_header_checks', 'maild has no header checks'],
  ['smtpd_sender_login_maps', 'maild lets a login send as its own address, the aliases that reach it and submission.extra_senders'],
  ['sender_canonical_maps', 'maild does not rewrite addresses'],
  ['recipient_canonical_maps', 'maild does not rewrite addresses'],
  ['canonical_maps', 'maild does not rewrite addresses'],
  ['smtp_generic_maps', 'maild does not rewrite addresses'],
  ['relay_domains', 'maild is no backup MX: it relays for no domain it does not host'],
  ['relay_recipient_maps', 'maild is no backup MX'],
  ['mydestination', 'maild delivers to virtual mailboxes only, not to Unix accounts'],
  ['alias_maps', 'local aliases of Unix accounts are not read'],
  ['virtual_mailbox_limit_maps', 'quota maps are not read; give the user query a quota column (bytes)'],
  ['smtp_sasl_password_maps', 'relay credentials are in a hash file: copy them into queue.relay_auth'],
  ['sender_dependent_relayhost_maps', 'maild has one relayhost'],
  ['postscreen_dnsbl_sites', "postscreen's weighted lists are not read: give them as inbound.dnsbl lists with action: score"],
  ['smtpd_proxy_filter', 'maild has no before-queue proxy filter'],
  ['virtual_mailbox_limit', 'maild limits each mailbox by its quota only'],
  ['smtpd_client_connection_rate_limit', 'maild limits connections per address (limits.connections_per_ip), not their rate'],
];

/** A restriction list's items, each with its argument (`reject_rbl_client zen.spamhaus.org`). */
export function restrictionItems(value: string): string[] {
  const words = splitList(value);
  const items: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const takesArgument = /^(check_|reject_rbl_client|reject_rhsbl_|reject_dnsbl|permit_dnswl_client|permit_rhswl_client)/.test(w);
    items.push(takesArgument && i + 1 < words.length ? `${w} ${words[++i]}` : w);
  }
  return items;
}
