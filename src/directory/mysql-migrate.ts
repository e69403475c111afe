/**
 * Schema migrations for the MySQL directory: the numbered SQL files of the project's migrations/
 * folder, applied in order and recorded in schema_migrations. Every file is idempotent on its own
 * (CREATE TABLE IF NOT EXISTS, columns added after an information_schema check), so a database
 * built by the classic tutorials is upgraded in place, and a run that stopped half-way (MySQL
 * commits DDL implicitly, there is no transaction around a file) can simply be repeated.
 */
import { statSync } from 'node:fs';
import { pathExists } from '../paths.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Connection, Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';

export interface MigrateOptions {
  /** Folder of the NNNN_name.sql files; defaults to the project's migrations/. */
  dir?: string;
  logger?: Logger;
  /** How long to wait for another process migrating the same database (seconds). */
  lockTimeoutSeconds?: number;
}

export interface MigrateResult {
  /** Names (file names without .sql) of the migrations applied by this run, in order. */
  applied: string[];
}

const FILE_PATTERN = /^(\d+)[_-][\w.-]*\.sql$/;

/**
 * The project's migrations/ folder: the nearest ancestor of this module holding both migrations/
 * and package.json (src/directory/ under tsx, dist/src/directory/ once compiled).
 */
function migrationsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'migrations');
    if (pathExists(path.join(dir, 'package.json')) && statSync(candidate, { throwIfNoEntry: false })?.isDirectory()) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new MailError('CONFIG_INVALID', `no migrations/ folder found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export interface Migration {
  name: string;
  statements: string[];
}

/** The migration files of `dir`, sorted by number, each split into statements. */
export async function loadMigrations(dir = migrationsDir()): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((f) => FILE_PATTERN.test(f));
  files.sort((a, b) => Number(FILE_PATTERN.exec(a)![1]) - Number(FILE_PATTERN.exec(b)![1]) || a.localeCompare(b));
  const out: Migration[] = [];
  for (const file of files) {
    out.push({ name: file.replace(/\.sql$/, ''), statements: splitSql(await fs.readFile(path.join(dir, file), 'utf8')) });
  }
  return out;
}

/**
 * Splits a SQL script at the semicolons that end statements, as the mysql client does (no
 * DELIMITER support): quotes, backticks and comments are skipped; comments are dropped.
 */
export function splitSql(text: string): string[] {
  const statements: string[] = [];
  let cur = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < n) {
        if (text[j] === '\\' && c !== '`') j += 2;
        else if (text[j] === c && text[j + 1] === c) j += 2;
        else if (text[j] === c) break;
        else j++;
      }
      cur += text.slice(i, j + 1);
      i = j + 1;
    } else if ((c === '-' && next === '-' && /\s/.test(text[i + 2] ?? ' ')) || c === '#') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
      cur += ' ';
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      cur += ' ';
    } else if (c === ';') {
      if (cur.trim()) statements.push(cur.trim());
      cur = '';
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  if (cur.trim()) statements.push(cur.trim());
  return statements;
}

type Queryable = Connection | PoolConnection;

function isPool(db: Pool | Connection): db is Pool {
  return typeof (db as Pool).getConnection === 'function' && typeof (db as PoolConnection).release !== 'function';
}

/**
 * Applies the migrations not yet recorded in schema_migrations, under a named lock so that two
 * processes starting together do not run them twice. Returns what was applied.
 */
export async function migrate(db: Pool | Connection, opts: MigrateOptions = {}): Promise<MigrateResult> {
  const migrations = await loadMigrations(opts.dir);
  let conn: Queryable;
  try {
    conn = isPool(db) ? await db.getConnection() : db;
  } catch (err) {
    throw new MailError('TEMP_FAIL', `cannot connect to MySQL to migrate: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await migrateOn(conn, migrations, opts);
  } catch (err) {
    if (err instanceof MailError) throw err;
    throw new MailError('TEMP_FAIL', `migration failed: ${(err as Error).message}`, { cause: err });
  } finally {
    if (conn !== db) (conn as PoolConnection).release();
  }
}

async function migrateOn(conn: Queryable, migrations: Migration[], opts: MigrateOptions): Promise<MigrateResult> {
  const [dbRows] = await conn.query<RowDataPacket[]>('SELECT DATABASE() AS db');
  if (!dbRows[0]?.db) throw new MailError('CONFIG_INVALID', 'no database selected to migrate (mysql.database)');
  const lockName = 'maild_migrate_';
  // Named locks are server-wide: one per database (MD5 keeps the name within 64 characters).
  const [lockRows] = await conn.query<RowDataPacket[]>(`SELECT GET_LOCK(CONCAT(?, MD5(DATABASE())), ?) AS got`, [
    lockName,
    opts.lockTimeoutSeconds ?? 60,
  ]);
  if (Number(lockRows[0]?.got) !== 1) throw new MailError('TEMP_FAIL', 'another process is migrating this database');
  const applied: string[] = [];
  try {
    await conn.query(
      'CREATE TABLE IF NOT EXISTS `schema_migrations` (`version` VARCHAR(191) NOT NULL PRIMARY KEY, ' +
        '`applied_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4',
    );
    const [done] = await conn.query<RowDataPacket[]>('SELECT `version` FROM `schema_migrations`');
    const seen = new Set(done.map((r) => String(r.version)));
    for (const m of migrations) {
      if (seen.has(m.name)) continue;
      for (const [i, sql] of m.statements.entries()) {
        try {
          await conn.query(sql);
        } catch (err) {
          const e = err as Error & { code?: string; fatal?: boolean };
          throw new MailError(e.fatal ? 'TEMP_FAIL' : 'CONFIG_INVALID', `migration ${m.name}, statement ${i + 1} failed: ${e.message}`, {
            cause: err,
          });
        }
      }
      await conn.query('INSERT INTO `schema_migrations` (`version`) VALUES (?)', [m.name]);
      applied.push(m.name);
      opts.logger?.info({ migration: m.name }, 'applied database migration');
    }
  } finally {
    await conn.query('SELECT RELEASE_LOCK(CONCAT(?, MD5(DATABASE())))', [lockName]).catch(() => undefined);
  }
  return { applied };
}
