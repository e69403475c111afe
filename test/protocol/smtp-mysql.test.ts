/**
 * The MX listener on the MySQL directory (a throwaway database on the real MariaDB), with the
 * database going away and coming back: 451 4.3.0 while it is down, never 550, and mail flows
 * again once it is back, without a restart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, testServer, type TestDatabase } from '../helpers/mysql.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { start as startProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

describe('SMTP on the MySQL directory', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let srv: TestServer;

  before(async () => {
    db = await createTestDatabase();
    // The tutorials' rows, as an operator's existing database has them.
    await db.sql("INSERT INTO virtual_domains (name) VALUES ('example.test'), ('alias.example')");
    await db.sql(
      "INSERT INTO virtual_users (domain_id, email, password) SELECT id, 'alice@example.test', ENCRYPT('alice-pw', CONCAT('$6$', 'somesalt')) FROM virtual_domains WHERE name = 'example.test'",
    );
    await db.sql(
      "INSERT INTO virtual_users (domain_id, email, password, quota) SELECT id, 'bob@example.test', '{PLAIN}x', 1500 FROM virtual_domains WHERE name = 'example.test'",
    );
    await db.sql(
      "INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'all@example.test', 'alice@example.test' FROM virtual_domains WHERE name = 'example.test'",
    );
    await db.sql(
      "INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'all@example.test', 'bob@example.test' FROM virtual_domains WHERE name = 'example.test'",
    );
    await db.sql(
      "INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, '@alias.example', '@example.test' FROM virtual_domains WHERE name = 'alias.example'",
    );
    proxy = await startProxy(testServer.port, testServer.host);
    srv = await startTestServer({
      config: {
        directory: {
          backend: 'mysql',
          mysql: { ...db.config, host: '127.0.0.1', port: proxy.port, connect_timeout: '1s', query_timeout: '2s', queries: undefined },
          cache: { positive_ttl: 0, negative_ttl: 0 },
        },
      },
    });
  });

  after(async () => {
    await srv?.stop();
    await proxy?.close();
    await db?.drop();
  });

  async function session(): Promise<SmtpClient> {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command('EHLO client.remote.example');
    return c;
  }

  it('delivers to users, aliases and alias domains of the tutorial schema', async () => {
    const c = await session();
    assert.equal((await c.sendMail('s@remote.example', ['alice@example.test'], simpleMessage('mysql direct'))).final![0]!.code, 250);
    assert.equal((await c.sendMail('s@remote.example', ['all@example.test'], simpleMessage('mysql alias'))).final![0]!.code, 250);
    assert.equal(
      (await c.sendMail('s@remote.example', ['alice+tag@alias.example'], simpleMessage('mysql alias domain'))).final![0]!.code,
      250,
    );
    const unknown = await c.sendMail('s@remote.example', ['nobody@example.test'], simpleMessage('x'));
    assert.deepEqual([unknown.rcpts[0]!.code, unknown.rcpts[0]!.enhanced], [550, '5.1.1']);
    await c.quit();
    // all@ includes bob, who has a quota: that message is delivered per mailbox from the queue, just after its 250.
    await srv.runtime.queue.idle();
    assert.equal((await srv.messages('example.test/alice')).length, 3);
    assert.equal((await srv.messages('example.test/bob')).length, 1);
  });

  it('answers 451 4.3.0 while the database is down, for known and unknown users alike, and recovers', async () => {
    await proxy.stop();
    try {
      const c = await session();
      assert.equal((await c.command('MAIL FROM:<s@remote.example>')).code, 250);
      for (const rcpt of ['alice@example.test', 'nobody@example.test', 'someone@remote.example']) {
        const started = Date.now();
        const r = await c.command(`RCPT TO:<${rcpt}>`);
        assert.deepEqual([r.code, r.enhanced], [451, '4.3.0'], `${rcpt} while the database is down: ${r.lines.join(' | ')}`);
        assert.ok(Date.now() - started < 8000, 'the refusal comes within the lookup timeouts');
      }
      await c.quit();
      assert.ok(srv.logs.some((l) => l.msg === 'recipient refused' && String(l.reply).startsWith('451')));
    } finally {
      await proxy.resume();
    }
    const c = await session();
    const res = await c.sendMail('s@remote.example', ['alice@example.test'], simpleMessage('after the outage'));
    assert.equal(res.rcpts[0]!.code, 250);
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    assert.ok((await srv.read('example.test/alice')).some((m) => m.includes('Subject: after the outage')));
  });

  it('applies the per-user quota column', async () => {
    const c = await session();
    const res = await c.sendMail('s@remote.example', ['bob@example.test'], simpleMessage('too big for bob', 'q'.repeat(2000)));
    assert.deepEqual([res.final![0]!.code, res.final![0]!.enhanced], [552, '5.2.2']);
    await c.quit();
  });
});
