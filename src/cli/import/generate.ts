/**
 * `maild import`: reads an installation's Postfix and Dovecot configuration (through a
 * FileSource, so that this module does no I/O) and writes the equivalent maild.yaml, with every
 * setting that could not be carried over named at the top and returned for stderr.
 */
import path from 'node:path';
import { lookupScheme } from '../../directory/passwords/schemes.js';
import {
  findSections,
  fileValue,
  parseConnectString,
  parseDovecotConfig,
  parseKeyValueFile,
  setting,
  type DovecotSection,
  type FileSource,
} from './dovecot-conf.js';
import { isYes, parseMainCf, parseMapReference, splitList, type MainCf } from './main-cf.js';
import { inetEndpoint, parseMasterCf, type MasterService } from './master-cf.js';
import { parseMysqlMap, type MysqlMap } from './postfix-map.js';
import { fromTable, isIdentityMap, selectColumns, translateDovecotQuery, translatePostfixQuery } from './queries.js';

export interface ImportOptions {
  /** Postfix's configuration directory (main.cf, master.cf); undefined: no Postfix. */
  postfixDir?: string;
  /** Dovecot's configuration directory (dovecot.conf); undefined: no Dovecot. */
  dovecotDir?: string;
  files: FileSource;
  /** The environment variable the database password is read from. */
  passwordVariable?: string;
}

export interface ImportResult {
  yaml: string;
  /** "setting (file): reason" for everything that was not carried over. */
  notCarried: string[];
  /** The database password found in the configuration, for the operator's environment file. */
  databasePassword?: string;
}

export class ImportError extends Error {}

interface Listener {
  comment: string[];
  fields: Array<[string, string | number]>;
}

interface DbConnection {
  host?: string;
  port?: number;
  socket?: string;
  user?: string;
  password?: string;
  database?: string;
  /** Where it was read from. */
  source: string;
}

const DEFAULT_PASSWORD_VARIABLE = 'MAILD_DB_PASSWORD';
const SPECIAL_USES = new Set(['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash']);
/** Postfix's default base_dir-relative LMTP/auth sockets live in Dovecot's base_dir. */
const DOVECOT_BASE_DIR = '/run/dovecot';

/** A YAML scalar: plain when safe, otherwise a double-quoted (JSON) string, which YAML reads the same. */
function scalar(v: string | number): string {
  if (typeof v === 'number') return String(v);
  return /^[A-Za-z0-9_/.@-][A-Za-z0-9_/.@ -]*$/.test(v) &&
    !/^(yes|no|true|false|null|on|off|~)$/i.test(v) &&
    !/\s$/.test(v) &&
    !/^[\d.]+$/.test(v)
    ? v
    : JSON.stringify(v);
}

export function generateConfig(opts: ImportOptions): ImportResult {
  if (!opts.postfixDir && !opts.dovecotDir) throw new ImportError('give --postfix DIR, --dovecot DIR or both');
  const files = opts.files;
  const notCarried: string[] = [];
  const skip = (what: string, reason: string) => notCarried.push(`${what}: ${reason}`);
  const passwordVariable = opts.passwordVariable ?? DEFAULT_PASSWORD_VARIABLE;

  /** Absolute paths below /etc/postfix or /etc/dovecot are read from the directories given (a copy elsewhere works). */
  const locate = (p: string): string => {
    for (const [standard, given] of [
      ['/etc/postfix', opts.postfixDir],
      ['/etc/dovecot', opts.dovecotDir],
    ] as const) {
      if (given && (p === standard || p.startsWith(`${standard}/`))) return path.join(path.resolve(given), p.slice(standard.length));
    }
    return p;
  };
  const rebasedFiles: FileSource = { read: (f) => files.read(locate(f)), glob: (g) => files.glob(locate(g)) };

  // ---- Postfix ------------------------------------------------------------------------------
  let main: MainCf | undefined;
  let master: MasterService[] | undefined;
  if (opts.postfixDir) {
    const mainText = files.read(path.join(opts.postfixDir, 'main.cf'));
    if (mainText === undefined) throw new ImportError(`${path.join(opts.postfixDir, 'main.cf')}: cannot read`);
    main = parseMainCf(mainText);
    const masterText = files.read(path.join(opts.postfixDir, 'master.cf'));
    master = masterText === undefined ? undefined : parseMasterCf(masterText);
  }
  const mainLabel = (name: string) => `${name} = ${main!.raw(name)} (main.cf)`;

  // ---- Dovecot ------------------------------------------------------------------------------
  let dovecot: DovecotSection | undefined;
  if (opts.dovecotDir) dovecot = parseDovecotConfig(path.join(opts.dovecotDir, 'dovecot.conf'), rebasedFiles);
  const dv = (key: string) => (dovecot ? setting(dovecot, key) : undefined);
  const dvLabel = (key: string, section: DovecotSection | undefined = dovecot) => {
    const s = section?.settings.get(key);
    return s ? `${key} = ${s.value} (${rel(s.file) || s.file})` : key;
  };

  /** A Dovecot file's name relative to its directory when it is inside it. */
  const rel = (file: string) => {
    const r = path.relative(path.resolve(opts.dovecotDir ?? '/'), file);
    return r && !r.startsWith('..') ? r : file;
  };
  const out: string[] = [];
  const line = (text = '') => out.push(text);

  // ---- hostname -----------------------------------------------------------------------------
  const hostname = main?.has('myhostname') ? main.get('myhostname') : undefined;

  // ---- mail root ----------------------------------------------------------------------------
  let mailRoot: { root: string; layout: string; from: string } | undefined;
  let separator: string | undefined;
  if (dovecot) {
    const staticUserdb = findSections(dovecot, 'userdb').find((s) => (setting(s, 'driver') ?? s.name) === 'static');
    const staticArgs = new Map(
      (staticUserdb ? (setting(staticUserdb, 'args') ?? '') : '')
        .split(/\s+/)
        .filter((a) => a.includes('='))
        .map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] as const),
    );
    const location = dv('mail_location') || staticArgs.get('mail') || '';
    const label = dv('mail_location') ? dvLabel('mail_location') : `userdb static mail=${location}`;
    if (!location) skip('mail_location', 'not set (Dovecot guessed the mailbox format at run time); set mail.root and mail.layout by hand');
    else {
      const m = /^(\w+):(.*)$/.exec(location);
      const format = m?.[1] ?? '';
      const [rawPath = '', ...options] = (m?.[2] ?? '').split(':');
      if (format !== 'maildir')
        skip(
          label,
          `maild stores mail as Maildir only (${format || location} is not); convert the mailboxes first (doveadm sync -u USER maildir:...)`,
        );
      else {
        let mailPath = rawPath;
        if (mailPath.startsWith('~')) {
          const home = staticArgs.get('home');
          mailPath = home ? `${home.replace(/\/$/, '')}${mailPath.slice(1)}` : '';
        }
        const split = splitMailPath(mailPath);
        if (!split)
          skip(
            label,
            'the path has no per-user part maild can use (%d, %n or %u) or uses ~ without a static home; set mail.root and mail.layout by hand',
          );
        else mailRoot = { ...split, from: label };
        for (const option of options) {
          const [name] = option.split('=');
          if (name === 'INDEX') continue; // Dovecot's own index files; maild keeps its own.
          if (name === 'LAYOUT' && option === 'LAYOUT=maildir++') continue;
          skip(
            `${label} option ${option}`,
            name === 'CONTROL'
              ? 'dovecot-uidlist lives in that directory, maild reads it from the Maildir (clients would see new UIDs)'
              : name === 'LAYOUT'
                ? "maild keeps folders in Maildir++ layout (.Folder), not Dovecot's LAYOUT=fs"
                : 'maild has no such option',
          );
        }
      }
    }
    const inbox =
      findSections(dovecot, 'namespace').find((n) => setting(n, 'inbox') === 'yes') ?? findSections(dovecot, 'namespace', 'inbox')[0];
    const prefix = inbox && setting(inbox, 'prefix');
    if (prefix) skip(dvLabel('prefix', inbox), `maild's folders have no prefix: clients will see "${prefix}Sent" as "Sent"`);
    const sep = inbox && setting(inbox, 'separator');
    if (sep) {
      if (sep === '.' || sep === '/') separator = sep;
      else skip(dvLabel('separator', inbox), 'maild offers "." or "/" as the hierarchy separator');
    }
    for (const ns of findSections(dovecot, 'namespace')) {
      if (ns === inbox) continue;
      skip(`namespace ${ns.name} (${rel(ns.file)})`, 'maild has one private namespace; shared and public namespaces are not served');
    }
  }

  // ---- special folders ----------------------------------------------------------------------
  const specialFolders: Array<[string, string, string]> = [];
  if (dovecot) {
    const inbox = findSections(dovecot, 'namespace').find((n) => setting(n, 'inbox') === 'yes');
    for (const mailbox of inbox ? findSections(inbox, 'mailbox') : []) {
      const uses = (setting(mailbox, 'special_use') ?? '').split(/\s+/).filter(Boolean);
      const auto = setting(mailbox, 'auto') ?? 'no';
      if (uses.length === 0) {
        if (auto !== 'no')
          skip(`mailbox ${mailbox.name} { auto = ${auto} }`, 'maild creates only folders with a special use on first login');
        continue;
      }
      const use = uses.find((u) => SPECIAL_USES.has(u));
      if (!use) {
        skip(
          `mailbox ${mailbox.name} { special_use = ${uses.join(' ')} }`,
          'maild knows \\All, \\Archive, \\Drafts, \\Flagged, \\Junk, \\Sent, \\Trash',
        );
        continue;
      }
      if (uses.length > 1)
        skip(`mailbox ${mailbox.name} { special_use = ${uses.join(' ')} }`, `maild gives a folder one special use; ${use} was kept`);
      specialFolders.push([mailbox.name, use, auto]);
    }
  }

  // ---- listeners ----------------------------------------------------------------------------
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
        'IPv6: maild\'s listeners bind one address each (0.0.0.0 here); add listeners on "::" for IPv6',
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
        'the IPv6 addresses: maild\'s listeners bind one address each; add listeners on "::" for IPv6',
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
    for (const [protocol, service, defaults] of [
      ['imap', 'imap-login', { imap: { port: 143, ssl: false }, imaps: { port: 993, ssl: true } }],
      ['pop3', 'pop3-login', { pop3: { port: 110, ssl: false }, pop3s: { port: 995, ssl: true } }],
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
            ['protocol', protocol],
            ['address', l.address ? firstAddress(l.address) : listenAddress],
            ['port', l.port],
            ['tls', tls],
          ],
        });
      }
    }
    if (enabled.has('sieve')) skip(`${dvLabel('protocols')}: sieve`, 'ManageSieve (and Sieve filtering) are not part of maild');
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

  if (listeners.length === 0) throw new ImportError('no listener found to carry over (no smtpd in master.cf and no Dovecot service)');

  // ---- TLS ----------------------------------------------------------------------------------
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

  // ---- directory: the database and its queries ------------------------------------------------
  const maps = (name: string): Array<{ ref: string; map?: MysqlMap; file?: string }> => {
    if (!main || !main.has(name)) return [];
    return splitList(main.get(name)).map((ref) => {
      const { type, name: file } = parseMapReference(ref);
      if (type !== 'mysql') return { ref };
      const text = files.read(locate(file));
      if (text === undefined) {
        skip(`${name} = ${ref}`, `${locate(file)} cannot be read`);
        return { ref, file };
      }
      return { ref, map: parseMysqlMap(text), file };
    });
  };

  // Dovecot's SQL passdb and userdb.
  let dovecotSql:
    { passwordQuery?: string; userQuery?: string; defaultScheme?: string; connection?: DbConnection; file: string } | undefined;
  if (dovecot) {
    const passdbs = findSections(dovecot, 'passdb');
    const userdbs = findSections(dovecot, 'userdb');
    const driver = (s: DovecotSection) => setting(s, 'driver') ?? s.name;
    const sqlPassdb = passdbs.find((p) => driver(p) === 'sql');
    for (const p of passdbs) {
      if (p === sqlPassdb) continue;
      skip(
        `passdb { driver = ${driver(p)}${setting(p, 'args') ? `, args = ${setting(p, 'args')}` : ''} } (${rel(p.file)})`,
        driver(p) === 'sql'
          ? 'maild reads one user query; this second SQL passdb was not used'
          : `maild reads passwords from MySQL; ${driver(p)} passdbs are not read`,
      );
    }
    for (const u of userdbs) {
      const d = driver(u);
      if (d === 'static' || d === 'sql' || d === 'prefetch') continue;
      skip(`userdb { driver = ${d} } (${rel(u.file)})`, `maild takes users from MySQL; a ${d} userdb is not read`);
    }
    if (sqlPassdb) {
      const argsFile = setting(sqlPassdb, 'args') ?? '';
      const sqlFile = argsFile.split(/\s+/).pop() ?? '';
      const text = sqlFile ? rebasedFiles.read(sqlFile) : undefined;
      if (text === undefined) skip(`passdb sql args = ${argsFile}`, `${locate(sqlFile)} cannot be read`);
      else {
        const kv = parseKeyValueFile(text);
        const sqlDriver = kv.get('driver') ?? '';
        const userdbSql = userdbs.find((u) => driver(u) === 'sql');
        let userQuery = kv.get('user_query');
        if (userdbSql) {
          const userFile = (setting(userdbSql, 'args') ?? '').split(/\s+/).pop() ?? '';
          if (userFile && userFile !== sqlFile)
            userQuery = parseKeyValueFile(rebasedFiles.read(userFile) ?? '').get('user_query') ?? userQuery;
        } else userQuery = undefined;
        if (sqlDriver !== 'mysql') skip(`driver = ${sqlDriver} (${sqlFile})`, 'maild reads MySQL/MariaDB databases only');
        else {
          const c = parseConnectString(kv.get('connect') ?? '');
          const host = c.get('host');
          dovecotSql = {
            ...(kv.get('password_query') ? { passwordQuery: kv.get('password_query')! } : {}),
            ...(userQuery ? { userQuery } : {}),
            ...(kv.get('default_pass_scheme') ? { defaultScheme: kv.get('default_pass_scheme')! } : {}),
            connection: {
              ...(host?.startsWith('/') ? { socket: host } : host ? { host } : {}),
              ...(c.get('port') ? { port: Number(c.get('port')) } : {}),
              ...(c.get('user') ? { user: c.get('user')! } : {}),
              ...(c.get('password') !== undefined ? { password: c.get('password')! } : {}),
              ...(c.get('dbname') ? { database: c.get('dbname')! } : {}),
              source: sqlFile,
            },
            file: sqlFile,
          };
          for (const k of c.keys()) {
            if (!['host', 'port', 'user', 'password', 'dbname'].includes(k))
              skip(
                `connect = ... ${k}=... (${sqlFile})`,
                'maild connects without it (TLS and option files to the database are not carried over)',
              );
          }
        }
      }
    }
    const usernameFormat = dv('auth_username_format');
    if (usernameFormat !== undefined && usernameFormat !== '%Lu' && usernameFormat !== '%u')
      skip(dvLabel('auth_username_format'), 'maild logs users in with their full address as it is (lower-cased)');
  }

  const mailboxMaps = maps('virtual_mailbox_maps');
  const domainMaps = main && main.has('virtual_mailbox_domains') ? maps('virtual_mailbox_domains') : [];
  const aliasMaps = maps('virtual_alias_maps');
  const aliasDomainMaps = main && main.has('virtual_alias_domains') ? maps('virtual_alias_domains') : [];
  const transportMaps = maps('transport_maps');

  const firstPostfixEntry = [...domainMaps, ...mailboxMaps, ...aliasMaps, ...transportMaps].find((m) => m.map);
  const firstPostfixMap = firstPostfixEntry?.map;
  const connection: DbConnection | undefined =
    dovecotSql?.connection ??
    (firstPostfixMap
      ? {
          ...(firstPostfixMap.host ? { host: firstPostfixMap.host } : {}),
          ...(firstPostfixMap.port ? { port: firstPostfixMap.port } : {}),
          ...(firstPostfixMap.socket ? { socket: firstPostfixMap.socket } : {}),
          ...(firstPostfixMap.user ? { user: firstPostfixMap.user } : {}),
          ...(firstPostfixMap.password !== undefined ? { password: firstPostfixMap.password } : {}),
          ...(firstPostfixMap.dbname ? { database: firstPostfixMap.dbname } : {}),
          source: firstPostfixEntry!.file!,
        }
      : undefined);

  /** A Postfix map's query in maild's syntax, or undefined (and named) when it cannot be used. */
  const usableMapQuery = (setting: string, m: { ref: string; map?: MysqlMap; file?: string }): string | undefined => {
    const label = `${setting} = ${m.ref}`;
    if (!m.map) {
      const type = parseMapReference(m.ref).type;
      if (!m.file)
        skip(
          label,
          type === 'file' && !m.ref.includes('/')
            ? 'maild reads MySQL only; names listed in main.cf are not read (add them to the database)'
            : `maild reads MySQL only; a ${type} table is not read (move its entries into the database)`,
        );
      return undefined;
    }
    if (!connection || !sameDatabase(m.map, connection)) {
      skip(
        label,
        `it reads ${m.map.dbname ?? '?'} on ${m.map.socket ?? m.map.host ?? '?'}; maild reads one database (${connection?.database} on ${connection?.socket ?? connection?.host})`,
      );
      return undefined;
    }
    if (!m.map.query) {
      skip(label, 'no query in the file');
      return undefined;
    }
    for (const [k, v] of m.map.unused) skip(`${k} = ${v} (${m.file})`, "no counterpart in maild's queries");
    if (m.map.otherHosts.length) skip(`hosts = ... ${m.map.otherHosts.join(' ')} (${m.file})`, 'maild connects to one database server');
    const t = translatePostfixQuery(m.map.query);
    if (!t.ok) {
      skip(label, t.reason);
      return undefined;
    }
    return t.query;
  };
  const union = (queries: string[]) => (queries.length === 1 ? queries[0]! : queries.map((q) => `(${q})`).join(' UNION ALL '));

  const queries: Array<{ key: string; value: string; comment: string[] }> = [];
  let aliasDomainQuery: { value: string; comment: string } | undefined;
  const isPostfixAdminAliasDomain = (q: string) => /\balias_domain\b/i.test(q) && /\btarget_domain\b/i.test(q);
  const noteAliasDomain = (q: string, where: string) => {
    aliasDomainQuery ??= {
      value: `SELECT target_domain FROM alias_domain WHERE alias_domain = '%s'${/\bactive\b/i.test(q) ? " AND active = '1'" : ''}`,
      comment: `PostfixAdmin's alias_domain table (${where}): maild maps alias domains itself`,
    };
  };

  // domain
  if (main) {
    const domainQueries: string[] = [];
    const domainComments: string[] = [];
    if (!main.has('virtual_mailbox_domains'))
      skip('virtual_mailbox_domains', 'not set (Postfix then used virtual_mailbox_maps); set directory.mysql.queries.domain by hand');
    for (const m of domainMaps) {
      const q = usableMapQuery('virtual_mailbox_domains', m);
      if (q) {
        domainQueries.push(q);
        domainComments.push(`virtual_mailbox_domains: ${m.ref}`);
      }
    }
    for (const m of aliasDomainMaps) {
      const q = usableMapQuery('virtual_alias_domains', m);
      if (!q) continue;
      if (isPostfixAdminAliasDomain(q) || fromTable(q) === 'alias_domain') {
        noteAliasDomain(q, `virtual_alias_domains = ${m.ref}`);
        continue;
      }
      domainQueries.push(q);
      domainComments.push(`virtual_alias_domains: ${m.ref} (alias-only domains are hosted domains to maild)`);
    }
    if (domainQueries.length) queries.push({ key: 'domain', value: union(domainQueries), comment: domainComments });
  }

  // user
  const mailboxQueries: Array<{ ref: string; query: string }> = [];
  const aliasDomainMailboxMaps: string[] = [];
  for (const m of mailboxMaps) {
    const q = usableMapQuery('virtual_mailbox_maps', m);
    if (!q) continue;
    if (isPostfixAdminAliasDomain(q)) {
      noteAliasDomain(q, `virtual_mailbox_maps = ${m.ref}`);
      aliasDomainMailboxMaps.push(m.ref);
    } else mailboxQueries.push({ ref: m.ref, query: q });
  }
  const quotaPlugin = dovecot ? /\bquota\b/.test(allSettingValues(dovecot, 'mail_plugins')) : false;
  if (dovecotSql?.passwordQuery) {
    const t = translateDovecotQuery(dovecotSql.passwordQuery);
    const label = `password_query (${dovecotSql.file})`;
    if (!t.ok) skip(label, t.reason);
    else {
      const columns = selectColumns(t.query);
      if (!columns.some((c) => c.name === 'password')) skip(label, 'it returns no column named password');
      else {
        let query = t.query;
        const comment = [`Dovecot's password_query (${dovecotSql.file}): the mailbox and its password`];
        for (const m of mailboxQueries) comment.push(`replaces Postfix's virtual_mailbox_maps = ${m.ref}: ${m.query}`);
        for (const ref of aliasDomainMailboxMaps) comment.push(`(${ref}: alias domains, see alias_domain)`);
        const quota = quotaPlugin ? quotaColumn(dovecotSql, t.query) : undefined;
        if (quota?.expression) {
          query = query.replace(/\s+FROM\s/i, `, ${quota.expression} AS quota FROM `);
          comment.push(`quota from ${quota.from}, in bytes`);
        } else if (quota?.reason) skip(quota.from, quota.reason);
        else if (quotaPlugin)
          skip('mail_plugins quota', 'no per-user quota_rule column in the SQL queries; give the user query a quota column (bytes)');
        queries.push({ key: 'user', value: query, comment });
      }
    }
    if (dovecotSql.userQuery && !quotaPlugin) {
      const extra = selectColumns(dovecotSql.userQuery)
        .map((c) => c.name)
        .filter((n) => n && !['home', 'mail', 'uid', 'gid', 'user', 'username', 'email', 'quota_rule', 'userdb_quota_rule'].includes(n));
      if (extra.length) skip(`user_query columns ${extra.join(', ')} (${dovecotSql.file})`, 'per-user settings maild does not have');
    }
  }
  if (!queries.some((q) => q.key === 'user') && mailboxQueries.length) {
    const first = mailboxQueries[0]!;
    queries.push({
      key: 'user',
      value: `SELECT '%s' AS email, NULL AS password FROM (${first.query}) AS mailbox`,
      comment: [
        `Postfix's virtual_mailbox_maps = ${first.ref}: mailboxes without passwords (maild found no SQL passdb`,
        'with passwords in this database): mail is delivered, logins fail until the user query returns a password column',
      ],
    });
    skip('passwords', 'no Dovecot SQL password_query in the same database; the user query returns no password, so nobody can log in');
  }

  // alias
  const aliasQueries: string[] = [];
  const aliasComments: string[] = [];
  for (const m of aliasMaps) {
    const q = usableMapQuery('virtual_alias_maps', m);
    if (!q) continue;
    if (isIdentityMap(q)) {
      aliasComments.push(`(${m.ref} maps each mailbox to itself so that catch-alls do not shadow mailboxes; maild does that itself)`);
      continue;
    }
    if (isPostfixAdminAliasDomain(q)) {
      noteAliasDomain(q, `virtual_alias_maps = ${m.ref}`);
      aliasComments.push(`(${m.ref}: alias domains, see alias_domain)`);
      continue;
    }
    aliasQueries.push(q);
    aliasComments.unshift(`virtual_alias_maps: ${m.ref}`);
  }
  if (aliasQueries.length) queries.push({ key: 'alias', value: union(aliasQueries), comment: aliasComments });
  else if (main && connection) {
    // maild's default alias query reads the tutorials' table; an installation without aliases must not get it.
    queries.push({
      key: 'alias',
      value: "SELECT NULL FROM DUAL WHERE '%s' = ''",
      comment: ['no alias table: this query never returns a row', ...aliasComments],
    });
  }
  if (aliasDomainQuery) queries.push({ key: 'alias_domain', value: aliasDomainQuery.value, comment: [aliasDomainQuery.comment] });

  // transport
  const transportQueries = transportMaps.map((m) => usableMapQuery('transport_maps', m)).filter((q): q is string => !!q);
  if (transportQueries.length)
    queries.push({
      key: 'transport',
      value: transportQueries[0]!,
      comment: [`transport_maps: ${transportMaps[0]!.ref} (maild looks up the domain; values in Postfix syntax, smtp: next hops only)`],
    });
  for (const extra of transportQueries.slice(1)) skip(`transport_maps query ${extra}`, 'maild reads one transport query');

  // ---- password scheme ------------------------------------------------------------------------
  let defaultScheme: { value: string; from: string } | undefined;
  if (dovecotSql) {
    // Dovecot's default for SQL passdbs is MD5-CRYPT.
    const scheme = (dovecotSql.defaultScheme ?? 'MD5-CRYPT').toUpperCase();
    const from = dovecotSql.defaultScheme
      ? `default_pass_scheme = ${dovecotSql.defaultScheme} (${dovecotSql.file})`
      : "Dovecot's default_pass_scheme for SQL";
    if (lookupScheme(scheme)) defaultScheme = { value: scheme, from };
    else skip(from, `maild does not verify ${scheme} hashes`);
  }

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
      const extra = restrictionItems(main.get(name)).filter((r) => !STANDARD_RESTRICTIONS.has(r));
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
      skip(`mail_plugins ${plugin}`, plugin === 'sieve' ? 'Sieve filtering is not part of maild yet' : 'maild has no plugins');
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

  // ---- write it out ---------------------------------------------------------------------------
  const sources = [opts.postfixDir && `Postfix (${opts.postfixDir})`, opts.dovecotDir && `Dovecot (${opts.dovecotDir})`]
    .filter(Boolean)
    .join(' and ');
  line(`# maild configuration generated by \`maild import\` from ${sources}.`);
  line('# Check it with `maild --config THIS_FILE check-config`; each setting names where it came from.');
  line('#');
  if (notCarried.length) {
    line('# not carried over:');
    for (const n of notCarried) line(`#   - ${n}`);
  } else line('# not carried over: nothing');
  line('');
  if (hostname) {
    line(`# ${mainLabel('myhostname')}`);
    line(`hostname: ${scalar(hostname)}`);
    line('');
  }
  line('# Generated state (a self-signed certificate when tls is not set, DKIM keys).');
  line('data_dir: /var/lib/maild');
  line('');
  if (mailRoot) {
    line(`# ${mailRoot.from}`);
    line("# Run maild as the user that owns these Maildirs (Dovecot's mail_uid / userdb uid, e.g. vmail).");
    line('mail:');
    line(`  root: ${scalar(mailRoot.root)}`);
    line(`  layout: ${scalar(mailRoot.layout)}`);
    line('');
  }
  line('# The listeners of both servers as they were. If Postfix stays in front of maild, keep lmtp and');
  line('# dovecot-auth and drop the smtp and submission ones (Postfix keeps those ports); if maild replaces');
  line('# both, drop lmtp and dovecot-auth.');
  line('listeners:');
  for (const l of listeners) {
    for (const c of l.comment) line(`  # ${c}`);
    l.fields.forEach(([k, v], i) => line(`  ${i === 0 ? '- ' : '  '}${k}: ${scalar(v)}`));
  }
  line('');
  if (tls) {
    line(`# ${tls.from}`);
    line('tls:');
    line(`  cert: ${scalar(tls.cert)}`);
    line(`  key: ${scalar(tls.key)}`);
    line('');
  }
  let databasePassword: string | undefined;
  if (connection) {
    line('directory:');
    line('  backend: mysql');
    if (delimiter) {
      line(`  # ${delimiter.comment}`);
      line(`  recipient_delimiter: ${JSON.stringify(delimiter.value)}`);
    }
    line(`  # The connection of ${connection.source}`);
    const otherUsers = [
      ...new Set([...domainMaps, ...mailboxMaps, ...aliasMaps, ...aliasDomainMaps, ...transportMaps].map((m) => m.map?.user)),
    ].filter((u): u is string => !!u && u !== connection.user);
    if (otherUsers.length)
      line(`  # (Postfix's maps read as ${otherUsers.join(', ')}: give ${connection.user ?? 'this user'} SELECT on their tables too.)`);
    line('  mysql:');
    if (connection.socket) line(`    socket: ${scalar(connection.socket)}`);
    else if (connection.host === 'localhost') {
      line('    # "localhost": the MySQL client library connected through the server\'s unix socket.');
      line('    socket: /run/mysqld/mysqld.sock');
    } else line(`    host: ${scalar(connection.host ?? 'localhost')}`);
    if (connection.port && !connection.socket) line(`    port: ${connection.port}`);
    if (connection.user) line(`    user: ${scalar(connection.user)}`);
    if (connection.password) {
      databasePassword = connection.password;
      line(`    # The password (in ${connection.source}) is read from the environment, not written here: put`);
      line(`    # ${passwordVariable}=... in a file only root can read (chmod 600), e.g. /etc/maild/maild.env loaded`);
      line("    # with systemd's EnvironmentFile=.");
      line(`    password: \${${passwordVariable}}`);
    }
    if (connection.database) line(`    database: ${scalar(connection.database)}`);
    if (queries.length) {
      line('    queries:');
      for (const q of queries) {
        for (const c of q.comment) line(`      # ${c}`);
        line(`      ${q.key}: ${JSON.stringify(q.value)}`);
      }
    }
    line('');
  } else {
    line('# No MySQL directory was found to carry over: the YAML directory file is used.');
    line('directory:');
    line('  backend: file');
    if (delimiter) {
      line(`  # ${delimiter.comment}`);
      line(`  recipient_delimiter: ${JSON.stringify(delimiter.value)}`);
    }
    line('');
  }
  if (defaultScheme) {
    line('passwords:');
    line(`  # ${defaultScheme.from}: for stored hashes without a {SCHEME} prefix`);
    line(`  default_scheme: ${scalar(defaultScheme.value)}`);
    line('');
  }
  if (messageSize) {
    line('limits:');
    line(`  # ${messageSize.comment}`);
    line(`  message_size: ${messageSize.value}`);
    line('');
  }
  if (cleartext) {
    line('auth:');
    line(`  # ${cleartext.comment}`);
    line(`  cleartext: ${cleartext.value}`);
    line('');
  }
  if (separator || specialFolders.length || userIpConnections) {
    line('imap:');
    if (userIpConnections) {
      line(`  # ${userIpConnections.comment}`);
      line(`  connections_per_user_ip: ${userIpConnections.value}`);
    }
    if (separator) {
      line(`  # namespace inbox { separator = ${separator} }`);
      line(`  hierarchy_separator: ${JSON.stringify(separator)}`);
    }
    if (specialFolders.length) {
      line("  # namespace inbox { mailbox ... { special_use } }: maild creates these on first login (Dovecot's auto = subscribe)");
      line('  special_folders:');
      for (const [name, use, auto] of specialFolders)
        line(`    ${JSON.stringify(name)}: ${JSON.stringify(use)}${auto === 'no' ? '  # auto = no in Dovecot' : ''}`);
    }
    line('');
  }
  if (relayhost || queueTls) {
    line('queue:');
    if (relayhost) {
      line(`  # ${mainLabel('relayhost')}`);
      line(`  relayhost: ${JSON.stringify(relayhost)}`);
    }
    if (queueTls) {
      line(`  # ${mainLabel('smtp_tls_security_level')}`);
      line(`  tls: ${queueTls}`);
    }
    line('');
  }
  if (trustedNetworks.length) {
    line(`# ${mainLabel('mynetworks')}: may relay without a login`);
    line('trusted_networks:');
    for (const n of trustedNetworks) line(`  - ${JSON.stringify(n)}`);
  }
  return { yaml: `${out.join('\n').trimEnd()}\n`, notCarried, ...(databasePassword !== undefined ? { databasePassword } : {}) };
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
  ['smtpd_milters', 'maild has no milter client yet; mail is not filtered'],
  ['non_smtpd_milters', 'maild has no milter client yet'],
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
  ['postscreen_dnsbl_sites', 'maild does no DNSBL checks yet'],
  ['smtpd_proxy_filter', 'maild has no before-queue proxy filter'],
  ['virtual_mailbox_limit', 'maild limits each mailbox by its quota only'],
  ['smtpd_client_connection_rate_limit', 'maild limits connections per address (limits.connections_per_ip), not their rate'],
];

/** A restriction list's items, each with its argument (`reject_rbl_client zen.spamhaus.org`). */
function restrictionItems(value: string): string[] {
  const words = splitList(value);
  const items: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const takesArgument = /^(check_|reject_rbl_client|reject_rhsbl_|reject_dnsbl|permit_dnswl_client|permit_rhswl_client)/.test(w);
    items.push(takesArgument && i + 1 < words.length ? `${w} ${words[++i]}` : w);
  }
  return items;
}

/** The first address of a Postfix inet_interfaces or Dovecot listen list, as maild binds it. */
function interfaceAddress(list: string[], skip: (what: string, why: string) => void, label: string): string {
  if (list.length === 0 || list.includes('all')) return '0.0.0.0';
  const mapped = list.map((a) => (a === 'loopback-only' || a === 'localhost' ? '127.0.0.1' : a.replace(/^\[|\]$/g, '')));
  if (mapped.length > 1) skip(label, `maild's listener binds one address; ${mapped[0]} was taken`);
  return mapped[0]!;
}

function firstAddress(value: string): string {
  const first = splitList(value)[0] ?? '0.0.0.0';
  return first === '*' ? '0.0.0.0' : first.replace(/^\[|\]$/g, '');
}

/** Dovecot's `%d/%n` path variables as maild's layout has them (%d, %n, %u). */
const LAYOUT_VARS: Record<string, string> = { d: '%d', n: '%n', u: '%u', '{domain}': '%d', '{username}': '%n', '{user}': '%u' };

/** /var/mail/vhosts/%d/%n → root /var/mail/vhosts, layout %d/%n; undefined without a per-user part. */
export function splitMailPath(mailPath: string): { root: string; layout: string } | undefined {
  const parts = mailPath.replace(/\/+$/, '').split('/');
  const first = parts.findIndex((p) => p.includes('%'));
  if (first <= 0) return undefined;
  let ok = true;
  const layout = parts
    .slice(first)
    .map((p) =>
      p.replace(/%L?(\{[a-z]+\}|[a-zA-Z%])/g, (whole, v: string) => {
        const mapped = LAYOUT_VARS[v];
        if (!mapped) ok = false;
        return mapped ?? whole;
      }),
    )
    .join('/');
  if (!ok || !/%[dnu]/.test(layout) || /%(?![dnu])/.test(layout)) return undefined;
  return { root: parts.slice(0, first).join('/') || '/', layout };
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

function sameDatabase(map: MysqlMap, c: DbConnection): boolean {
  const norm = (h?: string) => (h === 'localhost' || h === '127.0.0.1' || h === '::1' || h === undefined ? 'local' : h);
  if (map.dbname !== c.database) return false;
  if (map.socket || c.socket) return norm(map.host) === 'local' && norm(c.host) === 'local';
  return norm(map.host) === norm(c.host) && (map.port ?? 3306) === (c.port ?? 3306);
}

/** Every value of a setting anywhere in the configuration (mail_plugins is set per protocol). */
function allSettingValues(section: DovecotSection, key: string): string {
  const values = [setting(section, key) ?? ''];
  for (const s of section.sections) values.push(allSettingValues(s, key));
  return values.filter(Boolean).join(' ');
}

/**
 * The quota in bytes as an SQL expression, from a quota_rule column of the user or password
 * query (`CONCAT('*:bytes=', quota)`, `CONCAT('*:storage=', quota, 'M')`; storage without a
 * unit is in kilobytes), when it reads the same table as the password query.
 */
function quotaColumn(
  sql: { passwordQuery?: string; userQuery?: string; file: string },
  passwordQuery: string,
): { expression?: string; reason?: string; from: string } | undefined {
  for (const [name, query] of [
    ['password_query', passwordQuery],
    ['user_query', sql.userQuery],
  ] as const) {
    if (!query) continue;
    const column = selectColumns(query).find((c) => c.name === 'quota_rule' || c.name === 'userdb_quota_rule');
    if (!column) continue;
    const from = `${name} ${column.name} (${sql.file})`;
    if (name === 'user_query' && fromTable(query) !== fromTable(passwordQuery))
      return { from, reason: 'it reads another table than password_query' };
    const m = /CONCAT\s*\(\s*'\*:(bytes|storage)='\s*,\s*([`A-Za-z0-9_.]+)\s*(?:,\s*'([BKMGT]?)'\s*)?\)/i.exec(column.expression);
    if (!m) return { from, reason: "its form is not one maild can convert (CONCAT('*:bytes=', column) or '*:storage=')" };
    const unit = m[1]!.toLowerCase() === 'bytes' ? 'B' : (m[3] ?? 'K').toUpperCase() || 'K';
    const factor = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[unit]!;
    return { expression: factor === 1 ? m[2]! : `${m[2]!} * ${factor}`, from };
  }
  return undefined;
}
