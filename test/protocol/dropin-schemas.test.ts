/**
 * maild on the operator's MySQL tables as they are, read by a database user that may only SELECT
 * (as Postfix's and Dovecot's users are), without `maild migrate`: the tutorials' virtual_* tables
 * without and with `enable` (the latter exactly the fixture of a running Postfix + Dovecot
 * server), the 2008 tutorial's domains/users/forwardings with ENCRYPT() DES passwords, and
 * PostfixAdmin's tables. Per schema one server: delivery on the MX port, an alias with two
 * destinations, IMAP, POP3 and submission logins. Then queries that cannot run: the daemon
 * refuses to start and check-config fails, naming the query.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runCliProcess } from '../helpers/cli.js';
import { ROOT, spawnDaemon } from '../helpers/daemon.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { createDatabaseUser, createTestDatabase, loadSqlFile, testServer, type DatabaseUser, type TestDatabase } from '../helpers/mysql.js';
import { Pop3TestClient } from '../helpers/pop3-client.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { start as startProxy } from '../helpers/tcp-proxy.js';

const FIXTURE_SCHEMA = readFileSync(path.join(ROOT, 'test/fixtures/import/postfix-dovecot/sql/schema.sql'), 'utf8');
/** The tutorial's schema before it had `enable` (the Linode / workaround.org tables of many installations). */
const SCHEMA_WITHOUT_ENABLE = FIXTURE_SCHEMA.split('\n')
  .filter((l) => !l.includes('`enable`'))
  .join('\n');
assert.notEqual(SCHEMA_WITHOUT_ENABLE, FIXTURE_SCHEMA, 'the fixture has an enable column to leave out');

/** The tutorials' way to store a SHA512-CRYPT password with SQL. */
const sha512 = (pw: string) => `ENCRYPT('${pw}', CONCAT('$6$', SUBSTRING(SHA(RAND()), -16)))`;

async function insertVirtualRows(db: TestDatabase, opts: { prefix?: string } = {}): Promise<void> {
  // The fixture inserts example.test with id 1.
  const pw = (p: string) => (opts.prefix ? `CONCAT('${opts.prefix}', ${sha512(p)})` : sha512(p));
  await db.sql(
    `INSERT INTO virtual_users (domain_id, email, password) VALUES (1, 'alice@example.test', ${pw('alice-pw')}), (1, 'bob@example.test', ${pw('bob-pw')})`,
  );
  await db.sql(
    "INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, 'team@example.test', 'alice@example.test'), (1, 'team@example.test', 'bob@example.test')",
  );
}

interface Schema {
  name: string;
  /** Creates the tables and rows (as the database's owner). */
  setup(db: TestDatabase): Promise<void>;
  /** directory.mysql.queries, when the defaults are not for these tables. */
  queries?: Record<string, string>;
  rehash: boolean;
  /** The password column as the test reads it back. */
  storedPassword: (db: TestDatabase, email: string) => Promise<string>;
  /** Another check of what the schema has (a disabled mailbox...). */
  extra?: (srv: TestServer, db: TestDatabase) => Promise<void>;
}

const virtualPassword = async (db: TestDatabase, email: string) =>
  String((await db.sql('SELECT password FROM virtual_users WHERE email = ?', [email]))[0]!.password);

const schemas: Schema[] = [
  {
    name: "the tutorials' virtual_* tables without enable and quota (rehash off)",
    async setup(db) {
      await loadSqlFile(db, SCHEMA_WITHOUT_ENABLE);
      await insertVirtualRows(db);
    },
    rehash: false,
    storedPassword: virtualPassword,
  },
  {
    name: "the fixture's virtual_* tables with enable, {SHA512-CRYPT} hashes (rehash on)",
    async setup(db) {
      await loadSqlFile(db, FIXTURE_SCHEMA);
      await insertVirtualRows(db, { prefix: '{SHA512-CRYPT}' });
      await db.sql(
        `INSERT INTO virtual_users (domain_id, email, password, \`enable\`) VALUES (1, 'off@example.test', ${sha512('off-pw')}, 0)`,
      );
    },
    rehash: true,
    storedPassword: virtualPassword,
    async extra(srv) {
      // enable = 0: no mail, no login.
      const c = await mx(srv);
      const r = await c.sendMail('s@remote.example', ['off@example.test'], simpleMessage('x'));
      assert.deepEqual([r.rcpts[0]!.code, r.rcpts[0]!.enhanced], [550, '5.2.1']);
      await c.quit();
      const imap = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true, timeoutMs: 30_000 });
      await imap.greeting();
      assert.equal((await imap.login('off@example.test', 'off-pw')).status, 'NO');
      await imap.logout();
    },
  },
  {
    name: "the 2008 tutorial's domains/users/forwardings with ENCRYPT() DES passwords (rehash on)",
    async setup(db) {
      // As the tutorial creates them (MyISAM, password VARCHAR(20), quota in bytes, one forwardings row per source).
      await db.sql('CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain)) ENGINE=MyISAM');
      await db.sql('CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL, PRIMARY KEY (source)) ENGINE=MyISAM');
      await db.sql(
        "CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL, quota INT(10) DEFAULT '10485760', PRIMARY KEY (email)) ENGINE=MyISAM",
      );
      await db.sql("INSERT INTO domains (domain) VALUES ('example.test')");
      await db.sql(
        "INSERT INTO users (email, password) VALUES ('alice@example.test', ENCRYPT('alice-pw')), ('bob@example.test', ENCRYPT('bob-pw'))",
      );
      await db.sql("INSERT INTO forwardings (source, destination) VALUES ('team@example.test', 'alice@example.test,bob@example.test')");
    },
    queries: {
      domain: "SELECT domain AS virtual FROM domains WHERE domain = '%s'",
      user: "SELECT email, password, quota FROM users WHERE email = '%s'",
      alias: "SELECT destination FROM forwardings WHERE source = '%s'",
      update_password: "UPDATE users SET password = '%p' WHERE email = '%s'",
    },
    rehash: true,
    storedPassword: async (db, email) => String((await db.sql('SELECT password FROM users WHERE email = ?', [email]))[0]!.password),
  },
  {
    name: "PostfixAdmin's domain/mailbox/alias/alias_domain tables, MD5-CRYPT hashes (rehash on)",
    async setup(db) {
      // PostfixAdmin 3.x's tables (columns these lookups do not use left out).
      await db.sql(`CREATE TABLE domain (
        domain varchar(255) NOT NULL, description varchar(255) NOT NULL DEFAULT '',
        transport varchar(255) NOT NULL DEFAULT 'virtual', backupmx tinyint(1) NOT NULL DEFAULT 0,
        created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
        active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (domain)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
      await db.sql(`CREATE TABLE mailbox (
        username varchar(255) NOT NULL, password varchar(255) NOT NULL, name varchar(255) NOT NULL DEFAULT '',
        maildir varchar(255) NOT NULL, quota bigint(20) NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL,
        domain varchar(255) NOT NULL, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
        modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00', active tinyint(1) NOT NULL DEFAULT 1,
        PRIMARY KEY (username), KEY domain (domain)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
      await db.sql(`CREATE TABLE alias (
        address varchar(255) NOT NULL, goto text NOT NULL, domain varchar(255) NOT NULL,
        created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
        active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (address), KEY domain (domain)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
      await db.sql(`CREATE TABLE alias_domain (
        alias_domain varchar(255) NOT NULL, target_domain varchar(255) NOT NULL,
        created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
        active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (alias_domain)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
      await db.sql("INSERT INTO domain (domain) VALUES ('example.test')");
      for (const [local, pw, salt] of [
        ['alice', 'alice-pw', 'aliceslt'],
        ['bob', 'bob-pw', 'bobsaltx'],
      ]) {
        await db.sql(
          `INSERT INTO mailbox (username, password, maildir, local_part, domain) VALUES (?, ENCRYPT(?, '$1$${salt}$'), ?, ?, 'example.test')`,
          [`${local}@example.test`, pw, `example.test/${local}/`, local],
        );
        // PostfixAdmin stores an alias to itself for every mailbox.
        await db.sql("INSERT INTO alias (address, goto, domain) VALUES (?, ?, 'example.test')", [
          `${local}@example.test`,
          `${local}@example.test`,
        ]);
      }
      await db.sql(
        "INSERT INTO alias (address, goto, domain) VALUES ('team@example.test', 'alice@example.test,bob@example.test', 'example.test')",
      );
    },
    queries: {
      domain: "SELECT domain FROM domain WHERE domain = '%s' AND active = '1' AND backupmx = '0'",
      user: "SELECT m.username, m.password, m.quota, m.maildir, (m.active = 1 AND d.active = 1) AS active FROM mailbox m JOIN domain d ON d.domain = m.domain WHERE m.username = '%s'",
      alias: "SELECT goto FROM alias WHERE address = '%s' AND active = '1'",
      alias_domain: "SELECT target_domain FROM alias_domain WHERE alias_domain = '%s' AND active = '1'",
      update_password: "UPDATE mailbox SET password = '%p', modified = NOW() WHERE username = '%s'",
    },
    rehash: true,
    storedPassword: async (db, email) => String((await db.sql('SELECT password FROM mailbox WHERE username = ?', [email]))[0]!.password),
  },
];

async function mx(srv: TestServer): Promise<SmtpClient> {
  const c = await SmtpClient.connect(srv.smtpPort, { timeoutMs: 30_000 });
  await c.greeting();
  await c.command('EHLO client.remote.example');
  return c;
}

function mysqlSection(db: TestDatabase, user: DatabaseUser, queries?: Record<string, string>) {
  return {
    host: testServer.host,
    port: testServer.port,
    user: user.user,
    password: user.password,
    database: db.name,
    ...(queries ? { queries } : {}),
  };
}

for (const schema of schemas) {
  describe(`drop-in: ${schema.name}, read by a SELECT-only user`, () => {
    let db: TestDatabase;
    let reader: DatabaseUser;
    let srv: TestServer;
    const hashes = new Map<string, string>();

    before(async () => {
      db = await createTestDatabase({ migrate: false });
      await schema.setup(db);
      reader = await createDatabaseUser(db, 'SELECT');
      for (const u of ['alice@example.test', 'bob@example.test']) hashes.set(u, await schema.storedPassword(db, u));
      srv = await startTestServer({
        config: {
          directory: { backend: 'mysql', mysql: mysqlSection(db, reader, schema.queries), cache: { positive_ttl: 0, negative_ttl: 0 } },
          ...(schema.rehash ? { passwords: { rehash: true } } : {}),
        },
      });
    });

    after(async () => {
      await srv?.stop();
      await reader?.drop();
      await db?.drop();
    });

    it('delivers on the MX port, and an alias with two destinations reaches both Maildirs', async () => {
      const c = await mx(srv);
      const direct = await c.sendMail('s@remote.example', ['alice@example.test'], simpleMessage('direct'));
      assert.equal(direct.rcpts[0]!.code, 250, direct.rcpts[0]!.lines.join(' | '));
      assert.equal(direct.final![0]!.code, 250);
      const team = await c.sendMail('s@remote.example', ['team@example.test'], simpleMessage('to the team'));
      assert.equal(team.rcpts[0]!.code, 250, team.rcpts[0]!.lines.join(' | '));
      assert.equal(team.final![0]!.code, 250);
      const unknown = await c.sendMail('s@remote.example', ['nobody@example.test'], simpleMessage('x'));
      assert.deepEqual([unknown.rcpts[0]!.code, unknown.rcpts[0]!.enhanced], [550, '5.1.1']);
      await c.quit();
      await srv.runtime.queue.idle();
      const alice = await srv.read('example.test/alice');
      const bob = await srv.read('example.test/bob');
      assert.equal(alice.length, 2);
      assert.ok(alice.some((m) => m.includes('Subject: direct')));
      assert.ok(alice.some((m) => m.includes('Subject: to the team')));
      assert.equal(bob.length, 1);
      assert.ok(bob[0]!.includes('Subject: to the team'));
    });

    it('logs in over IMAP, POP3 and submission with the stored hashes', async () => {
      const imap = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true, timeoutMs: 30_000 });
      await imap.greeting();
      const login = await imap.login('alice@example.test', 'alice-pw');
      assert.equal(login.status, 'OK', login.text);
      await imap.logout();
      const wrong = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true, timeoutMs: 30_000 });
      await wrong.greeting();
      assert.equal((await wrong.login('alice@example.test', 'not-her-password')).status, 'NO');
      await wrong.logout();

      const pop = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true, timeoutMs: 30_000 });
      await pop.greeting();
      const pass = await pop.login('bob@example.test', 'bob-pw');
      assert.ok(pass.ok, pass.line);
      await pop.quit();

      const sub = await SmtpClient.connect(srv.submissionsPort, { implicitTls: true, timeoutMs: 30_000 });
      await sub.greeting();
      await sub.command('EHLO client.example');
      const auth = await sub.command(`AUTH PLAIN ${Buffer.from('\0alice@example.test\0alice-pw').toString('base64')}`);
      assert.equal(auth.code, 235, auth.lines.join(' | '));
      await sub.quit();
    });

    it(
      schema.rehash
        ? 'with rehash on, logs that the SELECT-only user cannot store the new hash, and the logins work'
        : 'with rehash off, leaves the stored hashes alone',
      async () => {
        await srv.runtime.directory.rehashed();
        for (const [email, hash] of hashes) assert.equal(await schema.storedPassword(db, email), hash, `the stored hash of ${email}`);
        const failures = srv.logs.filter((l) => l.msg?.toString().startsWith('password rehash failed'));
        if (schema.rehash) {
          // Found at start already (the update query is prepared), and again at each login.
          assert.ok(srv.logs.some((l) => /update_password cannot run as maild_ro_.*UPDATE command denied/.test(String(l.msg))));
          assert.ok(failures.length > 0, 'a rehash was tried');
          assert.match(String(failures[0]!.err), /UPDATE command denied/);
        } else {
          assert.equal(failures.length, 0);
          assert.ok(!srv.logs.some((l) => l.msg === 'password rehashed'));
        }
      },
    );

    if (schema.extra) it('honours the rest of the schema', () => schema.extra!(srv, db));
  });
}

const cli = (config: string, args: string[]) => runCliProcess(['--config', config, ...args], { compiled: false });

describe('MySQL queries that cannot run, and SIGHUP', () => {
  let db: TestDatabase;
  let reader: DatabaseUser;
  let dir: string;

  before(async () => {
    db = await createTestDatabase({ migrate: false });
    await loadSqlFile(db, SCHEMA_WITHOUT_ENABLE);
    await insertVirtualRows(db);
    reader = await createDatabaseUser(db, 'SELECT');
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dropin-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await reader?.drop();
    await db?.drop();
  });

  async function configFile(name: string, mysql: Record<string, unknown>): Promise<string> {
    const file = path.join(dir, `${name}.yaml`);
    await writeFile(
      file,
      stringify({
        hostname: 'mx.test.example',
        user: 'root',
        data_dir: path.join(dir, 'data'),
        mail: { root: path.join(dir, 'mail') },
        listeners: [{ name: 'mx', protocol: 'smtp', address: '127.0.0.1', port: 0 }],
        directory: { backend: 'mysql', mysql: { connect_timeout: '2s', ...mysql } },
      }),
    );
    return file;
  }

  const broken = [
    [
      'user',
      "SELECT email, password, quota FROM virtual_users WHERE email = '%s'",
      /directory\.mysql\.queries\.user: Unknown column 'quota'/,
    ],
    [
      'alias',
      "SELECT destination FROM aliases WHERE source = '%s'",
      /directory\.mysql\.queries\.alias: Table '[^']*aliases' doesn't exist/,
    ],
  ] as const;

  it('the daemon refuses to start (exit 1), naming the query and the database message', async () => {
    for (const [key, query, message] of broken) {
      const d = spawnDaemon(['--config', await configFile(`start-${key}`, mysqlSection(db, reader, { [key]: query }))]);
      const ready = await d
        .waitLog((l) => l.msg === 'ready')
        .then(
          () => true,
          () => false,
        );
      if (ready) d.kill();
      const { code } = await d.exited;
      assert.ok(!ready, `started with a broken ${key} query`);
      assert.equal(code, 1, `exit code with a broken ${key} query`);
      assert.match(d.stderr(), message);
    }
  });

  it('check-config runs every query: exit 1 for one that cannot run, 75 when MySQL is unreachable, 0 with the defaults fitted to the tables', async () => {
    for (const [key, query, message] of broken) {
      const r = await cli(await configFile(`check-${key}`, mysqlSection(db, reader, { [key]: query })), ['check-config']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /configuration OK/);
    }
    const down = await cli(await configFile('check-down', { ...mysqlSection(db, reader), host: '127.0.0.1', port: 1 }), ['check-config']);
    assert.equal(down.code, 75, down.stderr);
    assert.match(down.stderr, /the MySQL queries could not be checked: cannot connect to MySQL as maild_ro_\w+@127\.0\.0\.1:1\//);
    const good = await cli(await configFile('check-good', mysqlSection(db, reader)), ['check-config']);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stderr, /queries\.user \(default\): SELECT email, password FROM virtual_users WHERE email = '%s': OK/);
    assert.match(good.stderr, /configuration OK/);
  });

  it('starts while MySQL is unreachable: 451 until it is back, then the default queries fit the tables', async () => {
    const proxy = await startProxy(testServer.port, testServer.host);
    await proxy.stop();
    const srv = await startTestServer({
      config: {
        directory: {
          backend: 'mysql',
          mysql: { ...mysqlSection(db, reader), host: '127.0.0.1', port: proxy.port, connect_timeout: '1s', query_timeout: '2s' },
          cache: { positive_ttl: 0, negative_ttl: 0 },
        },
      },
    });
    try {
      assert.ok(srv.logs.some((l) => String(l.msg).startsWith('MySQL unreachable, the queries are not checked')));
      const c = await mx(srv);
      assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
      const down = await c.command('RCPT TO:<alice@example.test>');
      assert.deepEqual([down.code, down.enhanced], [451, '4.3.0']);
      await c.quit();
      await proxy.resume();
      const c2 = await mx(srv);
      const r = await c2.sendMail('s@remote.example', ['alice@example.test'], simpleMessage('after the outage'));
      assert.equal(r.rcpts[0]!.code, 250, r.rcpts[0]!.lines.join(' | '));
      await c2.quit();
      const imap = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true, timeoutMs: 30_000 });
      await imap.greeting();
      assert.equal((await imap.login('alice@example.test', 'alice-pw')).status, 'OK');
      await imap.logout();
    } finally {
      await srv.stop();
      await proxy.close();
    }
  });

  it('on SIGHUP reads the columns again, and refuses a query that cannot run, keeping the running one', async () => {
    const srv = await startTestServer({
      config: { directory: { backend: 'mysql', mysql: mysqlSection(db, reader), cache: { positive_ttl: 0, negative_ttl: 0 } } },
    });
    try {
      const send = async (to: string, body = 'hello\n') => {
        const c = await mx(srv);
        const r = await c.sendMail('s@remote.example', [to], simpleMessage('reload', body));
        await c.quit();
        return r.final?.[0] ?? r.rcpts[0]!;
      };
      // The operator adds a quota column (as maild migrate does, as an admin user) and sets quotas.
      await db.sql('ALTER TABLE virtual_users ADD COLUMN quota BIGINT NOT NULL DEFAULT 0');
      await db.sql('UPDATE virtual_users SET quota = 1000');
      assert.equal((await send('alice@example.test', 'a'.repeat(2000))).code, 250, 'no quota before the reload');
      await srv.runtime.reload(srv.runtime.config);
      const over = await send('bob@example.test', 'b'.repeat(2000));
      assert.deepEqual([over.code, over.enhanced], [552, '5.2.2'], 'the quota column is read after the reload');

      const cfg = srv.runtime.config;
      const mysql = cfg.directory.mysql!;
      const next = {
        ...cfg,
        directory: {
          ...cfg.directory,
          mysql: { ...mysql, queries: { ...mysql.queries, user: "SELECT email, password, nope FROM virtual_users WHERE email = '%s'" } },
        },
      };
      await assert.rejects(srv.runtime.reload(next), /directory\.mysql\.queries\.user: Unknown column 'nope'/);
      assert.equal((await send('bob@example.test')).code, 250, 'the running queries stay');
      assert.equal(srv.runtime.config, cfg);
    } finally {
      await srv.stop();
    }
  });
});
