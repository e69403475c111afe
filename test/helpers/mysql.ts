/**
 * Throwaway MariaDB/MySQL databases for tests: one `maild_test_<time>_<random>` database per
 * call, dropped by drop(). The server is the machine's (127.0.0.1:3306, root, no password) unless
 * MAILD_TEST_MYSQL_HOST / _PORT / _USER / _PASSWORD say otherwise.
 */
import { randomBytes } from 'node:crypto';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { configSchema, type MysqlConfig } from '../../src/config/schema.js';
import { migrate, splitSql } from '../../src/directory/mysql-migrate.js';

export const testServer = {
  host: process.env.MAILD_TEST_MYSQL_HOST ?? '127.0.0.1',
  port: Number(process.env.MAILD_TEST_MYSQL_PORT ?? 3306),
  user: process.env.MAILD_TEST_MYSQL_USER ?? 'root',
  password: process.env.MAILD_TEST_MYSQL_PASSWORD ?? '',
};

const PREFIX = 'maild_test_';
/** Databases of crashed runs are dropped once they are this old. */
const STALE_MS = 6 * 3600_000;

/** Connects as the test user (no database selected); a clear error when the server is not there. */
export async function connectAdmin(database?: string): Promise<Connection> {
  try {
    return await createConnection({ ...testServer, ...(database ? { database } : {}), connectTimeout: 5000, charset: 'utf8mb4' });
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new Error(
      `MariaDB/MySQL is not reachable at ${testServer.host}:${testServer.port} as ${testServer.user} (${e.code ?? e.message}). ` +
        'The MySQL directory tests need a server: start MariaDB (mysql -uroot -h127.0.0.1 must work) ' +
        'or point MAILD_TEST_MYSQL_HOST/_PORT/_USER/_PASSWORD at one.',
      { cause: err },
    );
  }
}

/** Throws a descriptive error when the test server cannot be reached. */
export async function assertMysqlReachable(): Promise<void> {
  const conn = await connectAdmin();
  await conn.end();
}

/** A MysqlConfig as the daemon would have it (defaults applied by the config schema). */
export function mysqlConfig(section: Record<string, unknown>): MysqlConfig {
  const cfg = configSchema.parse({
    listeners: [{ protocol: 'smtp', port: 25 }],
    directory: {
      backend: 'mysql',
      mysql: { host: testServer.host, port: testServer.port, user: testServer.user, password: testServer.password, ...section },
    },
  });
  return cfg.directory.mysql!;
}

export interface TestDatabase {
  name: string;
  config: MysqlConfig;
  /** Runs SQL as the test user inside this database. */
  sql(statement: string, values?: unknown[]): Promise<RowDataPacket[]>;
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** Run the migrations (default true). */
  migrate?: boolean;
  /** Extra keys of the directory.mysql section (queries, timeouts...). */
  config?: Record<string, unknown>;
}

async function dropStale(conn: Connection): Promise<void> {
  const [rows] = await conn.query<RowDataPacket[]>(`SHOW DATABASES LIKE '${PREFIX}%'`);
  for (const row of rows) {
    const name = String(Object.values(row)[0]);
    const m = /^maild_test_([0-9a-z]+)_[0-9a-f]+$/.exec(name);
    if (m && Date.now() - parseInt(m[1]!, 36) > STALE_MS) await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
  }
}

export async function createTestDatabase(opts: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const name = `${PREFIX}${Date.now().toString(36)}_${randomBytes(5).toString('hex')}`;
  const admin = await connectAdmin();
  try {
    await dropStale(admin);
    await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  } finally {
    await admin.end();
  }
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    const conn = await connectAdmin();
    try {
      await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
    } finally {
      await conn.end();
    }
  };
  const sql = async (statement: string, values: unknown[] = []) => {
    const conn = await connectAdmin(name);
    try {
      const [rows] = await conn.query<RowDataPacket[]>(statement, values);
      return rows;
    } finally {
      await conn.end();
    }
  };
  try {
    if (opts.migrate !== false) {
      const conn = await connectAdmin(name);
      try {
        await migrate(conn);
      } finally {
        await conn.end();
      }
    }
    return { name, config: mysqlConfig({ database: name, ...opts.config }), sql, drop };
  } catch (err) {
    await drop();
    throw err;
  }
}

export interface DatabaseUser {
  user: string;
  password: string;
  drop(): Promise<void>;
}

/**
 * A real database user with only the given privileges on this database (default SELECT, as
 * Postfix's and Dovecot's users are): `GRANT SELECT ON db.* TO ...`. Drop it when done.
 */
export async function createDatabaseUser(db: TestDatabase, privileges = 'SELECT'): Promise<DatabaseUser> {
  const user = `maild_ro_${randomBytes(5).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const admin = await connectAdmin();
  try {
    await admin.query('CREATE USER ?@? IDENTIFIED BY ?', [user, '%', password]);
    await admin.query(`GRANT ${privileges} ON \`${db.name}\`.* TO ?@?`, [user, '%']);
  } finally {
    await admin.end();
  }
  return {
    user,
    password,
    async drop() {
      const conn = await connectAdmin();
      try {
        await conn.query('DROP USER IF EXISTS ?@?', [user, '%']);
      } finally {
        await conn.end();
      }
    },
  };
}

/**
 * Runs an SQL file written for the mysql command line (a tutorial's schema) in this database:
 * statements that create or choose databases and users (CREATE DATABASE, CREATE USER, GRANT,
 * FLUSH, USE) are left out, the rest runs as it is.
 */
export async function loadSqlFile(db: TestDatabase, text: string): Promise<void> {
  const skipped = /^(CREATE\s+DATABASE|CREATE\s+USER|GRANT|FLUSH|USE)\b/i;
  for (const statement of splitSql(text)) {
    if (!skipped.test(statement.trim())) await db.sql(statement);
  }
}
