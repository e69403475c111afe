/**
 * Postfix's checks of incoming mail that maild has counterparts for: the milters of
 * smtpd_milters (with milter_default_action and the milter timeouts) and the DNS lists of the
 * restriction lists (reject_rbl_client, reject_rhsbl_sender, permit_dnswl_client).
 */
import type { ImportContext } from './context.js';

export interface ImportedMilter {
  address: string;
  default_action?: string;
  connect_timeout?: string;
  command_timeout?: string;
  content_timeout?: string;
}

export interface ImportedDnsList {
  zone: string;
  type?: 'domain';
  allow?: true;
  match?: string[];
}

export interface InboundSettings {
  milters?: { comment: string; items: ImportedMilter[] };
  dnsbl?: { comment: string; lists: ImportedDnsList[] };
}

/** The restriction items that become inbound.dnsbl lists. */
export const DNS_LIST_RESTRICTIONS = /^(reject_rbl_client|reject_rhsbl_sender|permit_dnswl_client) /;

const DEFAULT_ACTIONS = new Set(['tempfail', 'accept', 'reject']);

/** Postfix time values ("30s", "5m", a bare number of seconds) as maild writes them. */
function duration(value: string): string | undefined {
  return /^\d+[smhdw]?$/.test(value.trim()) ? value.trim() : undefined;
}

/** Postfix 3's "{ inet:host:port, default_action = accept }" items and plain addresses. */
function milterItems(value: string): Array<{ address: string; settings: Map<string, string> }> {
  const items: Array<{ address: string; settings: Map<string, string> }> = [];
  const re = /\{([^}]*)\}|([^\s,{}]+)/g;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    if (m[2]) {
      items.push({ address: m[2], settings: new Map() });
      continue;
    }
    const [address = '', ...rest] = m[1]!.split(',').map((s) => s.trim());
    const settings = new Map(rest.filter((s) => s.includes('=')).map((s) => [s.split('=')[0]!.trim(), s.slice(s.indexOf('=') + 1).trim()]));
    if (address) items.push({ address, settings });
  }
  return items;
}

/**
 * A reply filter of reject_rbl_client ("127.0.0.2", "127.0.0.[2..11]", "127.0.0.[2;4;9]") as the
 * addresses it stands for; undefined when it is not one of these forms or stands for too many.
 */
export function expandReplyFilter(filter: string): string[] | undefined {
  // Dots inside [a..b] are not separators.
  const octets = filter.match(/\[[^\]]*\]|[^.[\]]+/g) ?? [];
  if (octets.length !== 4) return undefined;
  const choices: number[][] = [];
  for (const o of octets) {
    const range = /^\[(\d{1,3})\.\.(\d{1,3})\]$/.exec(o);
    const list = /^\[(\d{1,3}(?:;\d{1,3})*)\]$/.exec(o);
    let values: number[];
    if (/^\d{1,3}$/.test(o)) values = [Number(o)];
    else if (range) values = Array.from({ length: Math.max(0, Number(range[2]) - Number(range[1]) + 1) }, (_, i) => Number(range[1]) + i);
    else if (list) values = list[1]!.split(';').map(Number);
    else return undefined;
    if (values.length === 0 || values.some((v) => v > 255)) return undefined;
    choices.push(values);
  }
  if (choices.reduce((n, c) => n * c.length, 1) > 256) return undefined;
  let out = [''];
  for (const c of choices) out = out.flatMap((prefix) => c.map((v) => (prefix ? `${prefix}.${v}` : `${v}`)));
  return out;
}

export function importInbound(ctx: ImportContext, restrictionItems: (value: string) => string[]): InboundSettings {
  const { main, master, mainLabel, skip } = ctx;
  const result: InboundSettings = {};
  if (!main) return result;

  // ---- smtpd_milters -------------------------------------------------------------------------
  const milterValue = main.has('smtpd_milters') ? main.get('smtpd_milters').trim() : '';
  if (milterValue) {
    const globalDefault = main.has('milter_default_action') ? main.get('milter_default_action').trim() : undefined;
    if (globalDefault && !DEFAULT_ACTIONS.has(globalDefault))
      skip(mainLabel('milter_default_action'), `maild's milters tempfail, accept or reject; ${globalDefault} became tempfail`);
    const timeouts: Array<[keyof ImportedMilter, string]> = [
      ['connect_timeout', 'milter_connect_timeout'],
      ['command_timeout', 'milter_command_timeout'],
      ['content_timeout', 'milter_content_timeout'],
    ];
    const items: ImportedMilter[] = [];
    const queueDir = (main.has('queue_directory') ? main.get('queue_directory') : '/var/spool/postfix').replace(/\/$/, '');
    const chrooted = (master ?? []).some((s) => s.command === 'smtpd' && s.type === 'inet' && s.chroot === 'y');
    for (const { address, settings } of milterItems(milterValue)) {
      let target = address;
      if (address.startsWith('unix:') && (chrooted || !address.startsWith('unix:/'))) {
        // A relative path, and any path of a chrooted smtpd, is below the queue directory.
        target = `unix:${queueDir}/${address.slice('unix:'.length).replace(/^\//, '')}`;
      } else if (!/^(inet:|unix:)/.test(address)) {
        skip(`smtpd_milters item ${address} (main.cf)`, 'maild takes inet:host:port and unix:/path milters');
        continue;
      }
      const item: ImportedMilter = { address: target };
      const action = settings.get('default_action') ?? globalDefault;
      if (action && DEFAULT_ACTIONS.has(action) && action !== 'tempfail') item.default_action = action;
      for (const [key, postfixName] of timeouts) {
        const raw = settings.get(key) ?? (main.has(postfixName) ? main.get(postfixName) : undefined);
        const value = raw !== undefined ? duration(raw) : undefined;
        if (value) item[key] = value;
      }
      items.push(item);
    }
    if (items.length) result.milters = { comment: mainLabel('smtpd_milters'), items };
  }
  if (main.has('non_smtpd_milters') && main.get('non_smtpd_milters').trim())
    skip(mainLabel('non_smtpd_milters'), "maild's milters see mail from the internet only (not bounces or submissions)");

  // ---- DNS lists in the restriction lists ----------------------------------------------------
  const lists: ImportedDnsList[] = [];
  const from: string[] = [];
  for (const name of [
    'smtpd_client_restrictions',
    'smtpd_helo_restrictions',
    'smtpd_sender_restrictions',
    'smtpd_recipient_restrictions',
    'smtpd_relay_restrictions',
  ]) {
    if (!main.has(name)) continue;
    for (const item of restrictionItems(main.get(name))) {
      const m = /^(reject_rbl_client|reject_rhsbl_sender|permit_dnswl_client) (.+)$/.exec(item);
      if (!m) continue;
      const [zone = '', filter] = m[2]!.split('=');
      const list: ImportedDnsList = { zone };
      if (m[1] === 'reject_rhsbl_sender') list.type = 'domain';
      if (m[1] === 'permit_dnswl_client') list.allow = true;
      if (filter) {
        const match = expandReplyFilter(filter);
        if (match) list.match = match;
        else
          skip(`${m[1]} ${m[2]} (main.cf ${name})`, `maild takes reply filters as addresses or octet ranges; ${zone} counts any listing`);
      }
      if (!lists.some((l) => JSON.stringify(l) === JSON.stringify(list))) lists.push(list);
      if (!from.includes(name)) from.push(name);
    }
  }
  if (lists.length) result.dnsbl = { comment: `${from.join(', ')} (main.cf)`, lists };
  return result;
}
