/**
 * Debian's HAProxy in front of maild, as a load balancer is deployed: mode tcp, `send-proxy-v2`
 * (and `send-proxy`, v1) towards maild's SMTP and IMAP listeners, HAProxy connecting from
 * 127.0.0.3 (`source`), the only address in maild's proxy_networks. Clients connect from
 * 127.0.0.2 (Linux routes all of 127/8 to loopback), so the assertions tell them apart: the
 * Received header and the log show 127.0.0.2, failed IMAP logins and per-address limits count
 * for 127.0.0.2, and a PROXY header sent to maild directly from 127.0.0.2 is refused.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openSocket } from '../helpers/connect.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { proxyV2 } from '../helpers/proxy-header.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';

const HAPROXY = '/usr/sbin/haproxy';
const HAPROXY_SOURCE = '127.0.0.3';
const CLIENT = '127.0.0.2';
const OTHER_CLIENT = '127.0.0.4';

/** A port free right now on 127.0.0.1 (HAProxy cannot report the port it picked for :0). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Haproxy {
  proc: ChildProcess;
  output: () => string;
  port: Record<'smtpV2' | 'smtpV1' | 'imaps', number>;
}

async function startHaproxy(dir: string, backends: { smtp: number; imaps: number; health: number }): Promise<Haproxy> {
  const port = { smtpV2: await freePort(), smtpV1: await freePort(), imaps: await freePort() };
  const ready = await freePort();
  const cfg = [
    'global',
    '  maxconn 200',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    // Accepts and drops: once it answers, every bind of this configuration is in place.
    'frontend ready',
    `  bind 127.0.0.1:${ready}`,
    '  tcp-request connection reject',
    'frontend smtp_v2',
    `  bind 127.0.0.1:${port.smtpV2}`,
    '  default_backend maild_smtp_v2',
    'frontend smtp_v1',
    `  bind 127.0.0.1:${port.smtpV1}`,
    '  default_backend maild_smtp_v1',
    'frontend imaps',
    `  bind 127.0.0.1:${port.imaps}`,
    '  default_backend maild_imaps',
    'backend maild_smtp_v2',
    `  source ${HAPROXY_SOURCE}`,
    `  server s 127.0.0.1:${backends.smtp} send-proxy-v2`,
    'backend maild_smtp_v1',
    `  source ${HAPROXY_SOURCE}`,
    `  server s 127.0.0.1:${backends.smtp} send-proxy`,
    'backend maild_imaps',
    `  source ${HAPROXY_SOURCE}`,
    `  server s 127.0.0.1:${backends.imaps} send-proxy-v2`,
    // Health checks of a send-proxy-v2 server carry a PROXY header with the LOCAL command.
    'backend maild_health',
    '  option smtpchk EHLO haproxy.test',
    `  source ${HAPROXY_SOURCE}`,
    `  server s 127.0.0.1:${backends.health} send-proxy-v2 check inter 1s`,
    '',
  ].join('\n');
  const file = path.join(dir, 'haproxy.cfg');
  await writeFile(file, cfg);
  const check = spawn(HAPROXY, ['-c', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let checked = '';
  check.stdout.on('data', (d) => (checked += String(d)));
  check.stderr.on('data', (d) => (checked += String(d)));
  const [code] = (await once(check, 'exit')) as [number];
  assert.equal(code, 0, `haproxy -c: ${checked}`);

  const proc = spawn(HAPROXY, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout!.on('data', (d) => (output += String(d)));
  proc.stderr!.on('data', (d) => (output += String(d)));
  let exited = false;
  proc.once('exit', () => (exited = true));
  await waitFor(
    async () => {
      if (exited) throw new Error(`haproxy exited: ${output}`);
      return new Promise<boolean>((resolve) => {
        const probe = net.connect(ready, '127.0.0.1');
        probe.once('connect', () => resolve(true));
        probe.once('error', () => resolve(false));
        probe.once('close', () => probe.destroy());
      });
    },
    10_000,
    'haproxy listening',
  );
  return { proc, output: () => output, port };
}

describe('HAProxy in front of maild (PROXY protocol)', () => {
  let srv: TestServer;
  let haproxy: Haproxy;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-haproxy-'));
    srv = await startTestServer({
      config: {
        listeners: [
          { name: 'mx', protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'starttls', proxy_protocol: true },
          { name: 'imaps', protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit', proxy_protocol: true },
          { name: 'health', protocol: 'smtp', address: '127.0.0.1', port: 0, proxy_protocol: true },
        ],
        proxy_networks: [HAPROXY_SOURCE],
        auth: { failure_delay: '10ms', failure_delay_max: '40ms' },
        limits: { message_size: '1M', idle_timeout: '30s', connections_per_ip: 3 },
      },
    });
    haproxy = await startHaproxy(dir, {
      smtp: srv.runtime.portOf('mx'),
      imaps: srv.runtime.portOf('imaps'),
      health: srv.runtime.portOf('health'),
    });
  });
  after(async () => {
    if (haproxy && haproxy.proc.exitCode === null) {
      haproxy.proc.kill('SIGTERM');
      await once(haproxy.proc, 'exit');
    }
    await srv?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function deliverThrough(port: number, rcpt: string, subject: string): Promise<string> {
    const c = await SmtpClient.connect(port, { localAddress: CLIENT });
    assert.equal((await c.greeting()).code, 220);
    await c.command('EHLO client.example');
    const res = await c.sendMail('sender@remote.example', [rcpt], simpleMessage(subject));
    assert.equal(res.final![0]!.code, 250, res.final![0]!.lines.join(' | '));
    await c.quit();
    const mailbox = `example.test/${rcpt.split('@')[0]}`;
    for (const file of await srv.messages(mailbox)) {
      const text = await readFile(path.join(srv.mailRoot, mailbox, file), 'latin1');
      if (text.includes(`Subject: ${subject}`)) return text;
    }
    throw new Error(`no message "${subject}" in ${mailbox}`);
  }

  it('SMTP through send-proxy-v2: Received and the log show the client, not HAProxy', async () => {
    const text = await deliverThrough(haproxy.port.smtpV2, 'alice@example.test', 'through haproxy v2');
    assert.match(text, /^Received: from client\.example \(unknown \[127\.0\.0\.2\]\)$/m);
    const connects = srv.logs.filter((l) => l.msg === 'connect' && l.listener === 'mx').map((l) => l.ip);
    assert.ok(connects.includes(CLIENT), `connect lines: ${connects.join(', ')}`);
    assert.ok(!connects.includes(HAPROXY_SOURCE), 'HAProxy itself is never taken for the client');
  });

  it('SMTP through send-proxy (v1): the same', async () => {
    const text = await deliverThrough(haproxy.port.smtpV1, 'bob@example.test', 'through haproxy v1');
    assert.match(text, /^Received: from client\.example \(unknown \[127\.0\.0\.2\]\)$/m);
  });

  it('IMAP through HAProxy (TLS passed through): failed logins and connection limits count per client', async () => {
    const viaHaproxy = (localAddress: string) => ImapTestClient.connect(haproxy.port.imaps, { localAddress, implicitTls: true });
    const failOnce = async (localAddress: string) => {
      const c = await viaHaproxy(localAddress);
      assert.match(await c.greeting(), /^\* OK /);
      assert.equal((await c.login('alice@example.test', 'wrong')).status, 'NO');
      await c.logout();
    };
    await failOnce(CLIENT);
    await failOnce(CLIENT);
    await failOnce(OTHER_CLIENT);
    const failures = srv.logs.filter((l) => l.msg === 'login failed' && l.protocol === 'imap').map((l) => [l.ip, l.failures]);
    assert.deepEqual(failures, [
      [CLIENT, 1],
      [CLIENT, 2],
      [OTHER_CLIENT, 1],
    ]);

    // limits.connections_per_ip is 3: a fourth connection from 127.0.0.2 is refused, one from
    // 127.0.0.4 (through the same HAProxy) is not.
    const open = [await viaHaproxy(CLIENT), await viaHaproxy(CLIENT), await viaHaproxy(CLIENT)];
    for (const c of open) assert.match(await c.greeting(), /^\* OK /);
    const fourth = await viaHaproxy(CLIENT);
    assert.equal(await fourth.greeting(), '* BYE Too many connections, try again later');
    const other = await viaHaproxy(OTHER_CLIENT);
    assert.match(await other.greeting(), /^\* OK /);
    for (const c of [...open, other]) await c.logout();
    assert.ok(srv.logs.some((l) => l.msg === 'imap connect' && l.ip === CLIENT));
    assert.ok(!srv.logs.some((l) => l.msg === 'imap connect' && l.ip === HAPROXY_SOURCE));
  });

  it("takes HAProxy's health checks (v2 LOCAL) as HAProxy's own connections", async () => {
    const checks = () => srv.logs.filter((l) => l.msg === 'PROXY header' && l.listener === 'health');
    await waitFor(() => checks().length > 0, 10_000, 'a health check');
    for (const check of checks()) {
      assert.deepEqual([check.version, check.proxied, check.ip, check.proxy], [2, false, HAPROXY_SOURCE, HAPROXY_SOURCE]);
    }
    // option smtpchk waits for the greeting and says EHLO: the session is HAProxy's.
    await waitFor(() => srv.logs.some((l) => l.msg === 'connect' && l.listener === 'health'), 10_000, 'a checked session');
    const sessions = srv.logs.filter((l) => l.msg === 'connect' && l.listener === 'health').map((l) => l.ip);
    assert.ok(
      sessions.every((ip) => ip === HAPROXY_SOURCE),
      sessions.join(', '),
    );
  });

  it('refuses a PROXY header sent to maild directly from an address not in proxy_networks', async () => {
    const forged = proxyV2({ source: '192.0.2.66', destination: '127.0.0.1' });
    const socket = await openSocket(srv.runtime.portOf('mx'), { localAddress: CLIENT, prelude: forged });
    let got = '';
    socket.on('data', (d) => (got += String(d)));
    socket.on('error', () => undefined);
    await once(socket, 'close');
    assert.equal(got, '', 'closed without a greeting');
    assert.ok(srv.logs.some((l) => /not from proxy_networks/.test(String(l.msg)) && l.listener === 'mx' && l.ip === CLIENT));
    assert.ok(!srv.logs.some((l) => l.ip === '192.0.2.66'), 'the forged address is never believed');
  });
});
