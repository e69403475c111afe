/**
 * DNS blocklists on the MX port at RCPT time, against a DNS server run by the test: a listed
 * client address is refused with the list's text, a listed sender domain (RHSBL) too, an
 * allowlisted client passes, an unlisted one is accepted, and a list that does not answer is
 * skipped rather than stopping mail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('DNS blocklists on the MX', () => {
  let dns: DnsServer;
  let srv: TestServer;

  before(async () => {
    dns = await startDnsServer({
      // 127.0.0.1 is listed with a reason; 127.0.0.3 too, but it is on the allowlist.
      '1.0.0.127.bl.test': { a: ['127.0.0.2'], txt: ['Listed: see https://bl.test/127.0.0.1'] },
      '3.0.0.127.bl.test': { a: ['127.0.0.2'] },
      '3.0.0.127.wl.test': { a: ['127.0.10.1'] },
      // 127.0.0.4 only gets an error code of the list (Spamhaus: a public resolver asked).
      '4.0.0.127.bl.test': { a: ['127.255.255.254'] },
      'spam.example.dbl.test': { a: ['127.0.1.2'] },
      // The third list never answers.
      'bl.test': {},
      '2.0.0.127.slow.test': { drop: true },
    });
    srv = await startTestServer({
      config: {
        dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '1s' },
        inbound: {
          authentication: { enabled: false },
          dnsbl: {
            lists: [{ zone: 'wl.test', allow: true }, { zone: 'bl.test' }, { zone: 'dbl.test', type: 'domain' }, { zone: 'slow.test' }],
          },
        },
      },
    });
  });
  after(async () => {
    await srv.stop();
    await dns.close();
  });

  async function rcpt(localAddress: string, from: string): Promise<{ code: number; enhanced?: string | undefined; text: string }> {
    const c = await SmtpClient.connect(srv.smtpPort, { localAddress });
    await c.greeting();
    await c.command('EHLO client.example');
    assert.equal((await c.command(`MAIL FROM:<${from}>`)).code, 250);
    const reply = await c.command('RCPT TO:<alice@example.test>');
    await c.command('QUIT');
    return reply;
  }

  it('refuses a listed client address at RCPT with 554 5.7.1 and the list’s text', async () => {
    const reply = await rcpt('127.0.0.1', 'someone@clean.example');
    assert.deepEqual([reply.code, reply.enhanced], [554, '5.7.1']);
    assert.match(reply.text, /client \[127\.0\.0\.1\] blocked using bl\.test; Listed: see https:\/\/bl\.test\/127\.0\.0\.1/);
  });

  it('accepts an unlisted client (the list that does not answer is skipped) and delivers', async () => {
    const reply = await rcpt('127.0.0.2', 'someone@clean.example');
    assert.equal(reply.code, 250, reply.text);
    const skipped = srv.logs.find((l) => l.msg === 'blocklists' && JSON.stringify(l.dnsbl_failed ?? '').includes('slow.test'));
    assert.ok(skipped, 'the silent list was skipped and logged');
    const c = await SmtpClient.connect(srv.smtpPort, { localAddress: '127.0.0.2' });
    await c.greeting();
    await c.command('EHLO client.example');
    const sent = await c.sendMail('someone@clean.example', ['alice@example.test'], simpleMessage('clean client'));
    assert.equal(sent.final![0]!.code, 250);
  });

  it('refuses a sender domain on a domain list (RHSBL)', async () => {
    const reply = await rcpt('127.0.0.2', 'offer@spam.example');
    assert.deepEqual([reply.code, reply.enhanced], [554, '5.7.1']);
    assert.match(reply.text, /spam\.example.*blocked using dbl\.test/);
  });

  it('lets an allowlisted client through although a blocklist lists it', async () => {
    const reply = await rcpt('127.0.0.3', 'someone@clean.example');
    assert.equal(reply.code, 250, reply.text);
  });

  it('ignores the list’s error codes (127.255.255.x) instead of refusing', async () => {
    const reply = await rcpt('127.0.0.4', 'someone@clean.example');
    assert.equal(reply.code, 250, reply.text);
  });
});
