/**
 * The directory: the MySQL database Postfix's maps and Dovecot's SQL passdb read, and maild's
 * domain, user, alias, alias_domain and transport queries made from their queries.
 */
import { lookupScheme } from '../../directory/passwords/schemes.js';
import { allSettingValues, findSections, parseConnectString, parseKeyValueFile, setting, type DovecotSection } from './dovecot-conf.js';
import type { ImportContext } from './context.js';
import { parseMapReference, splitList } from './main-cf.js';
import { parseMysqlMap, type MysqlMap } from './postfix-map.js';
import { fromTable, isIdentityMap, selectColumns, translateDovecotQuery, translatePostfixQuery } from './queries.js';

export interface DbConnection {
  host?: string;
  port?: number;
  socket?: string;
  user?: string;
  password?: string;
  database?: string;
  /** Where it was read from. */
  source: string;
}

export interface DirectorySettings {
  connection?: DbConnection;
  queries: Array<{ key: string; value: string; comment: string[] }>;
  defaultScheme?: { value: string; from: string };
  /** Whether Dovecot's quota plugin was on (the user query then carries the quota). */
  quotaPlugin: boolean;
  /** Database users of Postfix's maps other than the one maild connects as. */
  otherUsers: string[];
}

export function importDirectory(ctx: ImportContext): DirectorySettings {
  const { main, dovecot, dv, dvLabel, rel, skip, locate, files } = ctx;
  const maps = (name: string): Array<{ ref: string; map?: MysqlMap; file?: string }> => {
    if (!main || !main.has(name)) return [];
    return splitList(main.get(name)).map((ref) => {
      const { type, name: file } = parseMapReference(ref);
      if (type !== 'mysql') return { ref };
      const text = files.read(file);
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
      const text = sqlFile ? files.read(sqlFile) : undefined;
      if (text === undefined) skip(`passdb sql args = ${argsFile}`, `${locate(sqlFile)} cannot be read`);
      else {
        const kv = parseKeyValueFile(text);
        const sqlDriver = kv.get('driver') ?? '';
        const userdbSql = userdbs.find((u) => driver(u) === 'sql');
        let userQuery = kv.get('user_query');
        if (userdbSql) {
          const userFile = (setting(userdbSql, 'args') ?? '').split(/\s+/).pop() ?? '';
          if (userFile && userFile !== sqlFile) userQuery = parseKeyValueFile(files.read(userFile) ?? '').get('user_query') ?? userQuery;
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

  const otherUsers = [
    ...new Set([...domainMaps, ...mailboxMaps, ...aliasMaps, ...aliasDomainMaps, ...transportMaps].map((m) => m.map?.user)),
  ].filter((u): u is string => !!u && u !== connection?.user);
  return {
    ...(connection ? { connection } : {}),
    queries,
    ...(defaultScheme ? { defaultScheme } : {}),
    quotaPlugin,
    otherUsers,
  };
}

function sameDatabase(map: MysqlMap, c: DbConnection): boolean {
  const norm = (h?: string) => (h === 'localhost' || h === '127.0.0.1' || h === '::1' || h === undefined ? 'local' : h);
  if (map.dbname !== c.database) return false;
  if (map.socket || c.socket) return norm(map.host) === 'local' && norm(c.host) === 'local';
  return norm(map.host) === norm(c.host) && (map.port ?? 3306) === (c.port ?? 3306);
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
