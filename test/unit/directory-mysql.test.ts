/**
 * The MySQL directory against a real MariaDB/MySQL: one throwaway database per use, dropped at
 * the end even when a test fails. No mocks.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Directory } from '../../src/directory/directory.js';
import { compileQuery, MysqlDirectory } from '../../src/directory/mysql-backend.js';
import { loadMigrations, migrate, splitSql } from '../../src/directory/mysql-migrate.js';
import { PasswordService } from '../../src/directory/passwords/index.js';
import { isMailError, type ErrorCode } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { runDirectoryContract, type Backend } from '../helpers/directory-contract.js';
import {
  assertMysqlReachable,
  connectAdmin,
  createTestDatabase,
  mysqlConfig,
  testServer,
  type TestDatabase,
  type TestDatabaseOptions,
} from '../helpers/mysql.js';
import { start as startProxy } from '../helpers/tcp-proxy.js';

/** Every database this file created; whatever a test left behind is dropped at the end. */
const databases: TestDatabase[] = [];
async function newDatabase(opts?: TestDatabaseOptions): Promise<TestDatabase> {
  const db = await createTestDatabase(opts);
  databases.push(db);
  return db;
}

before(async () => {
  await assertMysqlReachable();
});

after(async () => {
  for (const db of databases) await db.drop().catch(() => undefined);
});

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isMailError(err), `expected a MailError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const backendDbs = new Map<Backend, TestDatabase>();

/** The tutorial's transport query, returning the domain too so that only exact keys match. */
const transportQuery = "SELECT domain, transport FROM transport WHERE domain = '%s'";

runDirectoryContract('mysql', {
  async create() {
    const db = await newDatabase({ config: { queries: { transport: transportQuery } } });
    const backend = await MysqlDirectory.open(db.config, { logger: silentLogger });
    backendDbs.set(backend, db);
    return backend;
  },
  async destroy(backend) {
    await backend.close();
    await backendDbs.get(backend)?.drop();
  },
  async setTransports(backend, entries) {
    const db = backendDbs.get(backend)!;
    await db.sql('DELETE FROM transport');
    for (const [domain, transport] of Object.entries(entries))
      await db.sql('INSERT INTO transport (domain, transport) VALUES (?, ?)', [domain, transport]);
  },
});

describe('mysql query placeholders', () => {
  it('turns Postfix placeholders into bound parameters, quoted or not', () => {
    assert.deepEqual(compileQuery('user', "SELECT email FROM virtual_users WHERE email = '%s'"), {
      name: 'user',
      sql: 'SELECT email FROM virtual_users WHERE email = ?',
      params: ['s'],
    });
    assert.equal(compileQuery('domain', 'SELECT 1 FROM d WHERE name = %d').sql, 'SELECT 1 FROM d WHERE name = ?');
    assert.equal(compileQuery('domain', 'SELECT 1 FROM d WHERE name = "%s"').sql, 'SELECT 1 FROM d WHERE name = ?');
    const mixed = compileQuery('user', "SELECT * FROM m WHERE username = '%u@%d' AND local_part = %n");
    assert.equal(mixed.sql, "SELECT * FROM m WHERE username = CONCAT(?, '@', ?) AND local_part = ?");
    assert.deepEqual(mixed.params, ['u', 'd', 'u']);
    assert.equal(
      compileQuery('alias', "SELECT goto FROM a WHERE address = '%s' AND note LIKE '100%%' AND x = 5 %% 2").sql,
      "SELECT goto FROM a WHERE address = ? AND note LIKE '100%' AND x = 5 % 2",
    );
    assert.equal(
      compileQuery('alias', "SELECT 'it''s', `odd%col` FROM a WHERE b = 'x%s'").sql,
      "SELECT 'it''s', `odd%col` FROM a WHERE b = CONCAT('x', ?)",
    );
  });

  it('refuses unknown placeholders and bare question marks', () => {
    assert.throws(
      () => compileQuery('user', "SELECT 1 WHERE a = '%x'"),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID') && /queries\.user.*%x/.test(e.message),
    );
    assert.throws(
      () => compileQuery('alias', 'SELECT 1 WHERE a = ?'),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID'),
    );
    assert.throws(
      () => compileQuery('domain', "SELECT 1 WHERE a = '%s"),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID'),
    );
  });

  it('refuses a query with an unknown placeholder at open, naming the key', async () => {
    const cfg = mysqlConfig({ database: 'unused', queries: { user: "SELECT email, password FROM virtual_users WHERE email = '%e'" } });
    await rejectsWith(MysqlDirectory.open(cfg, { logger: silentLogger }), 'CONFIG_INVALID', /directory\.mysql\.queries\.user/);
  });

  it('takes %p (the new hash) in update_password only, and wants update_password for rehash with a configured user query', async () => {
    const update = compileQuery('update_password', "UPDATE mailbox SET password = '%p', modified = NOW() WHERE username = '%s'");
    assert.equal(update.sql, 'UPDATE mailbox SET password = ?, modified = NOW() WHERE username = ?');
    assert.deepEqual(update.params, ['p', 's']);
    assert.throws(
      () => compileQuery('user', "SELECT email, password FROM u WHERE email = '%p'"),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID') && /queries\.user.*%p/.test(e.message),
    );
    assert.throws(
      () => compileQuery('update_password', "UPDATE u SET password = 'x' WHERE email = '%s'"),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID') && /%p/.test(e.message),
    );
    const cfg = mysqlConfig({ database: 'unused', queries: { user: "SELECT email, password FROM users WHERE email = '%s'" } });
    await rejectsWith(
      MysqlDirectory.open(cfg, { logger: silentLogger, rehash: true }),
      'CONFIG_INVALID',
      /passwords\.rehash.*update_password/,
    );
    const without = await MysqlDirectory.open(cfg, { logger: silentLogger, rehash: false });
    await without.close();
  });

  it('with verify on a database without the tables, names the query and points at migrate', async () => {
    const db = await newDatabase({ migrate: false });
    await rejectsWith(
      MysqlDirectory.open(db.config, { logger: silentLogger, verify: true }),
      'CONFIG_INVALID',
      /queries\.domain: Table '[^']*virtual_domains' doesn't exist \(maild migrate creates the tables/,
    );
    await db.drop();
  });

  it('with verify, refuses a query MySQL cannot prepare, naming the key', async () => {
    const db = await newDatabase();
    const cfg = { ...db.config, queries: { ...db.config.queries, alias: "SELECT nonexistent FROM virtual_aliases WHERE source = '%s'" } };
    await rejectsWith(MysqlDirectory.open(cfg, { logger: silentLogger, verify: true }), 'CONFIG_INVALID', /queries\.alias/);
    const ok = await MysqlDirectory.open(db.config, { logger: silentLogger, verify: true });
    await ok.close();
    await db.drop();
  });
});

describe('mysql directory with hostile keys', () => {
  let db: TestDatabase;
  const dirs: MysqlDirectory[] = [];

  before(async () => {
    db = await newDatabase();
    const admin = await MysqlDirectory.open(db.config, { logger: silentLogger });
    dirs.push(admin);
    await admin.addDomain('example.com');
    await admin.addUser({ email: 'alice@example.com', password: '{PLAIN}x', quotaBytes: 0, enabled: true });
    await admin.addAlias('all@example.com', 'alice@example.com');
    // The same tables through differently written queries: %u@%d in one literal, double quotes, no quotes.
    dirs.push(
      await MysqlDirectory.open(
        {
          ...db.config,
          queries: {
            domain: 'SELECT name FROM virtual_domains WHERE name = %d',
            user: "SELECT email, password FROM virtual_users WHERE email = '%u@%d'",
            alias: 'SELECT destination FROM virtual_aliases WHERE source = "%s"',
          },
        },
        { logger: silentLogger },
      ),
    );
  });

  after(async () => {
    for (const d of dirs) await d.close();
    await db?.drop();
  });

  it('still finds the real entries', async () => {
    for (const dir of dirs) {
      assert.deepEqual(await dir.lookupDomain('example.com'), { name: 'example.com' });
      assert.equal((await dir.lookupUser('alice@example.com'))?.email, 'alice@example.com');
      assert.deepEqual(await dir.lookupAlias('all@example.com'), ['alice@example.com']);
    }
  });

  it('matches nothing and raises nothing for injection, wildcards, backslashes and padding', async () => {
    const addresses = [
      "x' OR '1'='1@example.com",
      "x' OR 1=1 -- @example.com",
      'x" OR "1"="1@example.com',
      'alice\\@example.com',
      "alice\\'@example.com",
      '\\',
      '%@example.com',
      '%',
      '_lice@example.com',
      'al%@example.com',
      'alice@%',
      'alice@example.co_',
      '_%@%',
      'alice@example.com ',
      'alice @example.com',
      'alicé@example.com',
      'all@example.com ',
      '%%s@example.com',
      '?@example.com',
    ];
    for (const dir of dirs) {
      for (const key of addresses) {
        assert.equal(await dir.lookupUser(key), null, `user ${JSON.stringify(key)}`);
        if (!key.startsWith('all@')) assert.equal(await dir.lookupAlias(key), null, `alias ${JSON.stringify(key)}`);
      }
      for (const key of ["example.com' OR '1'='1", '%', 'example.co_', '_xample.com', 'example.com ', 'example.com\\', '\\', "'", '"']) {
        assert.equal(await dir.lookupDomain(key), null, `domain ${JSON.stringify(key)}`);
      }
    }
    // The injection did not touch the data either.
    assert.equal((await dirs[0]!.listUsers()).length, 1);
  });
});

describe('mysql directory on a PostfixAdmin database', () => {
  /** The query set documented for PostfixAdmin (README). */
  const postfixAdminQueries = {
    domain: "SELECT domain FROM domain WHERE domain = '%s' AND active = '1' AND backupmx = '0'",
    user:
      'SELECT m.username, m.password, m.quota, m.maildir, (m.active = 1 AND d.active = 1) AS active ' +
      "FROM mailbox m JOIN domain d ON d.domain = m.domain WHERE m.username = '%s'",
    alias: "SELECT goto FROM alias WHERE address = '%s' AND active = '1'",
    alias_domain: "SELECT target_domain FROM alias_domain WHERE alias_domain = '%s' AND active = '1'",
  };
  let db: TestDatabase;
  let backend: MysqlDirectory;
  let directory: Directory;
  let passwords: PasswordService;

  before(async () => {
    db = await newDatabase({ migrate: false, config: { queries: postfixAdminQueries } });
    // The tables as PostfixAdmin 3.x creates them (columns this test does not use left out).
    await db.sql(`CREATE TABLE domain (
      domain varchar(255) NOT NULL, description varchar(255) NOT NULL DEFAULT '',
      aliases int(10) NOT NULL DEFAULT 0, mailboxes int(10) NOT NULL DEFAULT 0,
      maxquota bigint(20) NOT NULL DEFAULT 0, quota bigint(20) NOT NULL DEFAULT 0,
      transport varchar(255) NOT NULL DEFAULT 'virtual', backupmx tinyint(1) NOT NULL DEFAULT 0,
      created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
      active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (domain)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8 COMMENT='Postfix Admin - Virtual Domains'`);
    await db.sql(`CREATE TABLE mailbox (
      username varchar(255) NOT NULL, password varchar(255) NOT NULL, name varchar(255) NOT NULL DEFAULT '',
      maildir varchar(255) NOT NULL, quota bigint(20) NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL,
      domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
      modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1,
      PRIMARY KEY (username), KEY domain (domain)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8 COMMENT='Postfix Admin - Virtual Mailboxes'`);
    await db.sql(`CREATE TABLE alias (
      address varchar(255) NOT NULL, goto text NOT NULL, domain varchar(255) NOT NULL,
      created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
      active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (address), KEY domain (domain)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8 COMMENT='Postfix Admin - Virtual Aliases'`);
    await db.sql(`CREATE TABLE alias_domain (
      alias_domain varchar(255) NOT NULL, target_domain varchar(255) NOT NULL,
      created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
      active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (alias_domain), KEY active (active), KEY target_domain (target_domain)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8 COMMENT='Postfix Admin - Domain Aliases'`);

    passwords = new PasswordService({ threads: 1 });
    const pw = await passwords.hash('pfa secret', 'SHA512-CRYPT');
    await db.sql(
      "INSERT INTO domain (domain, active, backupmx) VALUES ('example.com', 1, 0), ('example.net', 1, 0), ('sleepy.example', 0, 0), ('backup.example', 1, 1), ('catch.example', 1, 0)",
    );
    await db.sql("INSERT INTO alias_domain (alias_domain, target_domain, active) VALUES ('example.net', 'example.com', 1)");
    const mailbox = (user: string, domain: string, quota: number, active: number) =>
      db.sql('INSERT INTO mailbox (username, password, maildir, quota, local_part, domain, active) VALUES (?, ?, ?, ?, ?, ?, ?)', [
        `${user}@${domain}`,
        pw,
        `${domain}/${user}/`,
        quota,
        user,
        domain,
        active,
      ]);
    await mailbox('alice', 'example.com', 2_097_152, 1);
    await mailbox('bob', 'example.com', 0, 0);
    await mailbox('carol', 'example.com', 0, 1);
    await mailbox('dave', 'sleepy.example', 0, 1);
    // PostfixAdmin adds an alias to itself for every mailbox; goto lists are comma-separated.
    const alias = (address: string, goto: string, active = 1) =>
      db.sql('INSERT INTO alias (address, goto, domain, active) VALUES (?, ?, ?, ?)', [address, goto, address.split('@')[1], active]);
    await alias('alice@example.com', 'alice@example.com');
    await alias('bob@example.com', 'bob@example.com');
    await alias('carol@example.com', 'carol@example.com');
    await alias('team@example.com', 'alice@example.com,carol@example.com, friend@remote.example');
    await alias('old@example.com', 'alice@example.com', 0);
    await alias('@catch.example', 'carol@example.com');

    backend = await MysqlDirectory.open(db.config, { logger: silentLogger, verify: true });
    directory = new Directory(backend, {
      recipientDelimiter: '+',
      cache: { positiveTtlMs: 0, negativeTtlMs: 0, maxEntries: 0 },
      passwords,
      logger: silentLogger,
    });
  });

  after(async () => {
    await backend?.close();
    await passwords?.close();
    await db?.drop();
  });

  it('knows active hosted domains and alias domains, not inactive or backup MX ones', async () => {
    assert.equal(await directory.isLocalDomain('example.com'), true);
    assert.equal(await directory.isLocalDomain('example.net'), true);
    assert.deepEqual(await backend.lookupDomain('example.net'), { name: 'example.net', aliasFor: 'example.com' });
    assert.equal(await directory.isLocalDomain('sleepy.example'), false);
    assert.equal(await directory.isLocalDomain('backup.example'), false);
  });

  it('returns mailboxes with maildir and quota, and authenticates them', async () => {
    const alice = await directory.findUser('Alice@Example.com');
    assert.deepEqual(
      { ...alice, password: undefined },
      {
        email: 'alice@example.com',
        password: undefined,
        quotaBytes: 2_097_152,
        enabled: true,
        maildir: 'example.com/alice/',
      },
    );
    assert.equal((await directory.authenticate('alice@example.com', 'pfa secret')).ok, true);
    assert.deepEqual(await directory.authenticate('alice@example.com', 'nope'), { ok: false, reason: 'bad-password' });
    assert.deepEqual(
      (await directory.resolve('alice@example.com')).mailboxes.map((m) => m.email),
      ['alice@example.com'],
    );
  });

  it('treats active = 0 (mailbox or its domain) as disabled', async () => {
    await rejectsWith(directory.resolve('bob@example.com'), 'MAILBOX_DISABLED');
    assert.deepEqual(await directory.authenticate('bob@example.com', 'pfa secret'), { ok: false, reason: 'disabled' });
    assert.equal((await backend.lookupUser('dave@sleepy.example'))?.enabled, false);
  });

  it('expands comma-separated goto lists, alias domains and catch-alls; ignores inactive aliases', async () => {
    const team = await directory.resolve('team@example.com');
    assert.deepEqual(
      team.mailboxes.map((m) => m.email),
      ['alice@example.com', 'carol@example.com'],
    );
    assert.deepEqual(team.remote, ['friend@remote.example']);
    assert.deepEqual(await backend.lookupAlias('team@example.com'), ['alice@example.com', 'carol@example.com', 'friend@remote.example']);
    assert.deepEqual(
      (await directory.resolve('alice+tag@example.net')).mailboxes.map((m) => m.email),
      ['alice@example.com'],
    );
    assert.deepEqual(
      (await directory.resolve('anyone@catch.example')).mailboxes.map((m) => m.email),
      ['carol@example.com'],
    );
    await rejectsWith(directory.resolve('old@example.com'), 'RECIPIENT_NOT_FOUND');
    await rejectsWith(directory.resolve('nobody@example.net'), 'RECIPIENT_NOT_FOUND');
  });

  it('refuses admin writes, which are for the tutorial schema', async () => {
    await rejectsWith(backend.addDomain('new.example'), 'CONFIG_INVALID', /run the migrations/);
  });
});

describe('mysql directory when the database goes away', () => {
  let db: TestDatabase;
  let proxy: Awaited<ReturnType<typeof startProxy>>;

  before(async () => {
    db = await newDatabase();
    proxy = await startProxy(testServer.port, testServer.host);
  });

  after(async () => {
    await proxy?.close();
    await db?.drop();
  });

  it('fails every lookup temporarily within the timeouts, then recovers with the same instance', async () => {
    const { logger, lines } = recordingLogger();
    const cfg = {
      ...db.config,
      host: '127.0.0.1',
      port: proxy.port,
      connect_timeout: 500,
      query_timeout: 1000,
      pool_size: 4,
      queries: { ...db.config.queries, transport: "SELECT transport FROM transport WHERE domain = '%s'" },
    };
    const dir = await MysqlDirectory.open(cfg, { logger });
    const passwords = new PasswordService({ threads: 1 });
    const directory = new Directory(dir, {
      recipientDelimiter: '+',
      cache: { positiveTtlMs: 60_000, negativeTtlMs: 60_000, maxEntries: 100 },
      passwords,
      logger: silentLogger,
    });
    try {
      await db.sql("INSERT INTO transport (domain, transport) VALUES ('.partner.example', 'smtp:[relay.partner.example]:587')");
      await dir.addDomain('example.com');
      await dir.addUser({ email: 'alice@example.com', password: '{PLAIN}x', quotaBytes: 0, enabled: true });
      await dir.addAlias('all@example.com', 'alice@example.com');
      // Several connections in the pool, all of which the "restart" will cut.
      await Promise.all(Array.from({ length: 8 }, () => dir.lookupUser('alice@example.com')));

      await proxy.stop();
      const lookups: Array<() => Promise<unknown>> = [
        () => dir.lookupDomain('example.com'),
        () => dir.lookupUser('alice@example.com'),
        () => dir.lookupAlias('all@example.com'),
        () => dir.lookupAlias('@example.com'),
        () => dir.lookupTransport('.partner.example'),
        () => dir.lookupTransport('nothing.example'),
      ];
      for (let round = 0; round < 3; round++) {
        const started = Date.now();
        await Promise.all([...lookups, ...lookups].map((run) => rejectsWith(run(), 'TEMP_FAIL')));
        assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
      }
      // The Directory passes the failure on (never "no transport") and does not cache it.
      await rejectsWith(directory.transportFor('a.partner.example'), 'TEMP_FAIL');
      // Admin operations fail temporarily as well.
      await rejectsWith(dir.listDomains(), 'TEMP_FAIL');
      await rejectsWith(dir.addAlias('x@example.com', 'alice@example.com'), 'TEMP_FAIL');
      const warns = lines.filter((l) => l.level === 40);
      assert.ok(
        warns.some((l) => /MySQL lookup failed/.test(String(l.msg)) && l.code),
        'a warning names the failure',
      );
      assert.ok(!JSON.stringify(lines).includes('"password"'), 'no credentials in the logs');

      await proxy.resume();
      assert.deepEqual(await dir.lookupDomain('example.com'), { name: 'example.com' });
      assert.equal((await dir.lookupUser('alice@example.com'))?.email, 'alice@example.com');
      assert.deepEqual(await dir.lookupAlias('all@example.com'), ['alice@example.com']);
      assert.equal(await directory.transportFor('a.partner.example'), 'smtp:[relay.partner.example]:587');
      assert.ok(lines.some((l) => /work again/.test(String(l.msg))));
    } finally {
      await dir.close();
      await passwords.close();
    }
  });

  it('survives a restart between two lookups without failing one (idle connections are replaced)', async () => {
    const cfg = { ...db.config, host: '127.0.0.1', port: proxy.port, connect_timeout: 500, query_timeout: 1000, pool_size: 4 };
    const dir = await MysqlDirectory.open(cfg, { logger: silentLogger });
    try {
      await Promise.all(Array.from({ length: 4 }, () => dir.lookupDomain('example.com')));
      await proxy.stop();
      await proxy.resume();
      for (let i = 0; i < 8; i++) assert.deepEqual(await dir.lookupDomain('example.com'), { name: 'example.com' });
    } finally {
      await dir.close();
    }
  });

  it('fails a lookup that exceeds query_timeout, and keeps working afterwards', async () => {
    const cfg = {
      ...db.config,
      query_timeout: 300,
      queries: { ...db.config.queries, domain: "SELECT name FROM virtual_domains WHERE name = '%s' AND SLEEP(3) = 0" },
    };
    const dir = await MysqlDirectory.open(cfg, { logger: silentLogger });
    try {
      const started = Date.now();
      await rejectsWith(dir.lookupDomain('example.com'), 'TEMP_FAIL');
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
      assert.equal((await dir.lookupUser('alice@example.com'))?.email, 'alice@example.com');
    } finally {
      await dir.close();
    }
  });
});

describe('mysql transport table', () => {
  /** As the tutorials write it: no domain column in the result. */
  const tutorialQuery = "SELECT transport FROM transport WHERE domain = '%s'";
  let db: TestDatabase;
  const opened: MysqlDirectory[] = [];
  const open = async (queries: Record<string, string | undefined>, verify = false) => {
    const dir = await MysqlDirectory.open(
      { ...db.config, queries: { ...db.config.queries, ...queries } },
      { logger: silentLogger, verify },
    );
    opened.push(dir);
    return dir;
  };

  before(async () => {
    db = await newDatabase();
    await db.sql(
      "INSERT INTO transport (domain, transport) VALUES ('partner.example', 'smtp:[mx.partner.example]:587'), ('.partner.example', '[10.0.0.5]'), ('Upper.Example', 'relay.example')",
    );
  });

  after(async () => {
    for (const d of opened) await d.close();
    await db?.drop();
  });

  it('answers null when queries.transport is not set, even with rows in the table', async () => {
    const dir = await open({});
    assert.equal(db.config.queries.transport, undefined);
    assert.equal(await dir.lookupTransport('partner.example'), null);
    const passwords = new PasswordService({ threads: 1 });
    try {
      const directory = new Directory(dir, {
        recipientDelimiter: '+',
        cache: { positiveTtlMs: 0, negativeTtlMs: 0, maxEntries: 0 },
        passwords,
        logger: silentLogger,
      });
      assert.equal(await directory.transportFor('partner.example'), null);
      assert.equal(await directory.transportFor('a.partner.example'), null);
    } finally {
      await passwords.close();
    }
  });

  it("reads the tutorials' transport table with their query, exact keys only, hostile keys matching nothing", async () => {
    const dir = await open({ transport: tutorialQuery }, true);
    assert.equal(await dir.lookupTransport('partner.example'), 'smtp:[mx.partner.example]:587');
    assert.equal(await dir.lookupTransport('.partner.example'), '[10.0.0.5]');
    assert.equal(await dir.lookupTransport('upper.example'), 'relay.example');
    assert.equal(await dir.lookupTransport('a.partner.example'), null);
    for (const key of [
      "partner.example' OR '1'='1",
      "x' OR 1=1 -- ",
      '%',
      '%.example',
      'partner.exampl_',
      'partner.example ',
      '\\',
      "'",
      '"',
      '?',
    ]) {
      assert.equal(await dir.lookupTransport(key), null, JSON.stringify(key));
    }
    assert.equal((await db.sql('SELECT COUNT(*) AS n FROM transport'))[0]!.n, 3);
  });

  it('takes the transport or nexthop column, else the first one, and skips empty values', async () => {
    assert.equal(
      await (
        await open({ transport: "SELECT id, transport AS nexthop FROM transport WHERE domain = '%s'" })
      ).lookupTransport('partner.example'),
      'smtp:[mx.partner.example]:587',
    );
    assert.equal(
      await (
        await open({ transport: "SELECT CONCAT('relay:', transport) AS t, id FROM transport WHERE domain = '%s'" })
      ).lookupTransport('upper.example'),
      'relay:relay.example',
    );
    // A first row with NULL or '' is no answer; the next row is.
    const multi = await open({
      transport: "SELECT NULL AS transport UNION ALL SELECT '' UNION ALL SELECT transport FROM transport WHERE domain = '%s'",
    });
    assert.equal(await multi.lookupTransport('partner.example'), 'smtp:[mx.partner.example]:587');
    assert.equal(await multi.lookupTransport('nothing.example'), null);
  });

  it('with a domain column, ignores rows an accent-insensitive collation matched', async () => {
    const withDomain = await open({ transport: "SELECT domain, transport FROM transport WHERE domain = '%s'" });
    assert.equal(await withDomain.lookupTransport('partner.example'), 'smtp:[mx.partner.example]:587');
    assert.equal(await withDomain.lookupTransport('pärtner.example'), null);
    // Without it the collation decides (utf8mb4_general_ci: ä = a), as it does for Postfix's mysql_table.
    const bare = await open({ transport: tutorialQuery });
    assert.equal(await bare.lookupTransport('pärtner.example'), 'smtp:[mx.partner.example]:587');
  });

  it('refuses a transport value with white space or line breaks (TEMP_FAIL, logged)', async () => {
    await db.sql(
      "INSERT INTO transport (domain, transport) VALUES ('bad.example', 'smtp:[x]\r\nRCPT TO:<y>'), ('bad2.example', 'smtp:[x] y')",
    );
    const { logger, lines } = recordingLogger();
    const dir = await MysqlDirectory.open({ ...db.config, queries: { ...db.config.queries, transport: tutorialQuery } }, { logger });
    opened.push(dir);
    await rejectsWith(dir.lookupTransport('bad.example'), 'TEMP_FAIL', /bad\.example/);
    await rejectsWith(dir.lookupTransport('bad2.example'), 'TEMP_FAIL');
    assert.ok(lines.some((l) => l.level === 50 && l.domain === 'bad.example'));
  });

  it('with verify, refuses a transport query MySQL cannot prepare, naming the key', async () => {
    await rejectsWith(
      open({ transport: "SELECT nexthop FROM transports WHERE domain = '%s'" }, true),
      'CONFIG_INVALID',
      /queries\.transport/,
    );
    await rejectsWith(open({ transport: "SELECT transport FROM transport WHERE domain = '%x'" }), 'CONFIG_INVALID', /queries\.transport/);
  });
});

describe('mysql migrations', () => {
  const columns = async (db: TestDatabase, table: string) =>
    new Map(
      (
        await db.sql(
          'SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS def FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
          [db.name, table],
        )
      ).map((r) => [String(r.name), { type: String(r.type), nullable: String(r.nullable), def: r.def === null ? null : String(r.def) }]),
    );

  it('splits SQL files at statement ends only', () => {
    assert.deepEqual(splitSql('-- a; comment\nSELECT \';\' ; /* x; */ SELECT `a;b`, "c;" # d;\n;\nSELECT 1'), [
      "SELECT ';'",
      'SELECT `a;b`, "c;"',
      'SELECT 1',
    ]);
  });

  it('creates the schema on an empty database, and applies nothing the second time', async () => {
    const db = await newDatabase({ migrate: false });
    const names = (await loadMigrations()).map((m) => m.name);
    assert.ok(names.length >= 4);
    const conn = await connectAdmin(db.name);
    try {
      assert.deepEqual((await migrate(conn)).applied, names);
      assert.deepEqual((await migrate(conn)).applied, []);
    } finally {
      await conn.end();
    }
    const users = await columns(db, 'virtual_users');
    assert.match(users.get('enable')!.type, /^tinyint\(1\)/);
    assert.equal(users.get('enable')!.def, '1');
    assert.match(users.get('quota')!.type, /^bigint/);
    assert.equal(users.get('password')!.type, 'varchar(255)');
    assert.equal((await columns(db, 'virtual_domains')).get('name')!.type, 'varchar(50)');
    const transport = await columns(db, 'transport');
    assert.deepEqual([...transport.keys()].sort(), ['domain', 'id', 'transport']);
    assert.equal(transport.get('domain')!.type, 'varchar(128)');
    assert.equal(transport.get('domain')!.nullable, 'NO');
    assert.equal(transport.get('transport')!.type, 'varchar(128)');
    assert.equal(transport.get('transport')!.nullable, 'NO');
    await db.sql("INSERT INTO transport (domain, transport) VALUES ('a.example', 'smtp:[b.example]')");
    await assert.rejects(db.sql("INSERT INTO transport (domain, transport) VALUES ('A.example', 'x')"), /Duplicate entry/);
    const engines = await db.sql(
      "SELECT TABLE_NAME AS t, ENGINE AS e, TABLE_COLLATION AS c FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE 'virtual_%'",
      [db.name],
    );
    assert.equal(engines.length, 3);
    for (const t of engines) {
      assert.equal(t.e, 'InnoDB');
      assert.match(String(t.c), /^utf8mb4/);
    }
    // Through a pool, as the daemon's CLI does.
    const dir = await MysqlDirectory.open(db.config, { logger: silentLogger });
    try {
      assert.deepEqual((await dir.migrate()).applied, []);
    } finally {
      await dir.close();
    }
    const recorded = await db.sql('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(
      recorded.map((r) => r.version),
      names,
    );
    await db.drop();
  });

  it("upgrades a tutorial's database in place, keeping its rows", async () => {
    const db = await newDatabase({ migrate: false });
    // As in the classic Postfix/Dovecot/MySQL tutorials.
    await db.sql(`CREATE TABLE \`virtual_domains\` (
      \`id\` int(11) NOT NULL auto_increment, \`name\` varchar(50) NOT NULL, PRIMARY KEY (\`id\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    await db.sql(`CREATE TABLE \`virtual_users\` (
      \`id\` int(11) NOT NULL auto_increment, \`domain_id\` int(11) NOT NULL, \`password\` varchar(106) NOT NULL,
      \`email\` varchar(100) NOT NULL, PRIMARY KEY (\`id\`), UNIQUE KEY \`email\` (\`email\`),
      FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    await db.sql(`CREATE TABLE \`virtual_aliases\` (
      \`id\` int(11) NOT NULL auto_increment, \`domain_id\` int(11) NOT NULL, \`source\` varchar(100) NOT NULL,
      \`destination\` varchar(100) NOT NULL, PRIMARY KEY (\`id\`),
      FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    const hash = '$6$0123456789abcdef$' + 'x'.repeat(86);
    await db.sql("INSERT INTO virtual_domains (id, name) VALUES (1, 'example.com'), (2, 'Example.NET')");
    await db.sql(
      "INSERT INTO virtual_users (id, domain_id, password, email) VALUES (1, 1, ?, 'email1@example.com'), (2, 1, ?, 'Email2@Example.com')",
      [hash, hash],
    );
    await db.sql(
      "INSERT INTO virtual_aliases (id, domain_id, source, destination) VALUES (1, 1, 'alias@example.com', 'email1@example.com'), (2, 2, '@example.net', '@example.com')",
    );

    const conn = await connectAdmin(db.name);
    try {
      assert.ok((await migrate(conn)).applied.length >= 4);
      assert.deepEqual((await migrate(conn)).applied, []);
    } finally {
      await conn.end();
    }
    const users = await columns(db, 'virtual_users');
    assert.equal(users.get('password')!.type, 'varchar(255)');
    assert.equal(users.get('password')!.nullable, 'NO');
    assert.equal(users.get('email')!.type, 'varchar(255)');
    assert.equal(users.get('enable')!.def, '1');
    assert.deepEqual(
      (await db.sql('SELECT id, domain_id, password, email, `enable`, quota FROM virtual_users ORDER BY id')).map((r) => ({ ...r })),
      [
        { id: 1, domain_id: 1, password: hash, email: 'email1@example.com', enable: 1, quota: 0 },
        { id: 2, domain_id: 1, password: hash, email: 'Email2@Example.com', enable: 1, quota: 0 },
      ],
    );
    assert.equal((await db.sql('SELECT COUNT(*) AS n FROM virtual_aliases'))[0]!.n, 2);
    const unique = await db.sql(
      "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'virtual_domains' AND COLUMN_NAME = 'name' AND NON_UNIQUE = 0",
      [db.name],
    );
    assert.equal(unique.length, 1);
    // The transport table is new to such a database.
    assert.deepEqual(await db.sql('SELECT * FROM transport'), []);

    // The upgraded database works with the default queries and the admin methods.
    const dir = await MysqlDirectory.open(db.config, { logger: silentLogger });
    try {
      assert.deepEqual(await dir.lookupUser('email2@example.com'), {
        email: 'email2@example.com',
        password: hash,
        quotaBytes: 0,
        enabled: true,
      });
      assert.deepEqual(await dir.listDomains(), [{ name: 'example.com' }, { name: 'example.net', aliasFor: 'example.com' }]);
      assert.deepEqual(await dir.lookupAlias('@example.net'), ['@example.com']);
      const argon = '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$' + 'a'.repeat(22) + '$' + 'b'.repeat(43);
      assert.ok(argon.length > 106);
      await dir.addUser({ email: 'new@example.com', password: argon, quotaBytes: 1024, enabled: true });
      assert.equal((await dir.lookupUser('new@example.com'))?.password, argon);
      await rejectsWith(dir.addDomain('EXAMPLE.com'), 'ALREADY_EXISTS');
    } finally {
      await dir.close();
    }
    await db.drop();
  });
});
