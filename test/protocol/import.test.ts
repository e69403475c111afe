/**
 * `maild import` end to end: the real Postfix 3.7 + Dovecot 2.3 configuration
 * (test/fixtures/import/postfix-dovecot) pointed at a throwaway copy of its database, read by a
 * SELECT-only user; the generated maild.yaml runs the daemon, which then takes mail over SMTP
 * and over the LMTP socket Postfix delivered to, and logs the database's users in over IMAP and
 * submission. Only what this machine forces is changed in the generated file: ports (ephemeral),
 * socket paths, the mail root and the missing certificate files. Postfix's SASL socket (a
 * dovecot-auth listener) answers as Dovecot's did.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { runCliProcess } from '../helpers/cli.js';
import { ROOT, spawnDaemon, type Daemon } from '../helpers/daemon.js';
import { DovecotAuthTestClient } from '../helpers/dovecot-auth-client.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { connectAdmin, createTestDatabase, testServer, type TestDatabase } from '../helpers/mysql.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';

const FIXTURE = path.join(ROOT, 'test/fixtures/import/postfix-dovecot');

const run = runCliProcess;

describe('maild import, then maild on the imported configuration', () => {
  let db: TestDatabase;
  let dir: string;
  let daemon: Daemon;
  let generated: string;
  let importStderr: string;
  const dbUser = `maild_imp_${randomBytes(4).toString('hex')}`;
  const dbPassword = `pw-${randomBytes(8).toString('hex')}`;
  const hosts = ['127.0.0.1', 'localhost'];

  before(async () => {
    // The fixture's schema, in a throwaway database.
    db = await createTestDatabase({ migrate: false });
    const schema = await readFile(`${FIXTURE}/sql/schema.sql`, 'utf8');
    const tables = schema.slice(schema.indexOf('DROP TABLE'));
    for (const statement of tables.split(/;\s*\n/).map((s) => s.trim())) if (statement) await db.sql(statement);
    await db.sql(
      "INSERT INTO virtual_users (domain_id, email, password) VALUES (1, 'alice@example.test', ENCRYPT('alice-pw', '$6$importsalt$'))",
    );
    await db.sql("INSERT INTO virtual_users (domain_id, email, password, `enable`) VALUES (1, 'off@example.test', '{PLAIN}off-pw', 0)");
    await db.sql("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, 'team@example.test', 'alice@example.test')");
    // The tutorials' read-only database user.
    const admin = await connectAdmin();
    try {
      for (const host of hosts) {
        await admin.query(`CREATE USER '${dbUser}'@'${host}' IDENTIFIED BY '${dbPassword}'`);
        await admin.query(`GRANT SELECT ON \`${db.name}\`.* TO '${dbUser}'@'${host}'`);
      }
    } finally {
      await admin.end();
    }

    // A copy of the installation's configuration, its connection lines pointing at that database.
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-import-'));
    await cp(`${FIXTURE}/postfix`, `${dir}/postfix`, { recursive: true });
    await cp(`${FIXTURE}/dovecot`, `${dir}/dovecot`, { recursive: true });
    for (const name of await readdir(`${dir}/postfix`)) {
      if (!name.startsWith('mysql-')) continue;
      const file = `${dir}/postfix/${name}`;
      const text = (await readFile(file, 'utf8'))
        .replace(/^user = .*$/m, `user = ${dbUser}`)
        .replace(/^password = .*$/m, `password = ${dbPassword}`)
        .replace(/^hosts = .*$/m, `hosts = ${testServer.host}:${testServer.port}`)
        .replace(/^dbname = .*$/m, `dbname = ${db.name}`);
      await writeFile(file, text);
    }
    const sqlFile = `${dir}/dovecot/dovecot-sql.conf.ext`;
    await writeFile(
      sqlFile,
      (await readFile(sqlFile, 'utf8')).replace(
        /^connect = .*$/m,
        `connect = host=${testServer.host} port=${testServer.port} dbname=${db.name} user=${dbUser} password=${dbPassword}`,
      ),
    );

    const output = `${dir}/maild.yaml`;
    const r = await run(['import', '--postfix', `${dir}/postfix`, '--dovecot', `${dir}/dovecot`, '--output', output]);
    assert.equal(r.code, 0, r.stderr);
    importStderr = r.stderr;
    generated = await readFile(output, 'utf8');

    // What this machine forces: ephemeral ports, sockets and mail below the temporary directory,
    // a self-signed certificate (the fixture's files are not here).
    const cfg = parse(generated) as Record<string, unknown> & { listeners: Array<Record<string, unknown>> };
    cfg.listeners = cfg.listeners.map((l) => (l.path ? { ...l, path: `${dir}/${l.name}.sock` } : { ...l, port: 0 }));
    cfg.mail = { ...(cfg.mail as object), root: `${dir}/mail` };
    cfg.data_dir = `${dir}/data`;
    cfg.user = 'root'; // the suite runs as root and has no vmail account
    delete cfg.tls;
    const runnable = `${dir}/maild-test.yaml`;
    await writeFile(runnable, stringify(cfg));
    daemon = spawnDaemon(['--config', runnable], { compiled: true, env: { MAILD_DB_PASSWORD: dbPassword } });
    await daemon.waitLog((l) => l.msg === 'listening' && l.listener === 'pop3s');
    await daemon.waitLog((l) => l.msg === 'listening' && l.listener === 'lmtp');
    await daemon.waitLog((l) => l.msg === 'listening' && l.listener === 'dovecot-auth');
  });

  after(async () => {
    daemon?.kill();
    await daemon?.exited;
    if (dir) await rm(dir, { recursive: true, force: true });
    const admin = await connectAdmin().catch(() => undefined);
    if (admin) {
      for (const host of hosts) await admin.query(`DROP USER IF EXISTS '${dbUser}'@'${host}'`).catch(() => undefined);
      await admin.end();
    }
    await db?.drop();
  });

  it('writes the database, its queries and the listeners of the installation, the password left to the environment', () => {
    assert.ok(!generated.includes(dbPassword), 'no password in the file');
    assert.match(generated, /^ {4}password: \$\{MAILD_DB_PASSWORD\}$/m);
    assert.match(generated, new RegExp(`^ {4}database: ${db.name}$`, 'm'));
    // The Maildirs' owner (the static userdb's uid=vmail gid=vmail) is the account maild drops to.
    assert.match(generated, /^user: vmail\ngroup: vmail$/m);
    assert.match(generated, /^ {6}user: "SELECT email AS user, password FROM virtual_users WHERE email = '%s' AND `enable` = 1"$/m);
    assert.match(importStderr, /not carried over: login_trusted_networks/);
  });

  async function mx(): Promise<SmtpClient> {
    const c = await SmtpClient.connect(daemon.port('mx'));
    await c.greeting();
    await c.command('EHLO client.example');
    return c;
  }

  async function inbox(): Promise<string[]> {
    const newDir = `${dir}/mail/example.test/alice/new`;
    const names = await readdir(newDir).catch(() => [] as string[]);
    return Promise.all(names.map((n) => readFile(path.join(newDir, n), 'utf8')));
  }

  it('delivers over SMTP to the database’s users and aliases and refuses unknown and disabled ones', async () => {
    const c = await mx();
    const direct = await c.sendMail('sender@remote.example', ['alice@example.test'], simpleMessage('imported direct'));
    assert.equal(direct.final?.[0]?.code, 250);
    const alias = await c.sendMail('sender@remote.example', ['team@example.test'], simpleMessage('imported alias'));
    assert.equal(alias.final?.[0]?.code, 250);
    const refused = await c.sendMail('sender@remote.example', ['nobody@example.test', 'off@example.test'], simpleMessage('x'));
    assert.deepEqual(
      refused.rcpts.map((r) => [r.code, r.enhanced]),
      [
        [550, '5.1.1'],
        [550, '5.1.1'],
      ],
    );
    await c.quit();
    const messages = await inbox();
    assert.ok(messages.some((m) => m.includes('Subject: imported direct')));
    assert.ok(messages.some((m) => m.includes('Subject: imported alias')));
  });

  it('takes LMTP on the socket Dovecot listened on for Postfix', async () => {
    const c = await SmtpClient.connect(`${dir}/lmtp.sock`);
    await c.greeting();
    assert.equal((await c.command('LHLO mta.example')).code, 250);
    const r = await c.sendMail('sender@remote.example', ['alice+tag@example.test'], simpleMessage('imported lmtp'));
    assert.equal(r.final?.[0]?.code, 250);
    await c.quit();
    assert.ok((await inbox()).some((m) => m.includes('Subject: imported lmtp')));
  });

  it('logs the database’s users in over IMAP (SHA512-CRYPT hash) and refuses wrong and disabled ones', async () => {
    // auth.cleartext: trusted_networks (Dovecot had disable_plaintext_auth = no; mynetworks is 127.0.0.0/8).
    const c = await ImapTestClient.connect(daemon.port('imap'));
    await c.greeting();
    assert.equal((await c.login('alice@example.test', 'wrong')).status, 'NO');
    assert.equal((await c.login('off@example.test', 'off-pw')).status, 'NO');
    assert.equal((await c.login('alice@example.test', 'alice-pw')).status, 'OK');
    const select = await c.cmd('SELECT INBOX');
    assert.equal(select.status, 'OK');
    const exists = select.untagged.find((u) => / EXISTS$/.test(u));
    assert.ok(exists && Number(exists.split(' ')[0]) >= 2, `EXISTS: ${exists}`);
    await c.logout();

    const tls = await ImapTestClient.connect(daemon.port('imaps'), { implicitTls: true });
    await tls.greeting();
    assert.equal((await tls.login('alice@example.test', 'alice-pw')).status, 'OK');
    await tls.logout();
  });

  it('takes AUTH on the imported submission listener after STARTTLS', async () => {
    const c = await SmtpClient.connect(daemon.port('submission'));
    await c.greeting();
    await c.command('EHLO client.example');
    assert.equal((await c.startTls()).code, 220);
    await c.command('EHLO client.example');
    const auth = await c.command(`AUTH PLAIN ${Buffer.from('\0alice@example.test\0alice-pw').toString('base64')}`);
    assert.equal(auth.code, 235);
    await c.quit();
  });

  it('checks passwords for Postfix on the SASL socket it used (smtpd_sasl_type = dovecot)', async () => {
    const { client, handshake } = await DovecotAuthTestClient.open(`${dir}/dovecot-auth.sock`);
    assert.ok(handshake.includes('MECH\tPLAIN\tplaintext'), handshake.join('\n'));
    const resp = (pass: string) => Buffer.from(`\0alice@example.test\0${pass}`).toString('base64');
    const params = 'service=smtp\tsecured\tlip=127.0.0.1\trip=127.0.0.1';
    assert.deepEqual(await client.request(`AUTH\t1\tPLAIN\t${params}\tresp=${resp('alice-pw')}`), ['OK', '1', 'user=alice@example.test']);
    const fail = await client.request(`AUTH\t2\tPLAIN\t${params}\tresp=${resp('wrong')}`);
    assert.deepEqual(fail.slice(0, 2), ['FAIL', '2']);
  });
});
