/**
 * passwords.rehash over the wire: a login with a weaker stored hash (SHA512-CRYPT from doveadm or
 * MariaDB's ENCRYPT()) stores the password as argon2id, and the password still works; a failed
 * update is logged and the login succeeds; with rehash off nothing changes. On the YAML directory
 * (rewritten atomically, comments kept) and on MySQL with a user allowed to UPDATE, where
 * Dovecot's `doveadm pw -t` verifies the stored hash as well.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { PasswordService } from '../../src/directory/passwords/index.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { createDatabaseUser, createTestDatabase, testServer, type DatabaseUser, type TestDatabase } from '../helpers/mysql.js';
import { Pop3TestClient } from '../helpers/pop3-client.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** doveadm pw -s SHA512-CRYPT -p secret (test/fixtures/passwords.json). */
const DOVEADM_SHA512 =
  '{SHA512-CRYPT}$6$TNxAYW0fpeVov9Wh$X3t4iAxIC97gLf7QNhz2fzUBYTtAxMaQt4c4C7tHtLZDyfsga4ISIilococGkmkRxwujV.Eg26.BDVj1fwdwN/';
const NEW_HASH = /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$/;

async function imapLogin(srv: TestServer, user: string, pass: string): Promise<string> {
  const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true, timeoutMs: 30_000 });
  await c.greeting();
  const r = await c.login(user, pass);
  await c.logout();
  return r.status;
}

async function submissionAuth(srv: TestServer, user: string, pass: string): Promise<number> {
  const c = await SmtpClient.connect(srv.submissionsPort, { implicitTls: true, timeoutMs: 30_000 });
  await c.greeting();
  await c.command('EHLO client.example');
  const r = await c.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`);
  await c.quit();
  return r.code;
}

async function pop3Login(srv: TestServer, user: string, pass: string): Promise<boolean> {
  const c = await Pop3TestClient.connect(srv.pop3sPort, { implicitTls: true, timeoutMs: 30_000 });
  await c.greeting();
  const r = await c.login(user, pass);
  await c.quit();
  return r.ok;
}

/** The running configuration with passwords.rehash set, as a SIGHUP with the edited file would load it. */
function withRehash(srv: TestServer, rehash: boolean) {
  const cfg = srv.runtime.config;
  return { ...cfg, passwords: { ...cfg.passwords, rehash } };
}

const passwords = new PasswordService({ threads: 1 });
after(() => passwords.close());

describe('rehash on login, YAML directory', () => {
  let srv: TestServer;
  let file: string;

  before(async () => {
    srv = await startTestServer({
      directory: `# The site's mailboxes. This comment stays.
domains:
  - example.test
users:
  # alice came over from Dovecot
  alice@example.test:
    password: "${DOVEADM_SHA512}"   # doveadm pw -s SHA512-CRYPT
  bob@example.test: { password: "{PLAIN}bob-pw" }
`,
      config: { passwords: { rehash: true } },
    });
    file = path.join(srv.dir, 'directory.yaml');
  });

  after(() => srv?.stop());

  it('stores a SHA512-CRYPT password as argon2id after an IMAP login, keeping the comments, and the password still works', async () => {
    assert.equal(await imapLogin(srv, 'alice@example.test', 'secret'), 'OK');
    // The reply does not wait for the rehash; the test does.
    await srv.runtime.directory.rehashed();
    const text = await readFile(file, 'utf8');
    const stored = String((parse(text) as { users: Record<string, { password: string }> }).users['alice@example.test']!.password);
    assert.match(stored, NEW_HASH, text);
    assert.equal((await passwords.verify(stored, 'secret')).ok, true);
    assert.match(text, /# The site's mailboxes\. This comment stays\./);
    assert.match(text, /# alice came over from Dovecot/);
    assert.ok(srv.logs.some((l) => l.msg === 'password rehashed' && l.user === 'alice@example.test' && l.from === 'SHA512-CRYPT'));
    assert.equal(await submissionAuth(srv, 'alice@example.test', 'secret'), 235);
    assert.equal(await imapLogin(srv, 'alice@example.test', 'wrong'), 'NO');
  });

  it('with rehash off (SIGHUP), leaves the file alone', async () => {
    await srv.runtime.reload(withRehash(srv, false));
    const before = await readFile(file, 'utf8');
    assert.equal(await imapLogin(srv, 'bob@example.test', 'bob-pw'), 'OK');
    await srv.runtime.directory.rehashed();
    assert.equal(await readFile(file, 'utf8'), before);
    assert.ok(!srv.logs.some((l) => l.msg === 'password rehashed' && l.user === 'bob@example.test'));
  });
});

describe('rehash on login, MySQL with a user allowed to UPDATE', () => {
  let db: TestDatabase;
  let writer: DatabaseUser;
  let srv: TestServer;
  const stored = async (email: string) =>
    String((await db.sql('SELECT password FROM virtual_users WHERE email = ?', [email]))[0]!.password);

  before(async () => {
    db = await createTestDatabase();
    await db.sql("INSERT INTO virtual_domains (id, name) VALUES (1, 'example.test')");
    for (const [user, pw] of [
      ['alice', 'alice-pw'],
      ['carol', 'carol-pw'],
      ['dave', 'dave-pw'],
    ]) {
      // The tutorials' way: SHA512-CRYPT made by MariaDB.
      await db.sql(
        "INSERT INTO virtual_users (domain_id, email, password) VALUES (1, ?, ENCRYPT(?, CONCAT('$6$', SUBSTRING(SHA(RAND()), -16))))",
        [`${user}@example.test`, pw],
      );
    }
    writer = await createDatabaseUser(db, 'SELECT, UPDATE');
    srv = await startTestServer({
      config: {
        directory: {
          backend: 'mysql',
          mysql: { host: testServer.host, port: testServer.port, user: writer.user, password: writer.password, database: db.name },
          cache: { positive_ttl: 0, negative_ttl: 0 },
        },
        passwords: { rehash: true },
      },
    });
  });

  after(async () => {
    await srv?.stop();
    await writer?.drop();
    await db?.drop();
  });

  it("rolls back and logs when the column is too narrow (the tutorial's VARCHAR(106)); the login succeeds", async () => {
    const before = await stored('carol@example.test');
    await db.sql('ALTER TABLE virtual_users MODIFY password VARCHAR(106) NOT NULL');
    assert.equal(await pop3Login(srv, 'carol@example.test', 'carol-pw'), true);
    await srv.runtime.directory.rehashed();
    assert.equal(await stored('carol@example.test'), before);
    const failed = srv.logs.find((l) => String(l.msg).startsWith('password rehash failed') && l.user === 'carol@example.test');
    assert.ok(failed, 'the failed update is logged');
    assert.match(String(failed.err), /Data too long|wide enough/);
    assert.equal(await pop3Login(srv, 'carol@example.test', 'carol-pw'), true);
    await db.sql('ALTER TABLE virtual_users MODIFY password VARCHAR(255) NOT NULL');
  });

  it('stores the password as argon2id after an IMAP login, and it still works', async () => {
    assert.match(await stored('alice@example.test'), /^\$6\$/);
    assert.equal(await imapLogin(srv, 'alice@example.test', 'alice-pw'), 'OK');
    await srv.runtime.directory.rehashed();
    const now = await stored('alice@example.test');
    assert.match(now, NEW_HASH);
    assert.equal((await passwords.verify(now, 'alice-pw')).ok, true);
    // A Dovecot still reading the same table verifies it too.
    const { stdout } = await promisify(execFile)('doveadm', ['pw', '-t', now, '-p', 'alice-pw']);
    assert.match(stdout, /\(verified\)/);
    assert.equal(await submissionAuth(srv, 'alice@example.test', 'alice-pw'), 235);
    assert.equal(await submissionAuth(srv, 'alice@example.test', 'wrong'), 535);
  });

  it('with rehash off (SIGHUP), leaves the stored hash alone', async () => {
    await srv.runtime.reload(withRehash(srv, false));
    const before = await stored('dave@example.test');
    assert.equal(await imapLogin(srv, 'dave@example.test', 'dave-pw'), 'OK');
    await srv.runtime.directory.rehashed();
    assert.equal(await stored('dave@example.test'), before);
    assert.ok(!srv.logs.some((l) => l.user === 'dave@example.test' && String(l.msg).startsWith('password rehash')));
  });
});
