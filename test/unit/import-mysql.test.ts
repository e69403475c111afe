/**
 * The queries `maild import` writes for the 2008 tutorial and for PostfixAdmin, run by maild's
 * MySQL directory against those schemas on the real MariaDB: every query prepares (tables and
 * columns exist), and domains, mailboxes, quotas, aliases, alias domains, transports and the
 * tutorials' password hashes come out as Postfix and Dovecot saw them.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { diskFiles } from '../../src/cli/import/files.js';
import { generateConfig } from '../../src/cli/import/generate.js';
import { Directory } from '../../src/directory/directory.js';
import { MysqlDirectory } from '../../src/directory/mysql-backend.js';
import { PasswordService } from '../../src/directory/passwords/index.js';
import { silentLogger } from '../../src/log.js';
import { ROOT } from '../helpers/daemon.js';
import { createTestDatabase, testServer, type TestDatabase } from '../helpers/mysql.js';

const FIXTURES = path.join(ROOT, 'test/fixtures/import');

/**
 * Registers before/after hooks: a throwaway database filled by `fill`, and maild's directory on
 * it with the fixture's generated configuration (its connection pointed at the test database).
 */
function importedDirectory(fixture: string, fill: (db: TestDatabase, passwords: PasswordService) => Promise<void>): () => Directory {
  let db: TestDatabase;
  let passwords: PasswordService;
  let backend: MysqlDirectory;
  let directory: Directory;
  after(async () => {
    await backend?.close();
    await passwords?.close();
    await db?.drop();
  });
  before(async () => {
    db = await createTestDatabase({ migrate: false });
    passwords = new PasswordService({ threads: 1 });
    await fill(db, passwords);
    const { yaml } = generateConfig({
      postfixDir: `${FIXTURES}/${fixture}/postfix`,
      dovecotDir: `${FIXTURES}/${fixture}/dovecot`,
      files: diskFiles,
    });
    const config = parseConfig(yaml, '/etc/maild/maild.yaml', { MAILD_DB_PASSWORD: testServer.password });
    const mysql = { ...config.directory.mysql!, host: testServer.host, port: testServer.port, user: testServer.user, database: db.name };
    delete mysql.socket;
    backend = await MysqlDirectory.open(mysql, { logger: silentLogger, verify: true });
    // Uncached, as `maild lookup` reads it.
    const cache = { positiveTtlMs: 0, negativeTtlMs: 0, maxEntries: 0 };
    directory = new Directory(backend, {
      recipientDelimiter: config.directory.recipient_delimiter,
      cache,
      passwords,
      logger: silentLogger,
    });
  });
  return () => directory;
}

describe('imported queries on the 2008 tutorial schema', () => {
  const directory = importedDirectory('tutorial-2008', async (db) => {
    await db.sql('CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain))');
    await db.sql('CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL, PRIMARY KEY (source))');
    await db.sql(
      "CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL, quota INT(10) DEFAULT '10485760', PRIMARY KEY (email))",
    );
    await db.sql(
      "CREATE TABLE transport (domain varchar(128) NOT NULL default '', transport varchar(128) NOT NULL default '', UNIQUE KEY domain (domain))",
    );
    await db.sql("INSERT INTO domains VALUES ('example.com')");
    // The tutorial's INSERT: MySQL's ENCRYPT() without a salt, a DES crypt hash.
    await db.sql("INSERT INTO users (email, password) VALUES ('sales@example.com', ENCRYPT('secret'))");
    await db.sql("INSERT INTO forwardings VALUES ('info@example.com', 'sales@example.com'), ('@example.com', 'sales@example.com')");
    await db.sql("INSERT INTO transport VALUES ('example.org', 'smtp:[mail.example.org]')");
  });

  it('resolves domains, mailboxes, forwardings and the catch-all, and reads the transport table', async () => {
    assert.equal(await directory().isLocalDomain('example.com'), true);
    assert.equal(await directory().isLocalDomain('example.net'), false);
    const mailboxes = async (address: string) => (await directory().resolve(address)).mailboxes.map((m) => m.email);
    assert.deepEqual(await mailboxes('sales@example.com'), ['sales@example.com']);
    assert.deepEqual(await mailboxes('info@example.com'), ['sales@example.com']);
    assert.deepEqual(await mailboxes('sales+tag@example.com'), ['sales@example.com']);
    assert.deepEqual(await mailboxes('anyone@example.com'), ['sales@example.com'], 'the catch-all');
    assert.equal(await directory().transportFor('example.org'), 'smtp:[mail.example.org]');
  });

  it('verifies the ENCRYPT() hashes with default_pass_scheme = CRYPT', async () => {
    assert.equal((await directory().authenticate('sales@example.com', 'secret')).ok, true);
    assert.equal((await directory().authenticate('sales@example.com', 'wrong')).ok, false);
  });
});

describe('imported queries on the PostfixAdmin schema', () => {
  const directory = importedDirectory('postfixadmin', async (db, passwords) => {
    const flags = "active tinyint(1) NOT NULL DEFAULT 1, created datetime NOT NULL DEFAULT '2000-01-01 00:00:00'";
    await db.sql(`CREATE TABLE domain (domain varchar(255) PRIMARY KEY, backupmx tinyint(1) NOT NULL DEFAULT 0, ${flags})`);
    await db.sql(
      `CREATE TABLE mailbox (username varchar(255) PRIMARY KEY, password varchar(255) NOT NULL, maildir varchar(255) NOT NULL, quota bigint NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL, domain varchar(255) NOT NULL, ${flags})`,
    );
    await db.sql(`CREATE TABLE alias (address varchar(255) PRIMARY KEY, goto text NOT NULL, domain varchar(255) NOT NULL, ${flags})`);
    await db.sql(`CREATE TABLE alias_domain (alias_domain varchar(255) PRIMARY KEY, target_domain varchar(255) NOT NULL, ${flags})`);
    const hash = await passwords.hash('pfa secret', 'SHA512-CRYPT');
    // PostfixAdmin's md5crypt, stored without a prefix: "password" (openssl passwd -1 -salt saltsalt password).
    const md5 = '$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/';
    await db.sql("INSERT INTO domain (domain) VALUES ('example.org'), ('off.example')");
    await db.sql("UPDATE domain SET active = 0 WHERE domain = 'off.example'");
    await db.sql("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('example.net', 'example.org')");
    await db.sql(
      "INSERT INTO mailbox (username, password, maildir, quota, local_part, domain, active) VALUES ('alice@example.org', ?, 'example.org/alice/', 2097152, 'alice', 'example.org', 1), ('bob@example.org', ?, 'example.org/bob/', 0, 'bob', 'example.org', 0), ('carol@example.org', ?, 'example.org/carol/', 0, 'carol', 'example.org', 1)",
      [hash, md5, md5],
    );
    await db.sql(
      "INSERT INTO alias (address, goto, domain) VALUES ('alice@example.org', 'alice@example.org', 'example.org'), ('team@example.org', 'alice@example.org,friend@remote.example', 'example.org')",
    );
  });

  it('resolves active domains, alias domains, mailboxes with their quota in bytes, and comma-separated aliases', async () => {
    assert.equal(await directory().isLocalDomain('example.org'), true);
    assert.equal(await directory().isLocalDomain('example.net'), true, 'alias domain');
    assert.equal(await directory().isLocalDomain('off.example'), false, 'inactive domain');
    const alice = await directory().resolve('alice@example.net');
    assert.deepEqual(
      alice.mailboxes.map((m) => [m.email, m.quotaBytes]),
      [['alice@example.org', 2_097_152]],
    );
    const team = await directory().resolve('team@example.org');
    assert.deepEqual([team.mailboxes.map((m) => m.email), [...team.remote]], [['alice@example.org'], ['friend@remote.example']]);
    await assert.rejects(
      directory().resolve('bob@example.org'),
      { code: 'RECIPIENT_NOT_FOUND' },
      'inactive mailbox: unknown, as in Postfix',
    );
  });

  it('logs in with the stored hashes and refuses inactive mailboxes', async () => {
    assert.equal((await directory().authenticate('alice@example.org', 'pfa secret')).ok, true);
    assert.equal((await directory().authenticate('alice@example.org', 'nope')).ok, false);
    assert.equal((await directory().authenticate('carol@example.org', 'password')).ok, true, 'MD5-CRYPT');
    assert.equal((await directory().authenticate('bob@example.org', 'password')).ok, false, 'inactive');
  });
});
