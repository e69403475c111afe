/**
 * PostfixAdmin's out-of-office replies on its own tables, read by a SELECT-only user: a mailbox
 * with an active vacation row answers a sender once (interval_time 0), with the row's subject
 * and body from the null sender; a row whose activeuntil has passed answers nobody.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDatabaseUser, createTestDatabase, testServer, type DatabaseUser, type TestDatabase } from '../helpers/mysql.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

describe("PostfixAdmin's vacation table", () => {
  let db: TestDatabase;
  let reader: DatabaseUser;
  let dns: DnsServer;
  let sink: SmtpSink;
  let srv: TestServer;

  before(async () => {
    db = await createTestDatabase({ migrate: false });
    await db.sql(`CREATE TABLE domain (domain varchar(255) NOT NULL, backupmx tinyint(1) NOT NULL DEFAULT 0,
      active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (domain)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    await db.sql(`CREATE TABLE mailbox (username varchar(255) NOT NULL, password varchar(255) NOT NULL,
      maildir varchar(255) NOT NULL, quota bigint(20) NOT NULL DEFAULT 0, local_part varchar(255) NOT NULL,
      domain varchar(255) NOT NULL, active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (username)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    await db.sql(`CREATE TABLE alias (address varchar(255) NOT NULL, goto text NOT NULL, domain varchar(255) NOT NULL,
      active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (address)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    // PostfixAdmin 3.x's vacation table.
    await db.sql(`CREATE TABLE vacation (email varchar(255) NOT NULL, subject varchar(255) NOT NULL, body text NOT NULL,
      activefrom timestamp NOT NULL DEFAULT '2000-01-01 00:00:00', activeuntil timestamp NOT NULL DEFAULT '2038-01-18 00:00:00',
      cache text NOT NULL DEFAULT '', domain varchar(255) NOT NULL, interval_time int(11) NOT NULL DEFAULT 0,
      created datetime NOT NULL DEFAULT '2000-01-01 00:00:00', modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
      active tinyint(1) NOT NULL DEFAULT 1, PRIMARY KEY (email)) ENGINE=InnoDB DEFAULT CHARSET=utf8`);
    await db.sql("INSERT INTO domain (domain) VALUES ('example.test')");
    for (const local of ['alice', 'bob']) {
      await db.sql("INSERT INTO mailbox (username, password, maildir, local_part, domain) VALUES (?, '{PLAIN}x', ?, ?, 'example.test')", [
        `${local}@example.test`,
        `example.test/${local}/`,
        local,
      ]);
    }
    await db.sql(
      "INSERT INTO vacation (email, subject, body, domain) VALUES ('alice@example.test', 'Out of office', 'Back on Monday.', 'example.test')",
    );
    await db.sql(
      "INSERT INTO vacation (email, subject, body, domain, activeuntil) VALUES ('bob@example.test', 'Old', 'Was away.', 'example.test', '2020-01-01 00:00:00')",
    );
    reader = await createDatabaseUser(db, 'SELECT');
    dns = await startDnsServer({
      'remote.example': { mx: [{ preference: 10, exchange: 'mx.remote.example' }] },
      'mx.remote.example': { a: ['127.0.0.1'] },
    });
    sink = await startSmtpSink();
    srv = await startTestServer({
      config: {
        directory: {
          backend: 'mysql',
          cache: { positive_ttl: 0, negative_ttl: 0 },
          mysql: {
            host: testServer.host,
            port: testServer.port,
            user: reader.user,
            password: reader.password,
            database: db.name,
            queries: {
              domain: "SELECT domain FROM domain WHERE domain = '%s' AND active = '1' AND backupmx = '0'",
              user: "SELECT username, password, quota, maildir, active FROM mailbox WHERE username = '%s'",
              alias: "SELECT goto FROM alias WHERE address = '%s' AND active = '1'",
              vacation: "SELECT subject, body, activefrom, activeuntil, interval_time FROM vacation WHERE email = '%s' AND active = 1",
            },
          },
        },
        dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '1s' },
        queue: { mx_port: sink.port, tls: 'none' },
      },
    });
  });
  after(async () => {
    await srv?.stop();
    await sink?.close();
    await dns?.close();
    await db?.drop();
  });

  async function send(to: string, subject: string) {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO client.remote.example');
    const text = `From: <friend@remote.example>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@remote.example>\r\n\r\nHi.\r\n`;
    const result = await c.sendMail('friend@remote.example', [to], text);
    await c.command('QUIT');
    return result.final![0]!;
  }

  it("answers once per sender with the row's subject and body, and not after activeuntil", async () => {
    assert.equal((await send('alice@example.test', 'first')).code, 250);
    const [reply] = await sink.waitForMessages(1, 15_000);
    assert.equal(reply!.from, '');
    assert.deepEqual(reply!.to, ['friend@remote.example']);
    const text = reply!.data.toString('latin1');
    assert.match(text, /^Subject: Out of office/m);
    assert.match(text, /^Auto-Submitted: auto-replied/m);
    assert.match(text, /Back on Monday\./);
    assert.equal((await send('alice@example.test', 'second')).code, 250);
    assert.equal((await send('bob@example.test', 'to-bob')).code, 250);
    await waitFor(
      () =>
        srv.logs.some((l) => l.msg === 'vacation: already answered in this period') &&
        srv.logs.filter((l) => l.msg === 'delivered').length >= 3,
      10_000,
      'the later deliveries',
    );
    assert.equal(sink.messages.length, 1, 'one reply in all');
  });
});
