/**
 * Dovecot's authentication protocol (what Postfix's smtpd_sasl_type = dovecot speaks) over a
 * unix socket and TCP: the handshake, PLAIN and LOGIN with and without initial responses, the
 * `secured`/`rip` cleartext rule, a directory outage as a closed connection, the failure delay
 * keyed by the SMTP client's address, malformed input, and the limits.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempFail } from '../../src/errors.js';
import { DovecotAuthTestClient, b64, plainResponse } from '../helpers/dovecot-auth-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

const GOOD = plainResponse('alice@example.test', 'alice-pw');
const SECURED = 'service=smtp\tnologin\tlip=127.0.0.1\trip=203.0.113.9\tsecured';

describe('dovecot-auth listener', () => {
  let srv: TestServer;
  let sockDir: string;
  let socketPath: string;
  let tcpPort: number;
  before(async () => {
    sockDir = await mkdtemp(path.join(os.tmpdir(), 'maild-auth-sock-'));
    socketPath = path.join(sockDir, 'auth');
    srv = await startTestServer({
      config: {
        listeners: [
          { name: 'auth', protocol: 'dovecot-auth', path: socketPath, socket_mode: '0660', socket_owner: 'daemon', socket_group: 'daemon' },
          { name: 'auth-tcp', protocol: 'dovecot-auth', address: '127.0.0.1', port: 0 },
        ],
        trusted_networks: ['192.0.2.0/24'],
        auth: { cleartext: 'trusted_networks', failure_delay: '20ms', failure_delay_max: '100ms' },
      },
    });
    tcpPort = srv.runtime.portOf('auth-tcp');
  });
  after(async () => {
    await srv.stop();
    await rm(sockDir, { recursive: true, force: true });
  });

  it('gives the unix socket the configured mode, owner and group', async () => {
    const st = await stat(socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.uid, 1, 'owner daemon (uid 1)');
    assert.equal(st.gid, 1, 'group daemon (gid 1)');
  });

  it('opens with VERSION, the MECH lines, SPID, CUID, COOKIE and DONE', async () => {
    const { client, handshake } = await DovecotAuthTestClient.open(socketPath);
    assert.match(handshake[0]!, /^VERSION\t1\t\d+$/);
    assert.deepEqual(
      handshake.filter((l) => l.startsWith('MECH')),
      ['MECH\tPLAIN\tplaintext', 'MECH\tLOGIN\tplaintext'],
    );
    assert.match(
      handshake.find((l) => l.startsWith('SPID'))!,
      /^SPID\t\d+$/,
    );
    assert.match(
      handshake.find((l) => l.startsWith('CUID'))!,
      /^CUID\t\d+$/,
    );
    assert.match(
      handshake.find((l) => l.startsWith('COOKIE'))!,
      /^COOKIE\t[0-9a-f]{32}$/,
    );
    assert.equal(handshake.at(-1), 'DONE');
    client.close();
  });

  it('PLAIN with an initial response: OK with user= for the right password, FAIL for a wrong one', async () => {
    for (const target of [socketPath, tcpPort]) {
      const { client } = await DovecotAuthTestClient.open(target);
      assert.deepEqual(await client.request(`AUTH\t1\tPLAIN\t${SECURED}\tresp=${GOOD}`), ['OK', '1', 'user=alice@example.test']);
      const fail = await client.request(`AUTH\t2\tPLAIN\t${SECURED}\tresp=${plainResponse('alice@example.test', 'wrong')}`);
      assert.deepEqual(fail.slice(0, 3), ['FAIL', '2', 'user=alice@example.test']);
      assert.ok(!fail.includes('temp'), 'a wrong password is not a temporary failure');
      assert.ok(fail.some((f) => f.startsWith('reason=')));
      client.close();
    }
  });

  it('PLAIN without an initial response asks with an empty CONT', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    assert.deepEqual(await client.request(`AUTH\t7\tPLAIN\t${SECURED}`), ['CONT', '7', '']);
    assert.deepEqual(await client.request(`CONT\t7\t${GOOD}`), ['OK', '7', 'user=alice@example.test']);
    client.close();
  });

  it('LOGIN asks for the user name and the password, or only the password after an initial response', async () => {
    const { client } = await DovecotAuthTestClient.open(tcpPort);
    assert.deepEqual(await client.request(`AUTH\t1\tLOGIN\t${SECURED}`), ['CONT', '1', b64('Username:')]);
    assert.deepEqual(await client.request(`CONT\t1\t${b64('bob@example.test')}`), ['CONT', '1', b64('Password:')]);
    assert.deepEqual(await client.request(`CONT\t1\t${b64('bob-pw')}`), ['OK', '1', 'user=bob@example.test']);
    assert.deepEqual(await client.request(`AUTH\t2\tlogin\t${SECURED}\tresp=${b64('carol@example.test')}`), [
      'CONT',
      '2',
      b64('Password:'),
    ]);
    assert.deepEqual(await client.request(`CONT\t2\t${b64('carol-pw')}`), ['OK', '2', 'user=carol@example.test']);
    client.close();
  });

  it('refuses passwords from a client that is not secured unless rip is in trusted_networks (auth.cleartext)', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    const refused = await client.request(`AUTH\t1\tPLAIN\tservice=smtp\trip=198.51.100.7\tresp=${GOOD}`);
    assert.deepEqual(refused.slice(0, 2), ['FAIL', '1']);
    assert.ok(refused.some((f) => /^reason=Plaintext authentication disallowed/.test(f)));
    const noRip = await client.request(`AUTH\t2\tPLAIN\tservice=smtp\tresp=${GOOD}`);
    assert.deepEqual(noRip.slice(0, 2), ['FAIL', '2'], 'no rip: not known to be trusted');
    assert.deepEqual(await client.request(`AUTH\t3\tPLAIN\tservice=smtp\trip=192.0.2.7\tresp=${GOOD}`), [
      'OK',
      '3',
      'user=alice@example.test',
    ]);
    client.close();
  });

  it('closes the connection when the directory cannot be asked (Postfix then answers 454, not 535)', async () => {
    const directory = srv.runtime.directory as unknown as Record<string, unknown>;
    directory.authenticate = async () => {
      throw tempFail('directory down (test)');
    };
    try {
      const { client } = await DovecotAuthTestClient.open(socketPath);
      client.send(`AUTH\t1\tPLAIN\t${SECURED}\tresp=${GOOD}`);
      assert.equal(await client.line(), null, 'no FAIL line: Postfix would turn any FAIL into 535');
    } finally {
      delete directory.authenticate;
    }
    // A new connection (Postfix reconnects) works once the directory answers again.
    const { client } = await DovecotAuthTestClient.open(socketPath);
    assert.deepEqual(await client.request(`AUTH\t2\tPLAIN\t${SECURED}\tresp=${GOOD}`), ['OK', '2', 'user=alice@example.test']);
    client.close();
  });

  it('counts failures against the SMTP client (rip), not against Postfix', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    const rip = '203.0.113.77';
    await client.request(`AUTH\t1\tPLAIN\tservice=smtp\trip=${rip}\tsecured\tresp=${plainResponse('bob@example.test', 'nope')}`);
    const logged = srv.logs.filter((l) => l.msg === 'login failed').at(-1)!;
    assert.equal(logged.ip, rip);
    assert.equal(logged.protocol, 'dovecot-auth/smtp');
    client.close();
  });

  it('refuses an authorization identity other than the user', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    const fail = await client.request(
      `AUTH\t1\tPLAIN\t${SECURED}\tresp=${plainResponse('alice@example.test', 'alice-pw', 'bob@example.test')}`,
    );
    assert.deepEqual(fail.slice(0, 2), ['FAIL', '1']);
    client.close();
  });

  it('fails the one request for an unknown mechanism, a missing service, bad base64 or an unknown CONT id', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    assert.deepEqual((await client.request(`AUTH\t1\tCRAM-MD5\t${SECURED}`)).slice(0, 2), ['FAIL', '1']);
    assert.deepEqual((await client.request(`AUTH\t2\tPLAIN\tsecured\tresp=${GOOD}`)).slice(0, 2), ['FAIL', '2']);
    assert.deepEqual((await client.request(`AUTH\t3\tPLAIN\t${SECURED}\tresp=%%%`)).slice(0, 2), ['FAIL', '3']);
    assert.deepEqual((await client.request(`AUTH\t4\tPLAIN\t${SECURED}\tresp=${b64('no separators')}`)).slice(0, 2), ['FAIL', '4']);
    const unknown = await client.request(`CONT\t99\t${GOOD}`);
    assert.deepEqual(unknown.slice(0, 2), ['FAIL', '99']);
    assert.ok(unknown.includes('reason=Authentication request timed out.'));
    assert.deepEqual(await client.request(`AUTH\t5\tPLAIN\t${SECURED}`), ['CONT', '5', '']);
    assert.deepEqual((await client.request('CONT\t5\tnot base64!')).slice(0, 2), ['FAIL', '5']);
    assert.deepEqual((await client.request(`CONT\t5\t${GOOD}`)).slice(0, 2), ['FAIL', '5'], 'the failed request is gone');
    // The connection still works.
    assert.deepEqual(await client.request(`AUTH\t6\tPLAIN\t${SECURED}\tresp=${GOOD}`), ['OK', '6', 'user=alice@example.test']);
    client.close();
  });

  it('answers interleaved requests by their ids', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    assert.deepEqual(await client.request(`AUTH\t10\tLOGIN\t${SECURED}`), ['CONT', '10', b64('Username:')]);
    assert.deepEqual(await client.request(`AUTH\t11\tPLAIN\t${SECURED}`), ['CONT', '11', '']);
    assert.deepEqual(await client.request(`CONT\t11\t${plainResponse('bob@example.test', 'bob-pw')}`), [
      'OK',
      '11',
      'user=bob@example.test',
    ]);
    assert.deepEqual(await client.request(`CONT\t10\t${b64('alice@example.test')}`), ['CONT', '10', b64('Password:')]);
    assert.deepEqual(await client.request(`CONT\t10\t${b64('alice-pw')}`), ['OK', '10', 'user=alice@example.test']);
    client.close();
  });

  it('unescapes tab-escaped parameter values', async () => {
    const { client } = await DovecotAuthTestClient.open(socketPath);
    // \x01t is an escaped TAB: the service is "sm<TAB>tp", present, so the request goes on.
    assert.deepEqual(await client.request(`AUTH\t1\tPLAIN\tservice=sm\u0001ttp\tsecured\trip=203.0.113.9\tresp=${GOOD}`), [
      'OK',
      '1',
      'user=alice@example.test',
    ]);
    assert.ok(srv.logs.some((l) => l.msg === 'dovecot-auth login' && l.service === 'sm\ttp'));
    client.close();
  });

  it('disconnects a client that breaks the protocol, and keeps serving the others', async () => {
    const cases: Array<[string, (c: DovecotAuthTestClient) => void]> = [
      ['AUTH before the handshake', (c) => c.send(`AUTH\t1\tPLAIN\t${SECURED}\tresp=${GOOD}`)],
      ['another major version', (c) => c.send('VERSION\t2\t0')],
      ['CPID before VERSION', (c) => c.send('CPID\t123')],
      ['a malformed VERSION', (c) => c.send('VERSION\tone')],
      ['an unknown command', (c) => c.send('VERSION\t1\t0\nCPID\t5\nHELLO\tworld')],
      ['a duplicate request id', (c) => c.send(`VERSION\t1\t0\nCPID\t5\nAUTH\t1\tLOGIN\t${SECURED}\nAUTH\t1\tLOGIN\t${SECURED}`)],
      ['a request id that is not a number', (c) => c.send(`VERSION\t1\t0\nCPID\t5\nAUTH\tx\tPLAIN\t${SECURED}`)],
      ['a line over the limit', (c) => c.write(`VERSION\t1\t0\nCPID\t5\nAUTH\t1\tPLAIN\t${SECURED}\tresp=${'A'.repeat(20_000)}\n`)],
      ['a line of NUL bytes and no newline over the limit', (c) => c.write(Buffer.alloc(40_000))],
    ];
    for (const [what, act] of cases) {
      const c = await DovecotAuthTestClient.connect(socketPath);
      act(c);
      assert.equal(await c.closedByServer(), true, what);
    }
    const { client } = await DovecotAuthTestClient.open(tcpPort);
    assert.deepEqual(await client.request(`AUTH\t1\tPLAIN\t${SECURED}\tresp=${GOOD}`), ['OK', '1', 'user=alice@example.test']);
    client.close();
  });
});

describe('dovecot-auth limits', () => {
  let srv: TestServer;
  let port: number;
  before(async () => {
    srv = await startTestServer({
      config: {
        listeners: [{ name: 'auth-tcp', protocol: 'dovecot-auth', address: '127.0.0.1', port: 0 }],
        dovecot_auth: { pending_requests: 3, request_timeout: '200ms', idle_timeout: '1s', connections: 2 },
      },
    });
    port = srv.runtime.portOf('auth-tcp');
  });
  after(async () => {
    await srv.stop();
  });

  it('closes a connection with more than pending_requests requests in progress', async () => {
    const { client } = await DovecotAuthTestClient.open(port);
    for (const id of ['1', '2', '3']) assert.deepEqual(await client.request(`AUTH\t${id}\tPLAIN\t${SECURED}`), ['CONT', id, '']);
    client.send(`AUTH\t4\tPLAIN\t${SECURED}`);
    assert.equal(await client.closedByServer(), true);
  });

  it('drops a request whose CONT never comes within request_timeout', async () => {
    const { client } = await DovecotAuthTestClient.open(port);
    assert.deepEqual(await client.request(`AUTH\t1\tPLAIN\t${SECURED}`), ['CONT', '1', '']);
    await waitFor(() => srv.logs.some((l) => l.msg === 'dovecot-auth request timed out waiting for CONT'), 10_000, 'the request timeout');
    const late = await client.request(`CONT\t1\t${GOOD}`);
    assert.deepEqual(late.slice(0, 2), ['FAIL', '1']);
    assert.ok(late.includes('reason=Authentication request timed out.'));
    assert.deepEqual(await client.request(`AUTH\t2\tPLAIN\t${SECURED}\tresp=${GOOD}`), ['OK', '2', 'user=alice@example.test']);
    client.close();
  });

  it('closes a connection idle for idle_timeout', async () => {
    const { client } = await DovecotAuthTestClient.open(port);
    await client.closedPromise;
    assert.ok(srv.logs.some((l) => l.msg === 'dovecot-auth connection idle for too long; closing'));
  });

  /** Waits until the server has seen every earlier connection close (the limit is 2). */
  async function allClosed(): Promise<void> {
    const count = (msg: string) => srv.logs.filter((l) => l.msg === msg).length;
    await waitFor(() => count('dovecot-auth connect') === count('dovecot-auth disconnect'), 5000, 'earlier connections closed');
  }

  it('refuses connections beyond the limit', async () => {
    await allClosed();
    const a = await DovecotAuthTestClient.connect(port);
    const b = await DovecotAuthTestClient.connect(port);
    assert.equal(await a.line(), 'VERSION\t1\t2');
    assert.equal(await b.line(), 'VERSION\t1\t2');
    const c = await DovecotAuthTestClient.connect(port);
    assert.equal(await c.line(), null, 'closed without a handshake');
    assert.ok(srv.logs.some((l) => l.msg === 'dovecot-auth connection refused: too many connections'));
    a.close();
    b.close();
  });

  it('at shutdown, answers the password check in progress before closing (last: it stops the server)', async () => {
    const directory = srv.runtime.directory as unknown as Record<string, unknown> & { authenticate: (...a: unknown[]) => Promise<unknown> };
    const original = directory.authenticate.bind(directory);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const checking = new Promise<void>((resolve) => (entered = resolve));
    directory.authenticate = async (...args: unknown[]) => {
      entered();
      await gate;
      return original(...args);
    };
    await allClosed();
    const { client } = await DovecotAuthTestClient.open(port);
    const idle = await DovecotAuthTestClient.open(port);
    client.send(`AUTH\t1\tPLAIN\t${SECURED}\tresp=${GOOD}`);
    await checking;
    const stopping = srv.runtime.shutdown();
    assert.equal(await idle.client.line(), null, 'a connection without a request closes at once');
    release();
    assert.equal(await client.line(), 'OK\t1\tuser=alice@example.test');
    assert.equal(await client.line(), null);
    await stopping;
  });
});
