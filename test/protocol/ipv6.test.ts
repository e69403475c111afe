/**
 * IPv6: listeners on several addresses (127.0.0.1 and ::1, one port), SMTP and IMAP answering on
 * both; the IPv6 client address in the Received header (RFC 5321 section 4.1.3 "IPv6:" literal)
 * and in the logs; trusted_networks with an IPv6 range deciding relay.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImapTestClient } from '../helpers/imap-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';

describe('IPv6 listeners', () => {
  let srv: TestServer;
  const both = ['127.0.0.1', '::1'];
  before(async () => {
    srv = await startTestServer({
      config: {
        listeners: [
          { name: 'mx', protocol: 'smtp', address: both, port: 0 },
          { name: 'imap', protocol: 'imap', address: both, port: 0, tls: 'starttls' },
          { name: 'mx6', protocol: 'smtp', address: '::1', port: 0 },
        ],
        trusted_networks: ['::1/128'],
        auth: { failure_delay: '10ms', failure_delay_max: '40ms' },
      },
    });
  });
  after(async () => {
    await srv.stop();
  });

  it('answers SMTP on both addresses of one listener, on one port', async () => {
    const port = srv.runtime.portOf('mx');
    for (const host of both) {
      const c = await SmtpClient.connect(port, { host });
      assert.equal((await c.greeting()).code, 220, `greeting on ${host}`);
      await c.quit();
    }
  });

  it('writes the IPv6 client as an IPv6 address literal in Received, and logs it', async () => {
    const c = await SmtpClient.connect(srv.runtime.portOf('mx6'), { host: '::1' });
    await c.greeting();
    await c.command('EHLO client6.example');
    const res = await c.sendMail('sender@remote.example', ['bob@example.test'], simpleMessage('over IPv6'));
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    const files = await srv.messages('example.test/bob');
    assert.equal(files.length, 1);
    const text = await readFile(path.join(srv.mailRoot, 'example.test/bob', files[0]!), 'latin1');
    assert.match(text, /^Received: from client6\.example \(unknown \[IPv6:::1\]\)$/m);
    assert.ok(
      srv.logs.some((l) => l.msg === 'connect' && l.listener === 'mx6' && l.ip === '::1'),
      'the connect line names the IPv6 client',
    );
  });

  it('lets a client in an IPv6 trusted_networks range relay, and no one else', async () => {
    const port = srv.runtime.portOf('mx');
    const trusted = await SmtpClient.connect(port, { host: '::1' });
    await trusted.greeting();
    await trusted.command('EHLO client6.example');
    assert.equal((await trusted.command('MAIL FROM:<sender@example.test>')).code, 250);
    const relayed = await trusted.command('RCPT TO:<someone@remote.example>');
    assert.equal(relayed.code, 250, `::1 is in ::1/128: ${relayed.lines.join(' | ')}`);
    await trusted.command('RSET');
    await trusted.quit();

    const outsider = await SmtpClient.connect(port, { host: '127.0.0.1' });
    await outsider.greeting();
    await outsider.command('EHLO client4.example');
    await outsider.command('MAIL FROM:<sender@example.test>');
    const refused = await outsider.command('RCPT TO:<someone@remote.example>');
    assert.deepEqual([refused.code, refused.enhanced], [554, '5.7.1']);
    await outsider.quit();
  });

  it('answers IMAP on both addresses and logs the IPv6 client of a session and its failed login', async () => {
    const port = srv.runtime.portOf('imap');
    const v4 = await ImapTestClient.connect(port, { host: '127.0.0.1' });
    assert.match(await v4.greeting(), /^\* OK /);
    await v4.logout();
    const v6 = await ImapTestClient.connect(port, { host: '::1' });
    assert.match(await v6.greeting(), /^\* OK /);
    await v6.startTls();
    const failed = await v6.login('alice@example.test', 'wrong');
    assert.equal(failed.status, 'NO');
    await v6.logout();
    assert.ok(srv.logs.some((l) => l.msg === 'imap connect' && l.listener === 'imap' && l.ip === '::1'));
    assert.ok(srv.logs.some((l) => l.msg === 'login failed' && l.protocol === 'imap' && l.ip === '::1'));
  });
});
