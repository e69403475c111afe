/**
 * Debian's real Postfix in front of maild, configured the way the tutorials configure it with
 * Dovecot: submission with smtpd_sasl_type = dovecot asking maild's dovecot-auth listener
 * (smtpd_sasl_path = private/maild-auth, and inet:127.0.0.1:PORT), and delivery to maild over
 * LMTP (virtual_transport = lmtp:unix:private/maild-lmtp, and lmtp:inet:[127.0.0.1]:PORT through
 * transport_maps). The socket paths are relative to Postfix's queue directory, and smtpd and
 * lmtp run chrooted there, as in Debian's master.cf. swaks is the SMTP client. One Postfix and
 * one maild serve the whole file. Needs root (Postfix starts as root); CI installs postfix.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { tempFail } from '../../src/errors.js';
import { BASE_SERVICES, freePort, preparePostfix, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { selfSignedCert } from '../helpers/self-signed.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

interface SwaksResult {
  code: number;
  output: string;
}

interface Submission {
  /** STARTTLS first (default) or not. */
  tls?: boolean;
  /** [user, password, mechanism (PLAIN by default)]. */
  login?: [string, string, string?];
  from?: string;
  to: string;
  subject?: string;
}

/** swaks against a Postfix port; resolves with its exit code and transcript whether it succeeded or not. */
async function swaks(port: number, m: Submission): Promise<SwaksResult> {
  const args = ['--server', `127.0.0.1:${port}`, '--helo', 'client.example', '--to', m.to];
  if (m.tls !== false) args.push('--tls');
  if (m.login) args.push('--auth', m.login[2] ?? 'PLAIN', '--auth-user', m.login[0], '--auth-password', m.login[1]);
  if (m.from) args.push('--from', m.from);
  if (m.subject) args.push('--header', `Subject: ${m.subject}`);
  try {
    const { stdout, stderr } = await run('swaks', args, { timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const ALICE: [string, string] = ['alice@example.test', 'alice-pw'];

describe('Postfix in front of maild: SASL through dovecot-auth, delivery over LMTP', () => {
  let srv: TestServer;
  let postfix: PostfixInstance;
  /** Submission with SASL through the unix socket, and through TCP. */
  let submissionUnix: number;
  let submissionTcp: number;

  before(async () => {
    const dirs = await preparePostfix();
    const privateDir = path.join(dirs.queueDir, 'private');
    srv = await startTestServer({
      config: {
        listeners: [
          // As the tutorials' Dovecot: service lmtp { unix_listener /var/spool/postfix/private/dovecot-lmtp { mode = 0600, user = postfix } }
          {
            name: 'lmtp-postfix',
            protocol: 'lmtp',
            path: path.join(privateDir, 'maild-lmtp'),
            socket_mode: '0600',
            socket_owner: 'postfix',
          },
          { name: 'lmtp', protocol: 'lmtp', address: '127.0.0.1', port: 0 },
          // service auth { unix_listener /var/spool/postfix/private/auth { mode = 0660, user = postfix, group = postfix } }
          {
            name: 'auth',
            protocol: 'dovecot-auth',
            path: path.join(privateDir, 'maild-auth'),
            socket_mode: '0660',
            socket_group: 'postfix',
          },
          { name: 'auth-tcp', protocol: 'dovecot-auth', address: '127.0.0.1', port: 0 },
        ],
        auth: { failure_delay: '50ms', failure_delay_max: '200ms' },
      },
    });
    submissionUnix = await freePort();
    submissionTcp = await freePort();
    const { cert, key } = await selfSignedCert(dirs.configDir, 'postfix.test.example');
    const submission = (port: number, saslPath: string) => `127.0.0.1:${port} inet n - y - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=may
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=${saslPath}
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
`;
    postfix = await startPostfix(
      dirs,
      {
        myhostname: 'postfix.test.example',
        mynetworks: '127.0.0.2/32',
        smtpd_tls_cert_file: cert,
        smtpd_tls_key_file: key,
        virtual_mailbox_domains: 'example.test, example.org',
        virtual_mailbox_maps: 'static:maild',
        // The tutorials' line, with maild's socket in Dovecot's place.
        virtual_transport: 'lmtp:unix:private/maild-lmtp',
        transport_maps: `inline:{ example.org=lmtp:inet:[127.0.0.1]:${srv.lmtpPort} }`,
      },
      submission(submissionUnix, 'private/maild-auth') +
        submission(submissionTcp, `inet:127.0.0.1:${srv.runtime.portOf('auth-tcp')}`) +
        'lmtp      unix  -       -       y       -       -       lmtp\n' +
        BASE_SERVICES,
    );
  });

  after(async () => {
    await postfix?.stop();
    await srv?.stop();
  });

  async function arrived(mailbox: string, subject: string): Promise<string> {
    let found: string | undefined;
    await waitFor(
      async () => (found = (await srv.read(mailbox)).find((m) => m.includes(`Subject: ${subject}`))) !== undefined,
      30_000,
      `"${subject}" in ${mailbox} (Postfix log:\n${await postfix.log()})`,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await postfix.log()}`);
    });
    return found!;
  }

  it('authenticates a submission user over TLS (235) and relays the mail to maild over the LMTP unix socket', async () => {
    const r = await swaks(submissionUnix, { login: ALICE, from: ALICE[0], to: 'bob@example.test', subject: 'through postfix unix' });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /<~  235 2\.7\.0 Authentication successful/);
    assert.match(r.output, /<~  250 2\.0\.0 Ok: queued as/);
    const msg = await arrived('example.test/bob', 'through postfix unix');
    // Postfix's Received header names the SASL login maild's OK gave it (user=).
    assert.match(await postfix.log(), /sasl_method=PLAIN, sasl_username=alice@example\.test/);
    assert.match(msg, /by postfix\.test\.example \(Postfix\) with ESMTPSA/);
    // maild's LMTP received it from Postfix.
    assert.match(msg, /with LMTP id/);
  });

  it('refuses a wrong password with 535', async () => {
    const r = await swaks(submissionUnix, { login: [ALICE[0], 'not-her-password'], from: ALICE[0], to: 'bob@example.test' });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /<~\* 535 5\.7\.8 Error: authentication failed/);
  });

  it('refuses a password without TLS: Postfix does not say "secured", and maild allows no cleartext', async () => {
    const r = await swaks(submissionUnix, { tls: false, login: ALICE, from: ALICE[0], to: 'bob@example.test' });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /<\*\* 535 5\.7\.8 Error: authentication failed: Plaintext authentication disallowed/);
  });

  it('answers 454 when maild cannot ask its directory', async () => {
    const directory = srv.runtime.directory as unknown as Record<string, unknown>;
    directory.authenticate = async () => {
      throw tempFail('directory down (test)');
    };
    try {
      const r = await swaks(submissionUnix, { login: ALICE, from: ALICE[0], to: 'bob@example.test' });
      assert.notEqual(r.code, 0);
      assert.match(r.output, /<~\* 454 4\.7\.0 Temporary authentication failure: Connection lost to authentication server/);
    } finally {
      delete directory.authenticate;
    }
    // Postfix's smtpd reconnects: the next login works again.
    const again = await swaks(submissionUnix, { login: ALICE, from: ALICE[0], to: 'bob@example.test', subject: 'after the outage' });
    assert.equal(again.code, 0, again.output);
    assert.match(again.output, /<~  235 2\.7\.0 Authentication successful/);
  });

  it('authenticates through a TCP dovecot-auth listener (AUTH LOGIN) and delivers over LMTP on TCP', async () => {
    const r = await swaks(submissionTcp, {
      login: ['carol@example.test', 'carol-pw', 'LOGIN'],
      from: 'carol@example.test',
      to: 'erin@example.org',
      subject: 'through postfix tcp',
    });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /<~  235 2\.7\.0 Authentication successful/);
    const msg = await arrived('example.org/erin', 'through postfix tcp');
    assert.match(msg, /with LMTP id/);
    const wrong = await swaks(submissionTcp, { login: ['carol@example.test', 'wrong', 'LOGIN'], to: 'erin@example.org' });
    assert.match(wrong.output, /<~\* 535 5\.7\.8 Error: authentication failed/);
  });

  it('refuses mail without a login (the submission service asks for SASL)', async () => {
    const r = await swaks(submissionUnix, { from: 'someone@remote.example', to: 'bob@example.test' });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /<~\* 554 5\.7\.1/);
  });
});
