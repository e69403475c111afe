/**
 * The MySQL/MariaDB directory. Lookups run the configured queries, written like Postfix's
 * mysql_table(5) `query =` lines, so an existing database (the tutorials' virtual_* tables,
 * PostfixAdmin's domain/mailbox/alias tables) is used as it is. Placeholders become bound
 * parameters, never text. The admin methods (CLI) write the tutorials' schema (migrations/).
 */
import { createPool, type Pool, type PoolConnection, type ResultSetHeader, type RowDataPacket } from 'mysql2/promise';
import { parseSize, type MysqlConfig } from '../config/schema.js';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';
import { addressKey, isUnsafeDomain, isUnsafeLocalPart, splitAddress } from './address.js';
import { isUsableTransport } from './directory.js';
import { migrate, type MigrateOptions, type MigrateResult } from './mysql-migrate.js';
import type { AliasRecord, DirectoryAdmin, DirectorySource, DomainRecord, NewUser, UserRecord, VacationRecord } from './types.js';

export type QueryName = 'domain' | 'user' | 'alias' | 'alias_domain' | 'transport' | 'vacation' | 'update_password';
type Part = 's' | 'u' | 'd' | 'p';
type SqlValue = string | number | null;

const LOOKUP_QUERIES = ['domain', 'user', 'alias', 'alias_domain', 'transport', 'vacation'] as const;

/**
 * The default user query on the tutorials' virtual_users table, with the optional columns the
 * table has: no quota column means no quota, no enable column means every mailbox is enabled.
 */
function defaultUserQuery(columns: ReadonlySet<string>): string {
  const selected = ['email', 'password'];
  if (columns.has('quota')) selected.push('quota');
  if (columns.has('enable')) selected.push('`enable`');
  return `SELECT ${selected.join(', ')} FROM virtual_users WHERE email = '%s'`;
}

/** The default update_password query, used with the default user query. */
const DEFAULT_UPDATE_PASSWORD_QUERY = "UPDATE virtual_users SET password = '%p' WHERE email = '%s'";

/** What verify() found: the queries in force (with the defaults filled in) and problems that do not stop a start. */
export interface VerifyReport {
  queries: Array<{ name: QueryName; text: string; isDefault: boolean }>;
  warnings: string[];
}

export interface CompiledQuery {
  name: QueryName;
  /** The statement with `?` for each placeholder. */
  sql: string;
  /** What each `?` is bound to: the whole key, its local part, its domain, the new password hash. */
  params: Part[];
  /** The query as configured (or the default's text). */
  text?: string;
  /** Not configured: a default on the tutorials' tables. */
  isDefault?: boolean;
}

/**
 * mysql_table(5): %s the key, %u the local part, %d the domain, %% a percent sign; the upper-case
 * forms are the same in a query. %n is Dovecot's name for the local part. %p (update_password
 * only): the new password hash.
 */
const PLACEHOLDERS: Record<string, Part> = { s: 's', S: 's', u: 'u', U: 'u', n: 'u', d: 'd', D: 'd', p: 'p' };

function invalid(name: string, message: string, isDefault = false): MailError {
  const what = isDefault ? ` (not set: the default on the tutorials' virtual_* tables)` : '';
  return new MailError('CONFIG_INVALID', `directory.mysql.queries.${name}${what}: ${message}`);
}

/**
 * Turns a Postfix-style query into a prepared statement: `'%s'` and `%s` become `?`; a quoted
 * literal mixing text and placeholders (`'%u@%d'`) becomes CONCAT('…', ?, …). Unknown
 * placeholders and bare `?` are refused.
 */
export function compileQuery(name: QueryName, text: string): CompiledQuery {
  const params: Part[] = [];
  let sql = '';
  let i = 0;
  const n = text.length;
  const placeholder = (at: number): Part | '%' => {
    const ch = text[at + 1];
    if (ch === '%') return '%';
    const part = ch === undefined ? undefined : PLACEHOLDERS[ch];
    const known = name === 'update_password' ? '%s, %u, %n, %d, %p or %%' : '%s, %u, %n, %d or %%';
    if (!part || (part === 'p' && name !== 'update_password')) throw invalid(name, `unknown placeholder %${ch ?? ''} (use ${known})`);
    return part;
  };
  while (i < n) {
    const c = text[i]!;
    if (c === "'" || c === '"') {
      // A string literal: copy it, splitting it where placeholders are.
      const pieces: Array<string | Part> = [];
      let cur = '';
      let j = i + 1;
      for (;;) {
        if (j >= n) throw invalid(name, 'unterminated string literal');
        const ch = text[j]!;
        if (ch === '\\' && j + 1 < n) {
          cur += ch + text[j + 1];
          j += 2;
        } else if (ch === c && text[j + 1] === c) {
          cur += ch + ch;
          j += 2;
        } else if (ch === c) {
          break;
        } else if (ch === '%') {
          const p = placeholder(j);
          if (p === '%') cur += '%';
          else {
            if (cur) pieces.push(`${c}${cur}${c}`);
            cur = '';
            pieces.push(p);
          }
          j += 2;
        } else {
          cur += ch;
          j++;
        }
      }
      if (cur || pieces.length === 0) pieces.push(`${c}${cur}${c}`);
      const parts = pieces.map((p) => (p === 's' || p === 'u' || p === 'd' || p === 'p' ? (params.push(p), '?') : p));
      sql += parts.length === 1 ? parts[0] : `CONCAT(${parts.join(', ')})`;
      i = j + 1;
    } else if (c === '`') {
      const end = text.indexOf('`', i + 1);
      if (end < 0) throw invalid(name, 'unterminated `identifier`');
      sql += text.slice(i, end + 1);
      i = end + 1;
    } else if (c === '%') {
      const p = placeholder(i);
      if (p === '%') sql += '%';
      else {
        params.push(p);
        sql += '?';
      }
      i += 2;
    } else if (c === '?') {
      throw invalid(name, 'a bare ? would be taken for a parameter; write placeholders as %s, %u, %d');
    } else {
      sql += c;
      i++;
    }
  }
  if (!sql.trim()) throw invalid(name, 'empty query');
  if (name === 'update_password' && !params.includes('p')) throw invalid(name, 'the new hash (%p) is not used');
  return { name, sql, params };
}

/**
 * The values of a query's parameters for a key, or null when the query is suppressed, as
 * mysql_table(5) does when %u or %d has nothing to expand to (a catch-all @domain has no local
 * part). Also null for values ending in white space: MySQL's PAD SPACE collations would make
 * 'bob@example.com ' equal 'bob@example.com'.
 */
function bind(q: CompiledQuery, key: string, keyIsDomain: boolean, newHash?: string): string[] | null {
  let local: string | undefined;
  let domain: string | undefined;
  if (keyIsDomain) domain = key;
  else {
    const at = key.lastIndexOf('@');
    if (at >= 0) {
      local = key.slice(0, at);
      domain = key.slice(at + 1);
    } else local = key;
  }
  const values: string[] = [];
  for (const p of q.params) {
    const v = p === 's' ? key : p === 'u' ? local : p === 'd' ? domain : newHash;
    if (!v || /\s$/.test(v)) return null;
    values.push(v);
  }
  if (/\s$/.test(key)) return null;
  return values;
}

function text(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return String(v);
}

/** enable/enabled/active: NULL or absent means enabled; 0, '0', false, 'f', 'n', 'no', 'off' disabled. */
function parseEnabled(v: unknown): boolean {
  if (v === null || v === undefined) return true;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return Number(v) !== 0;
  // BIT(1) columns arrive as a Buffer of 0/1 bytes.
  if (Buffer.isBuffer(v) && v.every((b) => b <= 1)) return v.some((b) => b !== 0);
  return !['0', 'false', 'f', 'n', 'no', 'off'].includes(text(v)!.trim().toLowerCase());
}

/** quota/quota_bytes in bytes (PostfixAdmin stores bytes too); NULL means 0 = unlimited. Undefined when unusable. */
function parseQuota(v: unknown): number | undefined {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'bigint') return v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? Math.max(0, Math.floor(v)) : undefined;
  const s = text(v)!.trim();
  if (/^-\d+$/.test(s)) return 0;
  return parseSize(s);
}

/** The target of an alias domain stored the tutorials' way: its only @name row points to @target. */
function aliasTarget(name: string, catchAlls: string[]): string | undefined {
  if (catchAlls.length !== 1) return undefined;
  const d = catchAlls[0]!.trim().toLowerCase();
  return /^@[^@\s,]+$/.test(d) && d.slice(1) !== name ? d.slice(1) : undefined;
}

interface SqlError extends Error {
  code?: string;
  errno?: number;
  sqlState?: string;
  fatal?: boolean;
}

const WARN_INTERVAL_MS = 10_000;

export interface MysqlDirectoryOptions {
  logger: Logger;
  /**
   * Run every query once at open (syntax, tables, columns, privileges); refuses with
   * CONFIG_INVALID naming the query, or TEMP_FAIL when MySQL cannot be reached.
   */
  verify?: boolean;
  /** passwords.rehash: the update_password query (configured or default) is needed and checked. */
  rehash?: boolean;
}

/** Keys the check runs the lookup queries with: nothing matches them. */
const CHECK_ADDRESS = 'maild-check@invalid.invalid';
const CHECK_DOMAIN = 'invalid.invalid';

/** ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR: the user may not write there. */
const ACCESS_DENIED = new Set([1142, 1143]);

export class MysqlDirectory implements DirectorySource, DirectoryAdmin {
  readonly kind = 'mysql' as const;
  readonly #pool: Pool;
  readonly #cfg: MysqlConfig;
  /** The configured queries, compiled. */
  readonly #configured: Map<QueryName, CompiledQuery>;
  /** The queries in force: the configured ones and the defaults; null until virtual_users' columns are known. */
  #queries: Map<QueryName, CompiledQuery> | null = null;
  #loading: Promise<Map<QueryName, CompiledQuery>> | undefined;
  readonly #rehash: boolean;
  /** Why the update_password query cannot run for this user (a grant missing), as the last check or update found. */
  #updateDenied: string | undefined;
  readonly #logger: Logger;
  #failing = false;
  #lastWarn = 0;
  #suppressed = 0;

  private constructor(pool: Pool, cfg: MysqlConfig, configured: Map<QueryName, CompiledQuery>, opts: MysqlDirectoryOptions) {
    this.#pool = pool;
    this.#cfg = cfg;
    this.#configured = configured;
    this.#rehash = opts.rehash ?? false;
    this.#logger = opts.logger;
    // Without the default user query nothing depends on the tables' columns.
    if (configured.has('user')) this.#queries = new Map(configured);
  }

  /**
   * Checks the queries and creates the pool. Does not need the database to be up (lookups fail
   * temporarily until it is), unless opts.verify asks to run the queries.
   */
  static async open(cfg: MysqlConfig, opts: MysqlDirectoryOptions): Promise<MysqlDirectory> {
    const configured = new Map<QueryName, CompiledQuery>();
    for (const name of [...LOOKUP_QUERIES, 'update_password'] as const) {
      const q = cfg.queries[name];
      if (q !== undefined) configured.set(name, { ...compileQuery(name, q), text: q });
    }
    if (opts.rehash && configured.has('user') && !configured.has('update_password')) {
      throw new MailError(
        'CONFIG_INVALID',
        'passwords.rehash: directory.mysql.queries.update_password is needed when directory.mysql.queries.user is set',
      );
    }
    const pool = createPool({
      ...(cfg.socket ? { socketPath: cfg.socket } : { host: cfg.host, port: cfg.port }),
      user: cfg.user,
      password: cfg.password,
      database: cfg.database,
      connectionLimit: cfg.pool_size,
      maxIdle: cfg.pool_size,
      idleTimeout: 60_000,
      waitForConnections: true,
      connectTimeout: cfg.connect_timeout,
      enableKeepAlive: true,
      keepAliveInitialDelay: 10_000,
      charset: 'utf8mb4',
      supportBigNumbers: true,
      dateStrings: true,
    });
    // A pooled connection may report an error more than once when its socket dies; without a
    // listener the second report would be an uncaught 'error' event.
    pool.pool.on('connection', (conn) => conn.on('error', () => undefined));
    const dir = new MysqlDirectory(pool, cfg, configured, opts);
    if (opts.verify) {
      try {
        await dir.verify();
      } catch (err) {
        await dir.close();
        throw err;
      }
    }
    return dir;
  }

  get #where(): string {
    return `${this.#cfg.user}@${this.#cfg.socket ?? `${this.#cfg.host}:${this.#cfg.port}`}/${this.#cfg.database}`;
  }

  /** The columns of virtual_users (lower case), as information_schema shows them to this user. */
  async #userColumns(conn: PoolConnection | Pool): Promise<Set<string>> {
    const [rows] = await conn.execute<RowDataPacket[]>(
      {
        sql: 'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
        timeout: this.#cfg.query_timeout,
      },
      ['virtual_users'],
    );
    return new Set(rows.map((r) => String(text(r.name)).toLowerCase()));
  }

  /** The queries in force, given virtual_users' columns (only the defaults use them). */
  #build(columns: ReadonlySet<string>): Map<QueryName, CompiledQuery> {
    const queries = new Map(this.#configured);
    if (!queries.has('user')) {
      const user = defaultUserQuery(columns);
      queries.set('user', { ...compileQuery('user', user), text: user, isDefault: true });
      if (!queries.has('update_password')) {
        queries.set('update_password', {
          ...compileQuery('update_password', DEFAULT_UPDATE_PASSWORD_QUERY),
          text: DEFAULT_UPDATE_PASSWORD_QUERY,
          isDefault: true,
        });
      }
    }
    return queries;
  }

  /** The queries in force; reads the columns first when a default needs them. Throws on a database error. */
  #effective(): Promise<Map<QueryName, CompiledQuery>> {
    if (this.#queries) return Promise.resolve(this.#queries);
    this.#loading ??= this.#userColumns(this.#pool).then(
      (columns) => {
        this.#loading = undefined;
        return (this.#queries ??= this.#build(columns));
      },
      (err: unknown) => {
        this.#loading = undefined;
        throw err;
      },
    );
    return this.#loading;
  }

  /**
   * Reads virtual_users' columns again (for the default user query) and runs every lookup query
   * once with a key that matches nothing; the update_password query (with passwords.rehash) is
   * prepared, not run. Only when all of them work do they replace the queries in force (start,
   * SIGHUP, check-config). Throws CONFIG_INVALID naming the first query that cannot run, with
   * MySQL's message; TEMP_FAIL when MySQL cannot be reached.
   */
  async verify(): Promise<VerifyReport> {
    let conn: PoolConnection;
    try {
      conn = await this.#pool.getConnection();
    } catch (err) {
      throw new MailError('TEMP_FAIL', `cannot connect to MySQL as ${this.#where}: ${(err as Error).message}`, { cause: err });
    }
    const report: VerifyReport = { queries: [], warnings: [] };
    try {
      const fail = (q: CompiledQuery, err: unknown): MailError => {
        const e = err as SqlError;
        if (e.fatal) return new MailError('TEMP_FAIL', `MySQL connection lost: ${e.message}`, { cause: err });
        // ER_NO_SUCH_TABLE for a tutorial table: a new database, or another schema that needs its queries set.
        const hint =
          e.errno === 1146 && /\.virtual_(users|domains|aliases)'/.test(e.message)
            ? ' (maild migrate creates the tables; for other tables set the queries)'
            : '';
        return invalid(q.name, e.message + hint, q.isDefault);
      };
      let columns: Set<string>;
      try {
        columns = this.#configured.has('user') ? new Set() : await this.#userColumns(conn);
      } catch (err) {
        const e = err as SqlError;
        if (e.fatal) throw new MailError('TEMP_FAIL', `MySQL connection lost: ${e.message}`, { cause: err });
        throw new MailError('CONFIG_INVALID', `directory.mysql: cannot read the columns of virtual_users: ${e.message}`, { cause: err });
      }
      const queries = this.#build(columns);
      let updateDenied: string | undefined;
      for (const q of queries.values()) {
        if (q.name === 'update_password') {
          if (!this.#rehash) continue;
          try {
            await conn.prepare(q.sql);
            // unprepare, not close(): close() would leave a dead statement in the connection's cache.
            conn.unprepare(q.sql);
            updateDenied = undefined;
          } catch (err) {
            const e = err as SqlError;
            if (e.errno === undefined || !ACCESS_DENIED.has(e.errno)) throw fail(q, err);
            updateDenied = e.message;
            report.warnings.push(
              `directory.mysql.queries.update_password cannot run as ${this.#cfg.user} (${e.message}): stored hashes stay as they are; logins are not affected`,
            );
          }
        } else {
          const keyIsDomain = q.name === 'domain' || q.name === 'alias_domain' || q.name === 'transport';
          const values = bind(q, keyIsDomain ? CHECK_DOMAIN : CHECK_ADDRESS, keyIsDomain) ?? [];
          let fields;
          try {
            [, fields] = await conn.execute<RowDataPacket[]>({ sql: q.sql, timeout: this.#cfg.query_timeout }, values);
          } catch (err) {
            throw fail(q, err);
          }
          if (q.name === 'user' && !(fields ?? []).some((f) => f.name.toLowerCase() === 'password')) {
            throw invalid(q.name, 'the query returns no password column', q.isDefault);
          }
        }
        report.queries.push({ name: q.name, text: q.text ?? q.sql, isDefault: q.isDefault ?? false });
      }
      this.#queries = queries;
      this.#updateDenied = updateDenied;
      return report;
    } finally {
      conn.release();
    }
  }

  /** Applies the schema migrations (migrations/) to this database. */
  migrate(opts: MigrateOptions = {}): Promise<MigrateResult> {
    return migrate(this.#pool, { logger: this.#logger, ...opts });
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => undefined);
  }

  // ---- lookups ------------------------------------------------------------------------------

  async lookupDomain(domain: string): Promise<DomainRecord | null> {
    const name = domain.toLowerCase();
    const [rows, targets] = await Promise.all([this.#lookup('domain', name, true), this.#lookup('alias_domain', name, true)]);
    const target = targets
      .map((r) => text((r as unknown[])[0]))
      .map((t) => t?.trim().toLowerCase().replace(/^@/, ''))
      .find((t) => t && t !== name);
    if (rows.length === 0 && !target) return null;
    return target ? { name, aliasFor: target } : { name };
  }

  async lookupUser(email: string): Promise<UserRecord | null> {
    const key = email.toLowerCase();
    return this.#userFromRows(key, await this.#lookup('user', key, false));
  }

  /** The mailbox in the user query's rows: the first whose address is exactly the key. */
  #userFromRows(key: string, rows: unknown[]): UserRecord | null {
    for (const raw of rows) {
      const row = new Map(Object.entries(raw as Record<string, unknown>).map(([k, v]) => [k.toLowerCase(), v] as const));
      const pick = (...names: string[]) => names.find((k) => row.has(k));
      const emailCol = pick('email', 'user', 'username');
      const found = emailCol ? text(row.get(emailCol))?.trim().toLowerCase() : key;
      // Exact keys only: accent-insensitive collations would let 'alicé@' match 'alice@'.
      if (found !== key) continue;
      const pwCol = pick('password');
      if (!pwCol) {
        this.#warn('user', new Error('the user query returns no password column'));
        throw new MailError('TEMP_FAIL', 'directory.mysql.queries.user returns no password column');
      }
      const quotaCol = pick('quota', 'quota_bytes');
      const quota = quotaCol ? parseQuota(row.get(quotaCol)) : 0;
      if (quota === undefined)
        this.#logger.warn({ user: key, quota: text(row.get(quotaCol!)) }, 'unusable quota value, treating it as unlimited');
      const enabledCol = pick('enable', 'enabled', 'active');
      const maildir = text(row.get('maildir'))?.trim();
      if (maildir && (maildir.startsWith('/') || maildir.split('/').includes('..') || maildir.includes('\0'))) {
        this.#logger.error({ user: key }, 'maildir is not a path below the mail root, refusing the mailbox');
        throw new MailError('TEMP_FAIL', `maildir of ${key} is not a path below the mail root`);
      }
      return {
        email: key,
        password: text(row.get(pwCol)) ?? '',
        quotaBytes: quota ?? 0,
        enabled: enabledCol ? parseEnabled(row.get(enabledCol)) : true,
        ...(maildir ? { maildir } : {}),
      };
    }
    return null;
  }

  async lookupAlias(address: string): Promise<string[] | null> {
    const rows = await this.#lookup('alias', address.toLowerCase(), false);
    // One destination per row, or PostfixAdmin's comma-separated alias.goto; NULLs are skipped.
    const out = rows
      .flatMap((r) => (text((r as unknown[])[0]) ?? '').split(','))
      .map((d) => d.trim())
      .filter(Boolean);
    return out.length > 0 ? out : null;
  }

  /**
   * The transport table (queries.transport, e.g. "SELECT transport FROM transport WHERE domain =
   * '%s'"): the column named transport or nexthop, else the first column, of the first row that
   * has a value. Null when the query is not configured. A row that returns its domain column must
   * match the key exactly (accent-insensitive collations would let 'exämple.com' match).
   */
  async lookupTransport(domain: string): Promise<string | null> {
    const key = domain.toLowerCase();
    const rows = await this.#lookup('transport', key, true, false);
    for (const raw of rows) {
      const entries = Object.entries(raw as Record<string, unknown>);
      const row = new Map(entries.map(([k, v]) => [k.toLowerCase(), v] as const));
      if (row.has('domain') && text(row.get('domain'))?.trim().toLowerCase() !== key) continue;
      const col = ['transport', 'nexthop'].find((k) => row.has(k));
      const value = text(col ? row.get(col) : entries[0]?.[1])?.trim();
      if (!value) continue;
      if (!isUsableTransport(value)) {
        // Refuse rather than guess: the value would end up in an SMTP session or a log line.
        this.#logger.error({ domain: key, transport: JSON.stringify(value).slice(0, 100) }, 'unusable transport value, refusing it');
        throw new MailError('TEMP_FAIL', `transport of ${key} is not usable (white space or control characters)`);
      }
      return value;
    }
    return null;
  }

  /**
   * PostfixAdmin's vacation row of a mailbox (queries.vacation): subject and body, the optional
   * activefrom/activeuntil and interval_time. Null when none (or the query is not configured).
   */
  async lookupVacation(email: string): Promise<VacationRecord | null> {
    const rows = await this.#lookup('vacation', email.toLowerCase(), false, false);
    for (const raw of rows) {
      const row = new Map(Object.entries(raw as Record<string, unknown>).map(([k, v]) => [k.toLowerCase(), v] as const));
      const body = text(row.get('body'));
      if (body === null || body === undefined) continue;
      const date = (v: unknown) => (v instanceof Date ? v : typeof v === 'string' && v ? new Date(v.replace(' ', 'T')) : undefined);
      const from = date(row.get('activefrom'));
      const until = date(row.get('activeuntil'));
      const interval = Number(row.get('interval_time') ?? 0);
      return {
        subject: text(row.get('subject')) ?? '',
        body,
        ...(from && !Number.isNaN(from.getTime()) ? { activeFrom: from } : {}),
        ...(until && !Number.isNaN(until.getTime()) ? { activeUntil: until } : {}),
        intervalSeconds: Number.isFinite(interval) && interval > 0 ? interval : 0,
      };
    }
    return null;
  }

  /** Runs a lookup query; every failure becomes TEMP_FAIL (never "not found"). */
  async #lookup(name: QueryName, key: string, keyIsDomain: boolean, rowsAsArray = name !== 'user'): Promise<unknown[]> {
    if (name !== 'user' && !this.#configured.has(name)) return [];
    try {
      const rows = await this.#withDeadline(async (expired) => {
        const q = (await this.#effective()).get(name);
        const values = q && bind(q, key, keyIsDomain);
        if (!q || !values) return [];
        return this.#execute(q.sql, values, rowsAsArray, expired, this.#cfg.pool_size);
      });
      if (this.#failing) {
        this.#failing = false;
        this.#logger.info({ suppressed: this.#suppressed }, 'MySQL lookups work again');
        this.#suppressed = 0;
      }
      return rows;
    } catch (err) {
      this.#warn(name, err);
      throw new MailError('TEMP_FAIL', `MySQL ${name} lookup failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Replaces a stored hash (passwords.rehash) with the update_password query, in a transaction:
   * the user query must still return `expected` (the hash the login was checked against: an
   * admin's change meanwhile is kept, false), the update must change exactly that row without
   * warnings, and the user query must read `hash` back exactly (a column too narrow for it would
   * cut it); otherwise it is rolled back. Throws TEMP_FAIL with MySQL's message (a SELECT-only
   * user gets "UPDATE command denied"). Once the update was denied no new hash is computed (no
   * argon2 work per login for nothing) until a check (SIGHUP) finds the grant.
   */
  async updatePassword(email: string, expected: string, makeHash: () => Promise<string>): Promise<boolean> {
    const key = email.toLowerCase();
    const what = `update_password of ${key}`;
    if (this.#updateDenied !== undefined) throw new MailError('TEMP_FAIL', `${what}: ${this.#updateDenied}`);
    const queries = await this.#effective().catch((err: unknown) => {
      throw new MailError('TEMP_FAIL', `${what}: ${(err as Error).message}`, { cause: err });
    });
    const update = queries.get('update_password');
    const user = queries.get('user')!;
    if (!update) throw new MailError('UNSUPPORTED', 'directory.mysql.queries.update_password is not set');
    const hash = await makeHash();
    const values = bind(update, key, false, hash);
    const userValues = bind(user, key, false);
    if (!values || !userValues) return false;
    let conn: PoolConnection;
    try {
      conn = await this.#pool.getConnection();
    } catch (err) {
      throw new MailError('TEMP_FAIL', `${what}: ${(err as Error).message}`, { cause: err });
    }
    const stored = async () => {
      const [rows] = await conn.execute<RowDataPacket[]>({ sql: user.sql, timeout: this.#cfg.query_timeout }, userValues);
      return this.#userFromRows(key, rows)?.password;
    };
    let broken = false;
    try {
      await conn.beginTransaction();
      if ((await stored()) !== expected) {
        await conn.rollback();
        return false;
      }
      const [res] = await conn.execute<ResultSetHeader>({ sql: update.sql, timeout: this.#cfg.query_timeout }, values);
      let problem: string | undefined;
      if (res.affectedRows !== 1) problem = `the query changed ${res.affectedRows} rows, not 1`;
      else if (res.warningStatus > 0) problem = 'MySQL warned about the new value (is the password column wide enough?)';
      else if ((await stored()) !== hash)
        problem = `the user query does not read the new hash back (${hash.length} characters: is the password column wide enough?)`;
      if (problem) {
        await conn.rollback();
        throw new MailError('TEMP_FAIL', `${what}: ${problem}; rolled back`);
      }
      await conn.commit();
      return true;
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      if (err instanceof MailError) throw err;
      const e = err as SqlError;
      broken = e.fatal === true || e.code === 'PROTOCOL_SEQUENCE_TIMEOUT';
      if (e.errno !== undefined && ACCESS_DENIED.has(e.errno)) this.#updateDenied = e.message;
      throw new MailError('TEMP_FAIL', `${what}: ${e.message}`, { cause: err });
    } finally {
      if (broken) conn.destroy();
      else conn.release();
    }
  }

  /** Bounds the whole lookup (waiting for a pool slot, connecting, querying). */
  #withDeadline<T>(run: (expired: () => boolean) => Promise<T>): Promise<T> {
    const ms = this.#cfg.connect_timeout + this.#cfg.query_timeout;
    if (ms <= 0) return run(() => false);
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(Object.assign(new Error(`no answer within ${ms} ms`), { code: 'LOOKUP_TIMEOUT' }));
      }, ms);
    });
    const work = run(() => timedOut);
    work.catch(() => undefined);
    return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
  }

  /** `retries`: how many cut pooled connections to skip (after a restart, every idle one is). */
  async #execute(sql: string, values: string[], rowsAsArray: boolean, expired: () => boolean, retries: number): Promise<unknown[]> {
    const conn = await this.#pool.getConnection();
    if (expired()) {
      conn.release();
      throw new Error('lookup abandoned');
    }
    let after: 'release' | 'destroy' | 'none' = 'release';
    try {
      const [rows] = await conn.execute<RowDataPacket[]>({ sql, rowsAsArray, timeout: this.#cfg.query_timeout }, values);
      return rows;
    } catch (err) {
      const e = err as SqlError;
      // A timed-out query may still run on the server: drop the connection rather than reuse it.
      if (e.fatal || e.code === 'PROTOCOL_SEQUENCE_TIMEOUT') after = 'destroy';
      if (retries > 0 && e.fatal && !expired()) {
        // A pooled connection cut while idle (server restart, wait_timeout): try another one.
        conn.destroy();
        after = 'none';
        return this.#execute(sql, values, rowsAsArray, expired, retries - 1);
      }
      throw err;
    } finally {
      if (after === 'release') conn.release();
      else if (after === 'destroy') conn.destroy();
    }
  }

  /** Logs a failed lookup at warn, at most once per WARN_INTERVAL_MS during an outage. */
  #warn(name: string, err: unknown): void {
    const e = err as SqlError;
    this.#failing = true;
    const now = Date.now();
    if (now - this.#lastWarn < WARN_INTERVAL_MS) {
      this.#suppressed++;
      return;
    }
    this.#lastWarn = now;
    this.#logger.warn(
      {
        query: name,
        code: e.code,
        errno: e.errno,
        err: e.message,
        host: this.#cfg.socket ?? `${this.#cfg.host}:${this.#cfg.port}`,
        suppressed: this.#suppressed,
      },
      'MySQL lookup failed, answering temporarily failed',
    );
    this.#suppressed = 0;
  }

  // ---- administration (the tutorials' schema) -----------------------------------------------

  /** Runs fn in a transaction; maps MySQL errors to MailErrors. */
  async #tx<T>(what: string, fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
    let conn: PoolConnection;
    try {
      conn = await this.#pool.getConnection();
    } catch (err) {
      throw this.#adminError(what, err);
    }
    try {
      await conn.beginTransaction();
      const result = await fn(conn);
      await conn.commit();
      return result;
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      throw this.#adminError(what, err);
    } finally {
      conn.release();
    }
  }

  #adminError(what: string, err: unknown): MailError {
    if (err instanceof MailError) return err;
    const e = err as SqlError;
    switch (e.errno) {
      case 1062: // ER_DUP_ENTRY
        return new MailError('ALREADY_EXISTS', `${what}: already exists`, { cause: err });
      case 1452: // ER_NO_REFERENCED_ROW_2: the domain went away meanwhile
        return new MailError('NOT_FOUND', `${what}: the domain does not exist`, { cause: err });
      case 1406: // ER_DATA_TOO_LONG
        return new MailError('BAD_ADDRESS', `${what}: ${e.message}`, { cause: err });
      case 1146: // ER_NO_SUCH_TABLE
      case 1054: // ER_BAD_FIELD_ERROR
        return new MailError(
          'CONFIG_INVALID',
          `${what}: ${e.message} (the admin commands manage the tutorials' virtual_domains/virtual_users/virtual_aliases tables: run the migrations)`,
          { cause: err },
        );
    }
    this.#logger.warn({ op: what, code: e.code, errno: e.errno, err: e.message }, 'MySQL admin operation failed');
    return new MailError('TEMP_FAIL', `${what}: ${e.message}`, { cause: err });
  }

  async #rows(conn: PoolConnection | Pool, sql: string, values: SqlValue[] = []): Promise<RowDataPacket[]> {
    const [rows] = await conn.execute<RowDataPacket[]>({ sql, timeout: this.#cfg.query_timeout }, values);
    return rows;
  }

  async #write(conn: PoolConnection, sql: string, values: SqlValue[]): Promise<ResultSetHeader> {
    const [res] = await conn.execute<ResultSetHeader>({ sql, timeout: this.#cfg.query_timeout }, values);
    return res;
  }

  /** Every domain with its id and, for an alias domain stored the tutorials' way, its target. */
  async #domains(conn: PoolConnection | Pool): Promise<Map<string, { id: number; aliasFor?: string }>> {
    const rows = await this.#rows(
      conn,
      'SELECT d.id, d.name, a.destination FROM virtual_domains d ' +
        "LEFT JOIN virtual_aliases a ON a.domain_id = d.id AND a.source = CONCAT('@', d.name) ORDER BY d.id, a.id",
    );
    const grouped = new Map<string, { id: number; catchAlls: string[] }>();
    for (const r of rows) {
      const name = String(r.name).toLowerCase();
      const entry = grouped.get(name) ?? { id: Number(r.id), catchAlls: [] };
      if (r.destination !== null && r.destination !== undefined) entry.catchAlls.push(String(r.destination));
      grouped.set(name, entry);
    }
    const out = new Map<string, { id: number; aliasFor?: string }>();
    for (const [name, { id, catchAlls }] of grouped) {
      const target = aliasTarget(name, catchAlls);
      out.set(name, target ? { id, aliasFor: target } : { id });
    }
    return out;
  }

  async listDomains(): Promise<DomainRecord[]> {
    let domains;
    try {
      domains = await this.#domains(this.#pool);
    } catch (err) {
      throw this.#adminError('list domains', err);
    }
    return [...domains]
      .map(([name, d]) => (d.aliasFor ? { name, aliasFor: d.aliasFor } : { name }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async addDomain(name: string, aliasFor?: string): Promise<void> {
    const domain = name.trim().toLowerCase();
    if (isUnsafeDomain(domain) || domain.includes('@')) throw new MailError('BAD_ADDRESS', `not a domain name: ${JSON.stringify(name)}`);
    const target = aliasFor?.trim().toLowerCase();
    await this.#tx(`add domain ${domain}`, async (conn) => {
      if ((await this.#rows(conn, 'SELECT id FROM virtual_domains WHERE name = ? FOR UPDATE', [domain])).length > 0) {
        throw new MailError('ALREADY_EXISTS', `domain ${domain} exists`);
      }
      if (target !== undefined) {
        if (target === domain) throw new MailError('CONFIG_INVALID', `domain ${domain} cannot be an alias of itself`);
        const t = (await this.#domains(conn)).get(target);
        if (!t) throw new MailError('NOT_FOUND', `no domain ${target} (the target of alias domain ${domain})`);
        if (t.aliasFor) throw new MailError('CONFIG_INVALID', `${target} is an alias domain itself (of ${t.aliasFor})`);
      }
      const res = await this.#write(conn, 'INSERT INTO virtual_domains (name) VALUES (?)', [domain]);
      // The tutorials' alias domain: a catch-all @alias -> @target keeps the local part.
      if (target !== undefined) {
        await this.#write(conn, 'INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (?, ?, ?)', [
          res.insertId,
          `@${domain}`,
          `@${target}`,
        ]);
      }
    });
  }

  async deleteDomain(name: string, force = false): Promise<void> {
    const domain = name.trim().toLowerCase();
    await this.#tx(`delete domain ${domain}`, async (conn) => {
      const locked = await this.#rows(conn, 'SELECT id FROM virtual_domains WHERE name = ? FOR UPDATE', [domain]);
      if (locked.length === 0) throw new MailError('NOT_FOUND', `no domain ${domain}`);
      const ids = locked.map((r) => Number(r.id));
      const all = await this.#domains(conn);
      const self = all.get(domain);
      const [users] = await this.#rows(
        conn,
        `SELECT COUNT(*) AS n FROM virtual_users WHERE domain_id IN (${ids.map(() => '?').join(', ')})`,
        ids,
      );
      const aliases = (
        await this.#rows(conn, `SELECT source FROM virtual_aliases WHERE domain_id IN (${ids.map(() => '?').join(', ')})`, ids)
      ).filter(
        // The @alias -> @target row of an alias domain is the domain itself, not one of its aliases.
        (r) => !(self?.aliasFor && String(r.source).toLowerCase() === `@${domain}`),
      );
      const dependents = [...all].filter(([, d]) => d.aliasFor === domain);
      const userCount = Number(users?.n ?? 0);
      if (!force && (userCount || aliases.length || dependents.length)) {
        throw new MailError(
          'ALREADY_EXISTS',
          `domain ${domain} still has ${userCount} users, ${aliases.length} aliases and ${dependents.length} alias domains (use --force to delete them too)`,
        );
      }
      // ON DELETE CASCADE does this too; explicit for databases created without the foreign keys.
      const doomed = [...ids, ...dependents.map(([, d]) => d.id)];
      const list = doomed.map(() => '?').join(', ');
      await this.#write(conn, `DELETE FROM virtual_users WHERE domain_id IN (${list})`, doomed);
      await this.#write(conn, `DELETE FROM virtual_aliases WHERE domain_id IN (${list})`, doomed);
      await this.#write(conn, `DELETE FROM virtual_domains WHERE id IN (${list})`, doomed);
    });
  }

  async listUsers(domain?: string): Promise<UserRecord[]> {
    let rows: RowDataPacket[];
    try {
      // quota and enable as the table has them (a tutorial's table may lack both).
      const columns = await this.#userColumns(this.#pool);
      const optional = ['quota', 'enable'].filter((c) => columns.has(c)).map((c) => `, u.\`${c}\``);
      const base = `SELECT u.email, u.password${optional.join('')} FROM virtual_users u`;
      rows =
        domain === undefined
          ? await this.#rows(this.#pool, base)
          : await this.#rows(this.#pool, `${base} JOIN virtual_domains d ON d.id = u.domain_id WHERE d.name = ?`, [
              domain.trim().toLowerCase(),
            ]);
    } catch (err) {
      throw this.#adminError('list users', err);
    }
    return rows
      .map((r) => ({
        email: String(r.email).toLowerCase(),
        password: text(r.password) ?? '',
        quotaBytes: parseQuota(r.quota) ?? 0,
        enabled: parseEnabled(r.enable),
      }))
      .sort((a, b) => a.email.localeCompare(b.email));
  }

  async addUser(user: NewUser): Promise<void> {
    const email = addressKey(user.email.trim());
    const split = splitAddress(email);
    if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain))
      throw new MailError('BAD_ADDRESS', `not a usable address: ${JSON.stringify(user.email)}`);
    checkQuota(user.quotaBytes);
    await this.#tx(`add user ${email}`, async (conn) => {
      const d = (await this.#domains(conn)).get(split.domain);
      if (!d) throw new MailError('NOT_FOUND', `no domain ${split.domain}`);
      if (d.aliasFor) throw new MailError('CONFIG_INVALID', `${split.domain} is an alias domain; mailboxes belong to ${d.aliasFor}`);
      if ((await this.#rows(conn, 'SELECT id FROM virtual_users WHERE email = ? FOR UPDATE', [email])).length > 0) {
        throw new MailError('ALREADY_EXISTS', `user ${email} exists`);
      }
      await this.#write(conn, 'INSERT INTO virtual_users (domain_id, password, email, `enable`, quota) VALUES (?, ?, ?, ?, ?)', [
        d.id,
        user.password,
        email,
        user.enabled ? 1 : 0,
        user.quotaBytes,
      ]);
    });
  }

  async updateUser(email: string, changes: Partial<Pick<UserRecord, 'password' | 'enabled' | 'quotaBytes'>>): Promise<void> {
    const key = addressKey(email.trim());
    const sets: string[] = [];
    const values: SqlValue[] = [];
    const set = (column: string, value: SqlValue) => {
      sets.push(`${column} = ?`);
      values.push(value);
    };
    if (changes.password !== undefined) set('password', changes.password);
    if (changes.enabled !== undefined) set('`enable`', changes.enabled ? 1 : 0);
    if (changes.quotaBytes !== undefined) {
      checkQuota(changes.quotaBytes);
      set('quota', changes.quotaBytes);
    }
    await this.#tx(`update user ${key}`, async (conn) => {
      if ((await this.#rows(conn, 'SELECT id FROM virtual_users WHERE email = ? FOR UPDATE', [key])).length === 0)
        throw new MailError('NOT_FOUND', `no user ${key}`);
      if (sets.length > 0) await this.#write(conn, `UPDATE virtual_users SET ${sets.join(', ')} WHERE email = ?`, [...values, key]);
    });
  }

  async deleteUser(email: string): Promise<void> {
    const key = addressKey(email.trim());
    await this.#tx(`delete user ${key}`, async (conn) => {
      const res = await this.#write(conn, 'DELETE FROM virtual_users WHERE email = ?', [key]);
      if (res.affectedRows === 0) throw new MailError('NOT_FOUND', `no user ${key}`);
    });
  }

  async listAliases(domain?: string): Promise<AliasRecord[]> {
    const base = 'SELECT a.source, a.destination, d.name FROM virtual_aliases a JOIN virtual_domains d ON d.id = a.domain_id';
    let rows: RowDataPacket[];
    let domains: Map<string, { id: number; aliasFor?: string }>;
    try {
      rows =
        domain === undefined
          ? await this.#rows(this.#pool, base)
          : await this.#rows(this.#pool, `${base} WHERE d.name = ?`, [domain.trim().toLowerCase()]);
      domains = await this.#domains(this.#pool);
    } catch (err) {
      throw this.#adminError('list aliases', err);
    }
    return (
      rows
        .map((r) => ({
          source: String(r.source).trim().toLowerCase(),
          destination: String(r.destination).trim(),
          domain: String(r.name).toLowerCase(),
        }))
        // Alias domains are listed by listDomains, not as aliases.
        .filter((a) => !(a.source === `@${a.domain}` && domains.get(a.domain)?.aliasFor))
        .map(({ source, destination }) => ({ source, destination }))
        .sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination))
    );
  }

  async addAlias(source: string, destination: string): Promise<void> {
    const src = aliasSource(source);
    const dest = destination.trim();
    if (
      !dest ||
      /[\s,]/.test(dest) ||
      (!dest.startsWith('@') && !splitAddress(dest)) ||
      (dest.startsWith('@') && isUnsafeDomain(dest.slice(1)))
    ) {
      throw new MailError('BAD_ADDRESS', `not an address: ${JSON.stringify(destination)}`);
    }
    await this.#tx(`add alias ${src}`, async (conn) => {
      const domainRows = await this.#rows(conn, 'SELECT id FROM virtual_domains WHERE name = ?', [src.domain]);
      if (domainRows.length === 0) throw new MailError('NOT_FOUND', `no domain ${src.domain}`);
      const existing = await this.#rows(conn, 'SELECT destination FROM virtual_aliases WHERE source = ? FOR UPDATE', [src.key]);
      if (existing.some((r) => String(r.destination).trim().toLowerCase() === dest.toLowerCase()))
        throw new MailError('ALREADY_EXISTS', `alias ${src.key} -> ${dest} exists`);
      await this.#write(conn, 'INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (?, ?, ?)', [
        Number(domainRows[0]!.id),
        src.key,
        dest,
      ]);
    });
  }

  async deleteAlias(source: string, destination?: string): Promise<void> {
    const src = aliasSource(source);
    await this.#tx(`delete alias ${src.key}`, async (conn) => {
      const res =
        destination === undefined
          ? await this.#write(conn, 'DELETE FROM virtual_aliases WHERE source = ?', [src.key])
          : await this.#write(conn, 'DELETE FROM virtual_aliases WHERE source = ? AND destination = ?', [src.key, destination.trim()]);
      if (res.affectedRows === 0)
        throw new MailError('NOT_FOUND', destination === undefined ? `no alias ${src.key}` : `no alias ${src.key} -> ${destination}`);
    });
  }
}

function aliasSource(source: string): { key: string; domain: string } {
  const s = source.trim();
  if (s.startsWith('@')) {
    const domain = s.slice(1).toLowerCase();
    if (isUnsafeDomain(domain) || domain.includes('@'))
      throw new MailError('BAD_ADDRESS', `not an alias source: ${JSON.stringify(source)}`);
    return { key: `@${domain}`, domain };
  }
  const key = addressKey(s);
  const split = splitAddress(key);
  if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain))
    throw new MailError('BAD_ADDRESS', `not an alias source: ${JSON.stringify(source)}`);
  return { key, domain: split.domain };
}

function checkQuota(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0)
    throw new MailError('CONFIG_INVALID', `quota must be a whole number of bytes, got ${bytes}`);
}
