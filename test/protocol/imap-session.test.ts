/**
 * IMAP over the wire, the session layer: greeting and capabilities, TLS and authentication
 * rules, every command refused in the wrong state, and the limits (bad commands, literals,
 * line length, idle time, sessions per user and address).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ImapTestClient, loggedIn } from '../helpers/imap-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

describe('IMAP session', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  it('greets with capabilities; before TLS it offers STARTTLS and refuses passwords (LOGINDISABLED)', async () => {
    const c = await ImapTestClient.connect(srv.imapPort);
    const greeting = await c.greeting();
    assert.match(greeting, /^\* OK \[CAPABILITY IMAP4rev1 .*\] maild IMAP ready$/);
    assert.match(greeting, / STARTTLS /);
    assert.match(greeting, / LOGINDISABLED/);
    assert.doesNotMatch(greeting, /AUTH=/);
    const login = await c.login('alice@example.test', 'alice-pw');
    assert.equal(login.status, 'NO');
    assert.equal(login.code, 'PRIVACYREQUIRED');
    const auth = await c.cmd('AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==');
    assert.equal(auth.code, 'PRIVACYREQUIRED');
    const refused = srv.logs.filter((l) => l.msg === 'login refused' && l.protocol === 'imap' && l.reason === 'cleartext');
    assert.deepEqual(
      refused.map((l) => l.user),
      ['alice@example.test', ''],
      'both refusals logged with the reason (and the user LOGIN named)',
    );
    // Pipelined cleartext after STARTTLS is dropped (RFC 3501 section 6.2.1).
    const tls = await c.startTls('X1 LOGIN "alice@example.test" "alice-pw"\r\n');
    assert.equal(tls.status, 'OK');
    const caps = await c.cmd('CAPABILITY');
    const line = caps.untagged.find((l) => l.startsWith('CAPABILITY'))!;
    assert.match(line, /AUTH=PLAIN AUTH=LOGIN/);
    assert.doesNotMatch(line, /STARTTLS|LOGINDISABLED/);
    // The injected LOGIN did not run: this one is the first.
    const ok = await c.login('alice@example.test', 'alice-pw');
    assert.equal(ok.status, 'OK');
    assert.match(ok.code!, /^CAPABILITY IMAP4rev1 /);
    assert.doesNotMatch(ok.code!, /AUTH=/);
    await c.logout();
  });

  it('authenticates with LOGIN, AUTHENTICATE PLAIN (with and without SASL-IR) and AUTHENTICATE LOGIN', async () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    for (const variant of ['login', 'plain-ir', 'plain', 'login-mech'] as const) {
      const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await c.greeting();
      let r;
      if (variant === 'login') r = await c.login('Bob@Example.Test', 'bob-pw');
      else if (variant === 'plain-ir') r = await c.cmd(`AUTHENTICATE PLAIN ${b64('\0bob@example.test\0bob-pw')}`);
      else if (variant === 'plain') {
        c.write('P1 AUTHENTICATE PLAIN\r\n');
        assert.equal(await c.line(), '+ ');
        c.write(`${b64('\0bob@example.test\0bob-pw')}\r\n`);
        r = await c.result('P1');
      } else {
        c.write('L1 AUTHENTICATE LOGIN\r\n');
        assert.equal(await c.line(), `+ ${b64('Username:')}`);
        c.write(`${b64('bob@example.test')}\r\n`);
        assert.equal(await c.line(), `+ ${b64('Password:')}`);
        c.write(`${b64('bob-pw')}\r\n`);
        r = await c.result('L1');
      }
      assert.equal(r.status, 'OK', `${variant}: ${r.text}`);
      await c.logout();
    }
  });

  it('refuses wrong passwords with AUTHENTICATIONFAILED, counts them, and lets a cancelled exchange go', async () => {
    const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
    await c.greeting();
    const bad = await c.login('alice@example.test', 'wrong');
    assert.deepEqual([bad.status, bad.code], ['NO', 'AUTHENTICATIONFAILED']);
    const unknown = await c.login('nobody@example.test', 'x');
    assert.deepEqual([unknown.status, unknown.code], ['NO', 'AUTHENTICATIONFAILED']);
    const disabled = await c.login('disabled@example.test', 'x');
    assert.deepEqual([disabled.status, disabled.code], ['NO', 'AUTHENTICATIONFAILED']);
    c.write('C1 AUTHENTICATE PLAIN\r\n');
    await c.line();
    c.write('*\r\n');
    const cancelled = await c.result('C1');
    assert.equal(cancelled.status, 'BAD');
    const failures = srv.logs.filter((l) => l.msg === 'login failed' && l.protocol === 'imap').map((l) => l.failures as number);
    assert.ok(failures.length >= 3);
    assert.ok(failures[failures.length - 1]! > failures[0]!, 'failures from one address are counted up');
    assert.ok(!JSON.stringify(srv.logs).includes('alice-pw'), 'no password in the log');
    c.destroy();
  });

  it('refuses every command outside its states with BAD', async () => {
    // Three bad commands end a session before login, so each pair gets a fresh connection.
    const preLogin = [
      'SELECT INBOX',
      'EXAMINE INBOX',
      'CREATE x',
      'DELETE x',
      'RENAME a b',
      'SUBSCRIBE x',
      'UNSUBSCRIBE x',
      'LIST "" *',
      'LSUB "" *',
      'STATUS INBOX (MESSAGES)',
      'APPEND INBOX {1+}\r\nx',
      'NAMESPACE',
      'ENABLE CONDSTORE',
      'IDLE',
      'GETQUOTAROOT INBOX',
      'CHECK',
      'CLOSE',
      'UNSELECT',
      'EXPUNGE',
      'SEARCH ALL',
      'FETCH 1 FLAGS',
      'STORE 1 +FLAGS (\\Seen)',
      'COPY 1 x',
      'MOVE 1 x',
      'UID FETCH 1 FLAGS',
    ];
    for (let i = 0; i < preLogin.length; i += 2) {
      const pre = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await pre.greeting();
      for (const cmd of preLogin.slice(i, i + 2)) {
        const r = await pre.cmd(cmd);
        assert.equal(r.status, 'BAD', `${cmd} before login: ${r.text}`);
      }
      pre.destroy();
    }

    const c = await loggedIn(srv);
    for (const cmd of [
      'LOGIN a b',
      'AUTHENTICATE PLAIN',
      'STARTTLS',
      'CHECK',
      'CLOSE',
      'UNSELECT',
      'EXPUNGE',
      'SEARCH ALL',
      'FETCH 1 FLAGS',
      'STORE 1 +FLAGS (\\Seen)',
      'COPY 1 Trash',
      'MOVE 1 Trash',
      'UID SEARCH ALL',
      'UID EXPUNGE 1',
    ]) {
      const r = await c.cmd(cmd);
      assert.equal(r.status, 'BAD', `${cmd} when authenticated: ${r.text}`);
    }
    assert.equal((await c.cmd('SELECT INBOX')).status, 'OK');
    for (const cmd of ['LOGIN a b', 'ENABLE QRESYNC']) {
      const r = await c.cmd(cmd);
      assert.equal(r.status, 'BAD', `${cmd} when selected: ${r.text}`);
    }
    await c.logout();
  });

  it('answers unknown commands and garbage with BAD, and says BYE after three before login', async () => {
    const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
    await c.greeting();
    assert.equal((await c.cmd('FROBNICATE')).status, 'BAD');
    c.write('A9 LOGIN (unbalanced\r\n');
    assert.equal((await c.result('A9')).status, 'BAD');
    c.write('noTag\r\n');
    const bye = await c.line();
    assert.match(bye ?? '', /BAD|BYE/);
    const next = await c.line();
    assert.match(`${bye} ${next}`, /BYE Too many invalid IMAP commands/);
    assert.ok(await c.waitClosed(2000));
  });

  it('refuses a literal over the limit before the client sends it, and APPEND over APPENDLIMIT with TOOBIG', async () => {
    const c = await loggedIn(srv);
    c.write('L1 LOGIN {99999999}\r\n');
    const r = await c.result('L1');
    assert.equal(r.status, 'BAD', 'no continuation, a BAD');
    assert.deepEqual(r.continuations, []);
    c.write('L2 APPEND INBOX {5000000}\r\n');
    const big = await c.result('L2');
    assert.deepEqual([big.status, big.code], ['NO', 'TOOBIG']);
    assert.deepEqual(big.continuations, []);
    // The session still works.
    assert.equal((await c.cmd('NOOP')).status, 'OK');
    // A non-synchronising literal over the limit: refused; its bytes are skipped.
    c.write(`L3 APPEND INBOX {2000000+}\r\n${'x'.repeat(2_000_000)}\r\n`);
    const plus = await c.result('L3');
    assert.deepEqual([plus.status, plus.code], ['NO', 'TOOBIG']);
    assert.equal((await c.cmd('NOOP')).status, 'OK');
    // One far too large to skip ends the session instead.
    c.write('L4 APPEND INBOX {900000000+}\r\n');
    const huge = await c.result('L4');
    assert.deepEqual([huge.status, huge.code], ['NO', 'TOOBIG']);
    assert.match((await c.line()) ?? '', /^\* BYE/);
    assert.ok(await c.waitClosed(2000));
  });

  it('closes a session whose line exceeds the limit', async () => {
    const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
    await c.greeting();
    c.write(`A1 LOGIN ${'x'.repeat(70_000)}`);
    const line = await c.line();
    assert.match(line ?? '', /^\* BYE Command line too long/);
    assert.ok(await c.waitClosed(2000));
  });

  it('speaks ID, NAMESPACE and ENABLE', async () => {
    const c = await loggedIn(srv);
    const id = await c.cmd('ID ("name" "test-client" "version" "1")');
    assert.deepEqual(id.untagged, ['ID ("name" "maild")']);
    assert.deepEqual((await c.cmd('ID NIL')).status, 'OK');
    assert.deepEqual((await c.cmd('NAMESPACE')).untagged, ['NAMESPACE (("" "/")) NIL NIL']);
    assert.deepEqual((await c.cmd('ENABLE QRESYNC X-UNKNOWN')).untagged, ['ENABLED CONDSTORE QRESYNC']);
    assert.deepEqual((await c.cmd('ENABLE CONDSTORE')).untagged, ['ENABLED']);
    assert.ok(srv.logs.some((l) => l.msg === 'client id' && (l.client as Record<string, string>).name === 'test-client'));
    await c.logout();
  });

  it('answers LOGOUT with BYE then OK, and closes', async () => {
    const c = await loggedIn(srv);
    const r = await c.cmd('LOGOUT');
    assert.equal(r.status, 'OK');
    assert.match(r.untagged[0]!, /^BYE/);
    assert.ok(await c.waitClosed(2000));
  });
});

describe('IMAP limits', () => {
  it('allows at most connections_per_user_ip sessions of one user from one address', async () => {
    const srv = await startTestServer({ config: { imap: { connections_per_user_ip: 2 } } });
    try {
      const a = await loggedIn(srv);
      const b = await loggedIn(srv);
      const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await c.greeting();
      const r = await c.login('alice@example.test', 'alice-pw');
      assert.deepEqual([r.status, r.code], ['NO', 'LIMIT']);
      await a.logout();
      await waitFor(async () => (await c.login('alice@example.test', 'alice-pw')).status === 'OK', 3000, 'a slot after LOGOUT');
      await b.logout();
      await c.logout();
    } finally {
      await srv.stop();
    }
  });

  it('logs out clients idle before login after the pre-login timeout', async () => {
    const srv = await startTestServer({ config: { imap: { idle_timeout_before_login: '300ms' } } });
    try {
      const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await c.greeting();
      assert.match((await c.line()) ?? '', /^\* BYE Autologout/);
      assert.ok(await c.waitClosed(2000));
    } finally {
      await srv.stop();
    }
  });

  it('closes a connection that has not logged in within login_timeout, however busy it keeps itself', async () => {
    const srv = await startTestServer({ config: { imap: { login_timeout: '1s' } } });
    try {
      const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await c.greeting();
      const seen: string[] = [];
      for (let i = 0; i < 500; i++) {
        const tag = c.nextTag();
        c.write(`${tag} NOOP\r\n`);
        let line: string | null;
        do {
          line = await c.line();
          if (line !== null) seen.push(line);
        } while (line !== null && !line.startsWith(`${tag} `) && !line.startsWith('* BYE'));
        if (line === null || line.startsWith('* BYE')) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(seen.at(-1), '* BYE Login timed out, closing connection.');
      assert.ok(await c.waitClosed(2000));
      assert.ok(srv.logs.some((l) => l.msg === 'imap login timeout: no login in time'));

      // A session that logged in is not limited by it.
      const a = await loggedIn(srv);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await a.cmd('NOOP')).status, 'OK');
      await a.logout();
    } finally {
      await srv.stop();
    }
  });

  it('allows cleartext passwords from trusted networks only when configured', async () => {
    const srv = await startTestServer({ config: { auth: { cleartext: 'trusted_networks' }, trusted_networks: ['127.0.0.0/8'] } });
    try {
      const c = await ImapTestClient.connect(srv.imapPort);
      const greeting = await c.greeting();
      assert.match(greeting, /AUTH=PLAIN/);
      assert.doesNotMatch(greeting, /LOGINDISABLED/);
      assert.equal((await c.login('alice@example.test', 'alice-pw')).status, 'OK');
      await c.logout();
    } finally {
      await srv.stop();
    }
  });
});
