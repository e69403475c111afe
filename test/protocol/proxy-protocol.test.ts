/**
 * PROXY protocol on the wire: a hand-written sender on 127.0.0.3 (the only address in
 * proxy_networks) speaks for clients elsewhere. The client address of the header is the one
 * in Received, the logs, relay decisions (trusted_networks), per-address connection limits
 * and failed-login counts; LOCAL means the proxy itself; anyone else, and anything but a valid
 * header, is closed before a greeting. Implicit TLS starts after the header.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { openSocket } from '../helpers/connect.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';

const PROXY = '127.0.0.3';

describe('PROXY protocol listeners', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      config: {
        listeners: [
          { name: 'mx', protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'starttls', proxy_protocol: true },
          { name: 'imap', protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls', proxy_protocol: true },
          { name: 'imaps', protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit', proxy_protocol: true },
          { name: 'pop3s', protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'implicit', proxy_protocol: true },
          { name: 'direct', protocol: 'smtp', address: '127.0.0.1', port: 0 },
        ],
        proxy_networks: [`${PROXY}/32`],
        trusted_networks: ['198.51.100.0/24'],
        auth: { failure_delay: '10ms', failure_delay_max: '40ms' },
        limits: { message_size: '1M', idle_timeout: '30s', connections_per_ip: 2 },
      },
    });
  });
  after(async () => {
    await srv.stop();
  });

  const port = (name: string) => srv.runtime.portOf(name);
  const viaProxy = (header: Buffer) => ({ localAddress: PROXY, prelude: header });

  /** Everything the server sends before it closes the connection. */
  async function closedWith(name: string, opts: Parameters<typeof openSocket>[1]): Promise<string> {
    const socket = await openSocket(port(name), opts);
    let got = '';
    socket.on('data', (d) => (got += String(d)));
    socket.on('error', () => undefined);
    await once(socket, 'close');
    return got;
  }

  it('refuses a listener with proxy_protocol and no proxy_networks at configuration time', () => {
    assert.throws(
      () => parseConfig('listeners: [{protocol: smtp, port: 25, proxy_protocol: true}]\n', '/etc/maild/maild.yaml', {}),
      /proxy_networks: listeners\[0\] has proxy_protocol: true; list the load balancers/,
    );
    assert.throws(
      () =>
        parseConfig('proxy_networks: [10.0.0.1]\nlisteners: [{protocol: lmtp, path: /run/lmtp, proxy_protocol: true}]\n', '/x.yaml', {}),
      /listeners\[0\]\.proxy_protocol: proxy_protocol is for TCP listeners/,
    );
  });

  it('writes the client of a v2 header into Received and the log', async () => {
    const c = await SmtpClient.connect(
      port('mx'),
      viaProxy(proxyV2({ source: '203.0.113.9', destination: '192.0.2.25', destinationPort: 25 })),
    );
    assert.equal((await c.greeting()).code, 220);
    await c.command('EHLO client.example');
    const res = await c.sendMail('sender@remote.example', ['alice@example.test'], simpleMessage('via v2'));
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    const [file] = await srv.messages('example.test/alice');
    const text = await readFile(path.join(srv.mailRoot, 'example.test/alice', file!), 'latin1');
    assert.match(text, /^Received: from client\.example \(unknown \[203\.0\.113\.9\]\)$/m);
    assert.ok(srv.logs.some((l) => l.msg === 'connect' && l.listener === 'mx' && l.ip === '203.0.113.9'));
    assert.ok(!srv.logs.some((l) => l.msg === 'connect' && l.listener === 'mx' && l.ip === PROXY), 'the proxy is not taken for the client');
  });

  it('takes v1 headers, IPv6 clients included', async () => {
    const c = await SmtpClient.connect(port('mx'), viaProxy(proxyV1('2001:db8::7', '2001:db8::25', 51000, 25)));
    assert.equal((await c.greeting()).code, 220);
    await c.command('EHLO six.example');
    const res = await c.sendMail('sender@remote.example', ['bob@example.test'], simpleMessage('via v1'));
    assert.equal(res.final![0]!.code, 250);
    await c.quit();
    const [file] = await srv.messages('example.test/bob');
    const text = await readFile(path.join(srv.mailRoot, 'example.test/bob', file!), 'latin1');
    assert.match(text, /^Received: from six\.example \(unknown \[IPv6:2001:db8::7\]\)$/m);
  });

  it('decides relay on the client of the header, not on the proxy', async () => {
    const rcpt = async (client: string) => {
      const c = await SmtpClient.connect(port('mx'), viaProxy(proxyV2({ source: client, destination: '192.0.2.25' })));
      await c.greeting();
      await c.command('EHLO relay.example');
      await c.command('MAIL FROM:<sender@example.test>');
      const reply = await c.command('RCPT TO:<someone@remote.example>');
      await c.command('RSET');
      await c.quit();
      return reply.code;
    };
    assert.equal(await rcpt('198.51.100.5'), 250, '198.51.100.5 is in trusted_networks');
    assert.equal(await rcpt('203.0.113.9'), 554, '203.0.113.9 is not');
  });

  it('uses the connection itself for a v2 LOCAL command (health checks)', async () => {
    const c = await SmtpClient.connect(port('mx'), viaProxy(proxyV2({ command: 'local' })));
    assert.equal((await c.greeting()).code, 220);
    await c.quit();
    await waitFor(() => srv.logs.some((l) => l.msg === 'connect' && l.listener === 'mx' && l.ip === PROXY));
  });

  it('closes, before any greeting, connections from outside proxy_networks, even with a valid header', async () => {
    const header = proxyV2({ source: '198.51.100.5', destination: '192.0.2.25' });
    assert.equal(await closedWith('mx', { localAddress: '127.0.0.1', prelude: header }), '');
    assert.equal(await closedWith('imaps', { localAddress: '127.0.0.2', prelude: proxyV1('198.51.100.5', '192.0.2.1') }), '');
    assert.ok(srv.logs.some((l) => /not from proxy_networks/.test(String(l.msg)) && l.listener === 'mx' && l.ip === '127.0.0.1'));
    assert.ok(srv.logs.some((l) => /not from proxy_networks/.test(String(l.msg)) && l.listener === 'imaps' && l.ip === '127.0.0.2'));
    // A listener without proxy_protocol is not affected.
    const direct = await SmtpClient.connect(port('direct'));
    assert.equal((await direct.greeting()).code, 220);
    await direct.quit();
  });

  it('closes, before any greeting, a proxy connection without a valid header', async () => {
    assert.equal(await closedWith('mx', { localAddress: PROXY, prelude: 'EHLO client.example\r\n' }), '');
    const badVersion = proxyV2({ source: '203.0.113.9', destination: '192.0.2.25' });
    badVersion[12] = 0x31;
    assert.equal(await closedWith('imap', { localAddress: PROXY, prelude: badVersion }), '');
    assert.equal(await closedWith('mx', { localAddress: PROXY, prelude: 'PROXY TCP4 203.0.113.9 192.0.2.25 99999 25\r\n' }), '');
    assert.equal(await closedWith('mx', { localAddress: PROXY, prelude: `PROXY UNKNOWN ${'x'.repeat(200)}` }), '');
    const refusals = srv.logs.filter((l) => l.msg === 'connection closed: no valid PROXY header' && l.ip === PROXY);
    assert.deepEqual(
      refusals.map((l) => String(l.err).replace(/ [{"(].*$/, '')),
      ['no PROXY protocol header', 'v2: unknown version 3', 'v1: bad port', 'v1: no line end within 107 bytes'],
    );
  });

  it('reads the header before the implicit TLS handshake, and keys failed logins on the client of the header', async () => {
    const client = (ip: string) =>
      ImapTestClient.connect(port('imaps'), {
        ...viaProxy(proxyV2({ source: ip, destination: '192.0.2.1', destinationPort: 993 })),
        implicitTls: true,
      });
    const fail = async (ip: string) => {
      const c = await client(ip);
      assert.match(await c.greeting(), /^\* OK /);
      assert.equal((await c.login('alice@example.test', 'wrong')).status, 'NO');
      await c.logout();
    };
    await fail('203.0.113.10');
    await fail('203.0.113.10');
    await fail('203.0.113.11');
    const failures = srv.logs.filter((l) => l.msg === 'login failed' && l.protocol === 'imap').map((l) => [l.ip, l.failures]);
    assert.deepEqual(failures, [
      ['203.0.113.10', 1],
      ['203.0.113.10', 2],
      ['203.0.113.11', 1],
    ]);
    const ok = await client('203.0.113.11');
    await ok.greeting();
    assert.equal((await ok.login('alice@example.test', 'alice-pw')).status, 'OK');
    await ok.logout();
    assert.ok(srv.logs.some((l) => l.msg === 'imap login' && l.ip === '203.0.113.11'));
  });

  it('counts connections per address by the client of the header', async () => {
    const header = (ip: string) => viaProxy(proxyV1(ip, '192.0.2.1', 40000, 143));
    const open = [
      await ImapTestClient.connect(port('imap'), header('203.0.113.20')),
      await ImapTestClient.connect(port('imap'), header('203.0.113.20')),
    ];
    for (const c of open) assert.match(await c.greeting(), /^\* OK /);
    const third = await ImapTestClient.connect(port('imap'), header('203.0.113.20'));
    assert.equal(await third.greeting(), '* BYE Too many connections, try again later');
    const other = await ImapTestClient.connect(port('imap'), header('203.0.113.21'));
    assert.match(await other.greeting(), /^\* OK /, 'another client behind the same proxy is not counted with the first');
    for (const c of [...open, other]) await c.logout();
  });

  it('hands the bytes sent along with the header to the protocol', async () => {
    const prelude = Buffer.concat([proxyV1('203.0.113.30', '192.0.2.1', 40000, 143), Buffer.from('a1 CAPABILITY\r\n')]);
    const socket = await openSocket(port('imap'), { localAddress: PROXY, prelude });
    let text = '';
    socket.on('data', (d) => (text += String(d)));
    while (!/a1 OK/.test(text)) await once(socket, 'data');
    assert.match(text, /^\* OK .*\r\n\* CAPABILITY IMAP4rev1 .*\r\na1 OK CAPABILITY completed\r\n$/s);
    socket.destroy();
    assert.ok(srv.logs.some((l) => l.msg === 'imap connect' && l.ip === '203.0.113.30'));
  });

  it('logs the client of the header for POP3 sessions', async () => {
    const socket = await openSocket(port('pop3s'), {
      ...viaProxy(proxyV2({ source: '2001:db8::40', destination: '2001:db8::1' })),
      implicitTls: true,
    });
    const [greeting] = (await once(socket, 'data')) as [Buffer];
    assert.match(String(greeting), /^\+OK /);
    socket.destroy();
    assert.ok(srv.logs.some((l) => l.msg === 'pop3 connect' && l.ip === '2001:db8::40'));
  });

  it('applies a changed proxy_networks on reload', async () => {
    const header = proxyV2({ source: '203.0.113.50', destination: '192.0.2.25' });
    await srv.runtime.reload({ ...srv.runtime.config, proxy_networks: ['127.0.0.9'] });
    assert.equal(await closedWith('mx', { localAddress: PROXY, prelude: header }), '', '127.0.0.3 is no longer a proxy');
    await srv.runtime.reload({ ...srv.runtime.config, proxy_networks: [PROXY] });
    const c = await SmtpClient.connect(port('mx'), viaProxy(header));
    assert.equal((await c.greeting()).code, 220);
    await c.quit();
  });
});
