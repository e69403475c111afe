/**
 * ManageSieve over the wire (RFC 5804): the greeting and capabilities before and after
 * STARTTLS, passwords refused before TLS, AUTHENTICATE PLAIN and LOGIN (initial response and
 * continuations, cancel, wrong password), every script command with its response codes, the
 * files in Pigeonhole's layout, quotas, script names, and hostile input (over-long lines,
 * over-size and absurd literals, bad UTF-8, bad commands in a row, idleness).
 */
import assert from 'node:assert/strict';
import { lstat, readFile, readlink, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManageSieveClient, manageSieveLoggedIn } from '../helpers/managesieve-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const home = (srv: TestServer, mailbox: string) => path.join(srv.mailRoot, mailbox);
/** PUTSCRIPT with a non-synchronizing literal. */
const putscript = (name: string, script: string | Buffer) =>
  Buffer.concat([Buffer.from(`PUTSCRIPT "${name}" {${Buffer.byteLength(script)}+}\r\n`), Buffer.from(script), Buffer.from('\r\n')]);

describe('ManageSieve', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(() => srv.stop());

  it('greets with the capabilities: SASL empty and STARTTLS before TLS, VERSION 1.0, no NOTIFY', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    const greeting = await c.response();
    assert.equal(greeting.status, 'OK');
    const caps = ManageSieveClient.capabilities(greeting);
    assert.equal(caps.get('IMPLEMENTATION'), 'maild');
    assert.equal(caps.get('SASL'), '');
    assert.equal(caps.get('STARTTLS'), '');
    assert.equal(caps.get('VERSION'), '1.0');
    assert.equal(caps.get('MAXREDIRECTS'), '4');
    assert.match(caps.get('SIEVE') ?? '', /\bfileinto\b/);
    assert.equal(caps.has('NOTIFY'), false);
    const again = await c.command('CAPABILITY');
    assert.deepEqual(again.lines, greeting.lines);
    c.close();
  });

  it('refuses passwords before TLS with NO (ENCRYPT-NEEDED) and logs the refusal', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    await c.response();
    const r = await c.login('alice@example.test', 'alice-pw');
    assert.equal(r.status, 'NO');
    assert.equal(r.code, 'ENCRYPT-NEEDED');
    assert.ok(srv.logs.some((l) => l.msg === 'login refused' && l.protocol === 'managesieve' && l.reason === 'cleartext'));
    assert.equal((await c.command('LISTSCRIPTS')).status, 'NO');
    c.close();
  });

  it('re-issues the capabilities after STARTTLS: SASL PLAIN LOGIN, no STARTTLS; a second STARTTLS is refused', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    await c.response();
    const afterTls = await c.startTls();
    assert.equal(afterTls.status, 'OK');
    const caps = ManageSieveClient.capabilities(afterTls);
    assert.equal(caps.get('SASL'), 'PLAIN LOGIN');
    assert.equal(caps.has('STARTTLS'), false);
    assert.equal((await c.command('STARTTLS')).status, 'NO');
    c.close();
  });

  it('drops what was pipelined after STARTTLS: it is not taken as sent under TLS', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    await c.response();
    c.send(`STARTTLS\r\nAUTHENTICATE "PLAIN" "${b64('\0alice@example.test\0alice-pw')}"\r\n`);
    assert.equal((await c.response()).status, 'OK');
    assert.equal((await c.upgrade()).status, 'OK');
    const r = await c.command('LISTSCRIPTS');
    assert.equal(r.status, 'NO', 'not logged in by the injected command');
    c.close();
  });

  it('authenticates PLAIN through a continuation, LOGIN in two steps, and refuses a wrong password or a cancel', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    await c.response();
    await c.startTls();
    c.send('AUTHENTICATE "PLAIN"\r\n');
    const wrong = await c.command(`"${b64('\0alice@example.test\0nope')}"`);
    assert.equal(wrong.lines[0], '""', 'the empty PLAIN challenge');
    assert.equal(wrong.status, 'NO');
    assert.equal(wrong.text, 'Authentication failed.');
    c.send('AUTHENTICATE "LOGIN"\r\n');
    const cancelled = await c.command('"*"');
    assert.equal(cancelled.status, 'NO');
    c.send('AUTHENTICATE "LOGIN"\r\n');
    c.send(`"${b64('bob@example.test')}"\r\n`);
    const ok = await c.command(`{${b64('bob-pw').length}+}\r\n${b64('bob-pw')}`);
    assert.deepEqual(ok.lines, [`"${b64('Username:')}"`, `"${b64('Password:')}"`]);
    assert.equal(ok.status, 'OK');
    assert.equal((await c.command('LISTSCRIPTS')).status, 'OK');
    assert.equal((await c.login('bob@example.test', 'bob-pw')).status, 'NO', 'AUTHENTICATE once logged in');
    c.close();
  });

  it("stores, lists, activates, downloads, renames and deletes scripts in Pigeonhole's layout", async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'alice@example.test', 'alice-pw');
    const script = 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n';
    assert.equal((await c.command(putscript('work', script))).status, 'OK');
    // A synchronizing literal {N} is taken the same way.
    const second = await c.command(`PUTSCRIPT "ferien ü" {7}\r\nkeep;\r\n`);
    assert.equal(second.status, 'OK');
    assert.equal((await c.command('PUTSCRIPT "quoted" "discard;"')).status, 'OK');
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, ['"ferien ü"', '"quoted"', '"work"']);
    assert.equal((await c.command('SETACTIVE "work"')).status, 'OK');
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, ['"ferien ü"', '"quoted"', '"work" ACTIVE']);

    const dir = home(srv, 'example.test/alice');
    assert.deepEqual((await readdir(path.join(dir, 'sieve'))).sort(), ['ferien ü.sieve', 'quoted.sieve', 'tmp', 'work.sieve']);
    assert.equal(await readFile(path.join(dir, 'sieve/work.sieve'), 'utf8'), script);
    assert.ok((await lstat(path.join(dir, '.dovecot.sieve'))).isSymbolicLink());
    assert.equal(await readlink(path.join(dir, '.dovecot.sieve')), 'sieve/work.sieve');
    assert.deepEqual(await readdir(path.join(dir, 'sieve/tmp')), [], 'no temporary file left');

    const got = await c.command('GETSCRIPT "work"');
    assert.equal(got.status, 'OK');
    assert.equal(got.lines[0], `{${Buffer.byteLength(script)}}\r\n${script}`);
    assert.equal((await c.command('GETSCRIPT "none"')).code, 'NONEXISTENT');

    const del = await c.command('DELETESCRIPT "work"');
    assert.equal(del.status, 'NO');
    assert.equal(del.code, 'ACTIVE');
    assert.equal((await c.command('DELETESCRIPT "none"')).code, 'NONEXISTENT');

    assert.equal((await c.command('RENAMESCRIPT "work" "quoted"')).code, 'ALREADYEXISTS');
    assert.equal((await c.command('RENAMESCRIPT "none" "other"')).code, 'NONEXISTENT');
    assert.equal((await c.command('RENAMESCRIPT "work" "job"')).status, 'OK');
    assert.equal(await readlink(path.join(dir, '.dovecot.sieve')), 'sieve/job.sieve', 'the active script stays active');
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, ['"ferien ü"', '"job" ACTIVE', '"quoted"']);

    assert.equal((await c.command('SETACTIVE "none"')).code, 'NONEXISTENT');
    assert.equal((await c.command('SETACTIVE ""')).status, 'OK');
    await assert.rejects(lstat(path.join(dir, '.dovecot.sieve')), { code: 'ENOENT' });
    assert.equal((await c.command('DELETESCRIPT "job"')).status, 'OK');
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, ['"ferien ü"', '"quoted"']);
    assert.equal((await c.command('LOGOUT')).status, 'OK');
    await c.closedByServer();
  });

  it('checks scripts: CHECKSCRIPT and PUTSCRIPT refuse bad UTF-8 and NUL with the line number', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'carol@example.test', 'carol-pw');
    assert.equal((await c.command('CHECKSCRIPT "keep;"')).status, 'OK');
    const badUtf8 = Buffer.concat([Buffer.from('# one\r\n# two\r\n# '), Buffer.from([0xff, 0xfe]), Buffer.from('\r\nkeep;\r\n')]);
    const check = await c.command(Buffer.concat([Buffer.from(`CHECKSCRIPT {${badUtf8.length}+}\r\n`), badUtf8, Buffer.from('\r\n')]));
    assert.equal(check.status, 'NO');
    assert.match(check.text ?? '', /^line 3: /);
    const put = await c.command(putscript('nul', 'keep;\r\nstop;\0\r\n'));
    assert.equal(put.status, 'NO');
    assert.match(put.text ?? '', /^line 2: /);
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, [], 'nothing stored');
    c.close();
  });

  it('refuses bad script names: "/", control characters, too long, not UTF-8', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'carol@example.test', 'carol-pw');
    for (const name of ['../escape', 'a/b', 'tab\there', 'x'.repeat(241), '']) {
      const r = await c.command(putscript(name, 'keep;'));
      assert.equal(r.status, 'NO', JSON.stringify(name));
    }
    const badName = Buffer.concat([Buffer.from('PUTSCRIPT "'), Buffer.from([0xc3, 0x28]), Buffer.from('" "keep;"\r\n')]);
    assert.equal((await c.command(badName)).status, 'NO');
    assert.equal((await c.command(putscript('x'.repeat(240), 'keep;'))).status, 'OK', '240 octets are allowed');
    assert.deepEqual(await readdir(path.join(home(srv, 'example.test/carol'), 'sieve')).then((f) => f.filter((n) => n !== 'tmp')), [
      `${'x'.repeat(240)}.sieve`,
    ]);
    c.close();
  });

  it('answers NOOP with its tag, goes back with UNAUTHENTICATE, and refuses unknown commands', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'bob@example.test', 'bob-pw');
    const noop = await c.command('NOOP "STARTTLS-SYNC-42"');
    assert.equal(noop.status, 'OK');
    assert.equal(noop.code, 'TAG "STARTTLS-SYNC-42"');
    assert.equal((await c.command('NOOP')).status, 'OK');
    assert.equal((await c.command('FROBNICATE')).status, 'NO');
    assert.equal((await c.command('UNAUTHENTICATE')).status, 'OK');
    assert.equal((await c.command('LISTSCRIPTS')).status, 'NO');
    assert.equal(ManageSieveClient.capabilities(await c.command('CAPABILITY')).get('SASL'), 'PLAIN LOGIN');
    assert.equal((await c.login('bob@example.test', 'bob-pw')).status, 'OK');
    assert.equal((await c.command('LISTSCRIPTS')).status, 'OK');
    c.close();
  });

  it('survives hostile input: over-long lines, bad syntax, an absurd literal', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'bob@example.test', 'bob-pw');
    const long = await c.command(`NOOP "${'a'.repeat(20_000)}"`);
    assert.equal(long.status, 'NO');
    assert.match(long.text ?? '', /too long/);
    assert.equal((await c.command('PUTSCRIPT "x" "unterminated')).status, 'NO');
    assert.equal((await c.command('HAVESPACE "x" -1')).status, 'NO');
    assert.equal((await c.command('NOOP')).status, 'OK', 'the session goes on');
    const bye = await c.command('PUTSCRIPT "x" {99999999999+}');
    assert.equal(bye.status, 'BYE');
    await c.closedByServer();
  });

  it('closes with BYE after too many bad commands in a row', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    await c.response();
    let last;
    for (let i = 0; i < 20; i++) last = await c.command('BOGUS');
    assert.equal(last?.status, 'NO');
    const bye = await c.response();
    assert.equal(bye.status, 'BYE');
    await c.closedByServer();
  });
});

describe('ManageSieve quotas and limits', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      // A stand-in compiler: "bad" is an error where it stands, "warn" a warning.
      sieveValidator: (script) => {
        const lines = script.split('\n');
        const bad = lines.findIndex((l) => l.includes('bad'));
        if (bad !== -1) return { ok: false, line: bad + 1, column: lines[bad]!.indexOf('bad') + 1, message: 'unknown command "bad"' };
        return script.includes('warn') ? { ok: true, warnings: 'line 1: warning: something to know' } : { ok: true };
      },
      config: { managesieve: { max_scripts: 2, max_script_size: 100, max_storage: 150, idle_timeout: '1s', line_length: 1024 } },
    });
  });
  after(() => srv.stop());

  it('refuses over the quotas: QUOTA/MAXSIZE, QUOTA/MAXSCRIPTS, QUOTA/MAXSTORAGE; replacing a script is allowed', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'alice@example.test', 'alice-pw');
    assert.equal((await c.command('HAVESPACE "a" 100')).status, 'OK');
    assert.equal((await c.command('HAVESPACE "a" 101')).code, 'QUOTA/MAXSIZE');
    assert.equal((await c.command(putscript('a', `#${'a'.repeat(80)}\r\nkeep;`))).status, 'OK');
    assert.equal((await c.command(putscript('b', `#${'b'.repeat(80)}\r\nkeep;`))).code, 'QUOTA/MAXSTORAGE', 'storage: 88 + 88 > 150');
    assert.equal((await c.command(putscript('b', 'keep;'))).status, 'OK');
    assert.equal((await c.command('HAVESPACE "c" 5')).code, 'QUOTA/MAXSCRIPTS');
    assert.equal((await c.command(putscript('c', 'keep;'))).code, 'QUOTA/MAXSCRIPTS');
    assert.equal((await c.command(putscript('b', 'discard;'))).status, 'OK', 'a replacement is not a new script');
    const big = await c.command(putscript('a', 'x'.repeat(101)));
    assert.equal(big.status, 'NO');
    assert.equal(big.code, 'QUOTA/MAXSIZE');
    assert.equal((await c.command('NOOP')).status, 'OK', 'the over-size literal was skipped');
    assert.deepEqual((await c.command('LISTSCRIPTS')).lines, ['"a"', '"b"']);
    c.close();
  });

  it('answers with the injected check: NO "line N: ..." for an error, OK (WARNINGS) for warnings', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'carol@example.test', 'carol-pw');
    const failed = await c.command(putscript('s', 'keep;\r\nstop;\r\n  bad;\r\n'));
    assert.equal(failed.status, 'NO');
    assert.equal(failed.text, 'line 3: unknown command "bad"');
    const warned = await c.command(putscript('s', '# warn\r\nkeep;\r\n'));
    assert.equal(warned.status, 'OK');
    assert.equal(warned.code, 'WARNINGS');
    assert.equal(warned.text, 'line 1: warning: something to know');
    assert.equal((await c.command('CHECKSCRIPT "bad;"')).text, 'line 1: unknown command "bad"');
    assert.equal((await c.command('SETACTIVE "s"')).code, 'WARNINGS');
    c.close();
  });

  it('says BYE to a client idle for too long', async () => {
    const c = await ManageSieveClient.connect(srv.managesievePort);
    await c.response();
    const bye = await c.response();
    assert.equal(bye.status, 'BYE');
    await c.closedByServer();
  });

  // Last: it stops this server.
  it('says BYE (TRYLATER) to a waiting session at shutdown', async () => {
    const c = await manageSieveLoggedIn(srv.managesievePort, 'bob@example.test', 'bob-pw');
    const stopping = srv.runtime.shutdown();
    const bye = await c.response();
    assert.equal(bye.status, 'BYE');
    assert.equal(bye.code, 'TRYLATER');
    await c.closedByServer();
    await stopping;
  });
});
