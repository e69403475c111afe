/**
 * Listeners: Postfix's smtpd services (master.cf), Dovecot's imap/pop3 inet_listeners and LMTP
 * sockets, and Postfix's SASL socket served as a dovecot-auth listener.
 */
import path from 'node:path';
import { findSections, setting } from './dovecot-conf.js';
import type { ImportContext } from './context.js';
import { isYes, splitList } from './main-cf.js';
import { inetEndpoint } from './master-cf.js';

export interface Listener {
  comment: string[];
  fields: Array<[string, string | number]>;
}

/** Postfix's default base_dir-relative LMTP/auth sockets live in Dovecot's base_dir. */
const DOVECOT_BASE_DIR = '/run/dovecot';

export function importListeners(ctx: ImportContext): Listener[] {
  const { main, master, dovecot, dv, dvLabel, mainLabel, rel, skip } = ctx;
  const listeners: Listener[] = [];
  const usedNames = new Set<string>();
  const uniqueName = (name: string) => {
    let n = name;
    for (let i = 2; usedNames.has(n); i++) n = `${name}-${i}`;
    usedNames.add(n);
    return n;
  };

  if (main) {
    const interfaces = splitList(main.get('inet_interfaces'));
    const inetProtocols = splitList(main.has('inet_protocols') ? main.get('inet_protocols') : 'all');
    if (interfaces.includes('all') && (inetProtocols.includes('all') || inetProtocols.includes('ipv6')))
      skip(
        main.has('inet_protocols') ? mainLabel('inet_protocols') : "inet_protocols = all (Postfix's default)",
        'IPv6: the listeners get 0.0.0.0; for IPv6 as well, make their address ["0.0.0.0", "::"]',
      );
    const defaultAddress = interfaceAddress(interfaces, skip, mainLabel('inet_interfaces'));
    const services = master ?? [{ service: 'smtp', type: 'inet', command: 'smtpd', options: new Map<string, string>(), line: 0 }];
    const contentFilter = main.get('content_filter');
    for (const svc of services) {
      if (svc.type !== 'inet' || (svc.command !== 'smtpd' && svc.command !== 'postscreen')) continue;
      const where = master ? `${svc.service} inet ${svc.command} (master.cf line ${svc.line})` : 'smtp (Postfix default)';
      const endpoint = inetEndpoint(svc.service);
      if (!endpoint) {
        skip(where, 'unknown service port');
        continue;
      }
      const opt = (name: string) => svc.options.get(name) ?? main!.get(name);
      // A content filter's re-injection port (-o content_filter= on a loopback smtpd) is Postfix plumbing, not a listener.
      if (contentFilter && svc.options.has('content_filter') && svc.options.get('content_filter') === '') {
        skip(where, `the return path of content_filter = ${contentFilter}, which is not carried over`);
        continue;
      }
      const wrapper = isYes(opt('smtpd_tls_wrappermode') ?? '');
      const syslog = svc.options.get('syslog_name') ?? '';
      const submission =
        wrapper ||
        ['submission', 'submissions', 'smtps'].includes(svc.service.replace(/^.*:/, '')) ||
        [587, 465].includes(endpoint.port) ||
        /submission|smtps/.test(syslog) ||
        isYes(svc.options.get('smtpd_sasl_auth_enable') ?? '');
      const level =
        opt('smtpd_tls_security_level') ||
        (isYes(opt('smtpd_enforce_tls') ?? '') ? 'encrypt' : isYes(opt('smtpd_use_tls') ?? '') ? 'may' : 'none');
      const tls = wrapper ? 'implicit' : submission || level !== 'none' ? 'starttls' : 'none';
      const protocol = submission ? 'submission' : 'smtp';
      const name = uniqueName(submission ? (wrapper ? 'submissions' : 'submission') : 'mx');
      const comment = [
        `${where}${Object.keys(Object.fromEntries(svc.options)).length ? `, ${[...svc.options].map(([k, v]) => `-o ${k}=${v}`).join(' ')}` : ''}`,
      ];
      if (submission && level === 'none' && !wrapper)
        comment.push('Postfix offered no TLS here; maild takes passwords only after STARTTLS');
      if (svc.command === 'postscreen') skip(where, "postscreen's pregreet and DNSBL checks (maild's MX takes the connection directly)");
      if (!submission && isYes(main.get('smtpd_sasl_auth_enable')) && !svc.options.has('smtpd_sasl_auth_enable'))
        skip(`${mainLabel('smtpd_sasl_auth_enable')} on ${svc.service}`, 'maild takes AUTH on submission listeners only, never on the MX');
      for (const [k, v] of svc.options) {
        if (HARMLESS_SERVICE_OPTIONS.has(k) || k.endsWith('_restrictions')) continue;
        skip(`-o ${k}=${v} on ${svc.service} (master.cf line ${svc.line})`, 'no per-listener counterpart in maild');
      }
      listeners.push({
        comment,
        fields: [
          ['name', name],
          ['protocol', protocol],
          ['address', endpoint.host ?? defaultAddress],
          ['port', endpoint.port],
          ['tls', tls],
        ],
      });
    }
  }

  if (dovecot) {
    const protocols = dv('protocols');
    const enabled = new Set(protocols === undefined ? ['imap', 'pop3', 'lmtp'] : splitList(protocols));
    const listenList = splitList(dv('listen') ?? '*, ::');
    if (listenList.some((a) => a.includes(':')))
      skip(
        dv('listen') === undefined ? "listen = *, :: (Dovecot's default)" : dvLabel('listen'),
        'the IPv6 addresses: the listeners get 0.0.0.0; for IPv6 as well, make their address ["0.0.0.0", "::"]',
      );
    const listenAddress = interfaceAddress(
      listenList.map((a) => (a === '*' ? 'all' : a === '::' ? 'all' : a)),
      skip,
      dvLabel('listen'),
    );
    const sslSetting = dv('ssl') ?? 'yes';
    const dovecotListeners = (service: string, defaults: Record<string, { port: number; ssl: boolean }>) => {
      const sections = findSections(dovecot!, 'service', service);
      const inet = new Map<string, { port: number; ssl: boolean; address?: string; where: string }>(
        Object.entries(defaults).map(([n, d]) => [n, { ...d, where: `Dovecot's default inet_listener ${n}` }]),
      );
      for (const s of sections) {
        for (const l of findSections(s, 'inet_listener')) {
          const prev = inet.get(l.name);
          const port = setting(l, 'port');
          const ssl = setting(l, 'ssl');
          const address = setting(l, 'address');
          inet.set(l.name, {
            port: port !== undefined ? Number(port) : (prev?.port ?? 0),
            ssl: ssl !== undefined ? ssl === 'yes' : (prev?.ssl ?? false),
            ...(address ? { address } : {}),
            where: `service ${service} { inet_listener ${l.name} } (${rel(l.file)})`,
          });
        }
      }
      return [...inet].filter(([, l]) => l.port > 0);
    };
    for (const [protocol, service, defaults, ours] of [
      ['imap', 'imap-login', { imap: { port: 143, ssl: false }, imaps: { port: 993, ssl: true } }, 'imap'],
      ['pop3', 'pop3-login', { pop3: { port: 110, ssl: false }, pop3s: { port: 995, ssl: true } }, 'pop3'],
      // Pigeonhole's ManageSieve (protocols = ... sieve), RFC 5804's port 4190 with STARTTLS.
      ['sieve', 'managesieve-login', { sieve: { port: 4190, ssl: false } }, 'managesieve'],
    ] as const) {
      if (!enabled.has(protocol)) continue;
      for (const [name, l] of dovecotListeners(service, defaults)) {
        const tls = sslSetting === 'no' ? 'none' : l.ssl ? 'implicit' : 'starttls';
        if (sslSetting === 'no' && l.ssl) {
          skip(`${l.where}: ssl = yes`, 'ssl = no disables TLS');
          continue;
        }
        listeners.push({
          comment: [l.where],
          fields: [
            ['name', uniqueName(name)],
            ['protocol', ours],
            ['address', l.address ? firstAddress(l.address) : listenAddress],
            ['port', l.port],
            ['tls', tls],
          ],
        });
      }
    }
    for (const s of findSections(dovecot, 'service', 'submission-login')) {
      for (const l of findSections(s, 'inet_listener')) {
        if (Number(setting(l, 'port') ?? '587') > 0 && enabled.has('submission'))
          skip(
            `service submission-login { inet_listener ${l.name} }`,
            "Dovecot's submission proxy: maild's own submission listeners replace it",
          );
      }
    }

    // LMTP: the listeners Postfix delivered to.
    const transport = main ? main.get('virtual_transport') : '';
    const queueDir = main?.get('queue_directory') ?? '/var/spool/postfix';
    const transportTarget = lmtpTarget(transport, queueDir);
    for (const s of findSections(dovecot, 'service', 'lmtp')) {
      for (const l of findSections(s, 'unix_listener')) {
        const socketPath = l.name.startsWith('/') ? l.name : path.posix.join(dv('base_dir') ?? DOVECOT_BASE_DIR, l.name);
        const used = transportTarget?.path === socketPath;
        listeners.push({
          comment: [
            `service lmtp { unix_listener ${l.name} } (${rel(l.file)})${used ? `, Postfix's ${mainLabel('virtual_transport')}` : ''}`,
            `Dovecot made it mode ${setting(l, 'mode') ?? '0666'}${setting(l, 'user') ? ` for ${setting(l, 'user')}:${setting(l, 'group') ?? ''}` : ''}; maild creates it as its own user: give it a group the MTA shares`,
          ],
          fields: [
            ['name', uniqueName('lmtp')],
            ['protocol', 'lmtp'],
            ['path', socketPath],
            ['socket_mode', '0660'],
          ],
        });
      }
      for (const l of findSections(s, 'inet_listener')) {
        const port = Number(setting(l, 'port') ?? '0');
        if (!(port > 0)) continue;
        const address = setting(l, 'address') ? firstAddress(setting(l, 'address')!) : listenAddress;
        const used = transportTarget?.port === port;
        listeners.push({
          comment: [
            `service lmtp { inet_listener ${l.name} } (${rel(l.file)})${used ? `, Postfix's ${mainLabel('virtual_transport')}` : ''}`,
          ],
          fields: [
            ['name', uniqueName('lmtp')],
            ['protocol', 'lmtp'],
            ['address', address],
            ['port', port],
          ],
        });
      }
    }
  }

  // Postfix's SASL through Dovecot's auth socket.
  const saslEnabled =
    !!main &&
    (isYes(main.get('smtpd_sasl_auth_enable')) || (master ?? []).some((svc) => isYes(svc.options.get('smtpd_sasl_auth_enable') ?? '')));
  if (main && saslEnabled && main.get('smtpd_sasl_type') === 'dovecot') {
    const saslPath = main.get('smtpd_sasl_path');
    const queueDir = main.get('queue_directory');
    const inet = /^inet:(?:\[?([^\]]+)\]?:)?(\d+)$/.exec(saslPath);
    const comment = [`Postfix's ${mainLabel('smtpd_sasl_type')}, ${mainLabel('smtpd_sasl_path')}`];
    if (inet) {
      listeners.push({
        comment,
        fields: [
          ['name', uniqueName('dovecot-auth')],
          ['protocol', 'dovecot-auth'],
          ['address', inet[1] ?? '127.0.0.1'],
          ['port', Number(inet[2])],
        ],
      });
    } else {
      const socketPath = saslPath.startsWith('/') ? saslPath : path.posix.join(queueDir, saslPath);
      const served = dovecot && findSections(dovecot, 'unix_listener', socketPath).length > 0;
      if (served) comment.push(`Dovecot served it as service auth { unix_listener ${socketPath} }`);
      comment.push('maild creates it as its own user: give it a group Postfix shares');
      listeners.push({
        comment,
        fields: [
          ['name', uniqueName('dovecot-auth')],
          ['protocol', 'dovecot-auth'],
          ['path', socketPath],
          ['socket_mode', '0660'],
        ],
      });
    }
  } else if (main && saslEnabled && main.get('smtpd_sasl_type') !== 'dovecot') {
    skip(mainLabel('smtpd_sasl_type'), "maild's submission listeners authenticate against its directory, not through Cyrus SASL");
  }

  return listeners;
}

/** master.cf -o options that change nothing for maild (its submission listeners always need AUTH inside TLS). */
const HARMLESS_SERVICE_OPTIONS = new Set([
  'syslog_name',
  'smtpd_tls_security_level',
  'smtpd_sasl_auth_enable',
  'smtpd_tls_wrappermode',
  'smtpd_tls_auth_only',
  'smtpd_reject_unlisted_recipient',
  'milter_macro_daemon_name',
  'smtpd_sasl_type',
  'smtpd_sasl_path',
  'smtpd_sasl_security_options',
  'smtpd_enforce_tls',
  'smtpd_use_tls',
  'content_filter',
]);

/** The first address of a Postfix inet_interfaces or Dovecot listen list, as maild binds it. */
function interfaceAddress(list: string[], skip: (what: string, why: string) => void, label: string): string {
  if (list.length === 0 || list.includes('all')) return '0.0.0.0';
  const mapped = list.map((a) => (a === 'loopback-only' || a === 'localhost' ? '127.0.0.1' : a.replace(/^\[|\]$/g, '')));
  if (mapped.length > 1) skip(label, `${mapped[0]} was taken; a listener's address may list the others too`);
  return mapped[0]!;
}

function firstAddress(value: string): string {
  const first = splitList(value)[0] ?? '0.0.0.0';
  return first === '*' ? '0.0.0.0' : first.replace(/^\[|\]$/g, '');
}

/** Where Postfix's virtual_transport = lmtp:... delivered. */
function lmtpTarget(transport: string, queueDir: string): { path?: string; port?: number } | undefined {
  const m = /^lmtp:(?:(unix|inet):)?(.+)$/.exec(transport.trim());
  if (!m) return undefined;
  if (m[1] === 'inet' || (!m[1] && !m[2]!.includes('/'))) {
    const port = /:(\d+)$/.exec(m[2]!);
    return { port: port ? Number(port[1]) : 24 };
  }
  return { path: m[2]!.startsWith('/') ? m[2]! : path.posix.join(queueDir, m[2]!) };
}
