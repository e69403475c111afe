/**
 * Sender authentication on the MX port (SPF, DKIM, DMARC, ARC), with a DNS server run by the test:
 * the domain owner's DMARC policy is honoured (p=reject refused at the end of DATA, p=quarantine
 * to Junk), the verdicts are in one Authentication-Results field with our authserv-id, forged
 * fields claiming it are removed, a forward through an alias is ARC-sealed, and a DNS timeout is
 * a temporary failure.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { arc as verifyArc, sealMessage } from 'mailauth/lib/arc/index.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { generateKeyPairSync } from 'node:crypto';
import { DkimKeys, dkimRecord, generateKey } from '../../src/queue/dkim.js';
import { ImapTestClient } from '../helpers/imap-client.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { Dns } from '../../src/dns.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';

const AUTHSERV = 'mx.test.example';

describe('inbound sender authentication on the MX', () => {
  let dns: DnsServer;
  let sink: SmtpSink;
  let srv: TestServer;
  let keysDir: string;
  let senderKeys: DkimKeys;
  let forwarderKey: string;
  let edKeys: DkimKeys;

  before(async () => {
    keysDir = await mkdtemp(path.join(os.tmpdir(), 'maild-inbound-keys-'));
    // The sender's signing key, and ours (example.test) for sealing what an alias forwards.
    const senderRecord = await generateKey(path.join(keysDir, 'sender'), 'sender.example', 'sel');
    const ourRecord = await generateKey(path.join(keysDir, 'ours'), 'example.test', 'maild');
    // A forwarder we trust, which seals what it passes on (a mailing list that rewrites messages).
    const forwarderRecord = await generateKey(path.join(keysDir, 'fwd'), 'forwarder.example', 'arc');
    forwarderKey = await readFile(forwarderRecord.path, 'utf8');
    senderKeys = new DkimKeys({ dir: path.join(keysDir, 'sender'), selector: 'sel', logger: pino({ level: 'silent' }) });
    // A second, Ed25519 key of the sender (RFC 8463), under the selector "ed".
    const ed = generateKeyPairSync('ed25519');
    await mkdir(path.join(keysDir, 'ed', 'sender.example'), { recursive: true });
    await writeFile(path.join(keysDir, 'ed', 'sender.example', 'ed.pem'), ed.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    edKeys = new DkimKeys({ dir: path.join(keysDir, 'ed'), selector: 'ed', logger: pino({ level: 'silent' }) });
    const edRecord = dkimRecord('sender.example', 'ed', ed.publicKey);
    dns = await startDnsServer({
      'sender.example': { txt: ['v=spf1 ip4:127.0.0.1 -all'] },
      [senderRecord.name]: { txt: [senderRecord.record] },
      [edRecord.name]: { txt: [edRecord.record] },
      '_dmarc.sender.example': { txt: ['v=DMARC1; p=reject'] },
      'bank.example': { txt: ['v=spf1 -all'], a: ['192.0.2.1'] },
      '_dmarc.bank.example': { txt: ['v=DMARC1; p=reject'] },
      'quarantined.example': { txt: ['v=spf1 -all'], a: ['192.0.2.1'] },
      '_dmarc.quarantined.example': { txt: ['v=DMARC1; p=quarantine'] },
      'lists.example': { txt: ['v=spf1 -all'], a: ['192.0.2.1'] },
      '_dmarc.lists.example': { txt: ['v=DMARC1; p=reject'] },
      'attacker.example': { a: ['192.0.2.66'] },
      'slow.example': { drop: true },
      '_dmarc.slow.example': { drop: true },
      [ourRecord.name]: { txt: [ourRecord.record] },
      [forwarderRecord.name]: { txt: [forwarderRecord.record] },
      'forwarder.example': { txt: ['v=spf1 ip4:127.0.0.1 -all'] },
      'remote.example': { mx: [{ preference: 10, exchange: 'mx.remote.example' }] },
      'mx.remote.example': { a: ['127.0.0.1'] },
    });
    sink = await startSmtpSink();
    srv = await startTestServer({
      config: {
        dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '1s' },
        inbound: { authentication: { enabled: true, dmarc_exempt_domains: ['lists.example'], trusted_arc_sealers: ['forwarder.example'] } },
        dkim: { keys_dir: path.join(keysDir, 'ours'), selector: 'maild' },
        queue: { mx_port: sink.port, tls: 'none' },
      },
    });
  });
  after(async () => {
    await srv.stop();
    await sink.close();
    await dns.close();
    await rm(keysDir, { recursive: true, force: true });
  });

  /** One transaction from 127.0.0.1 (not a trusted network) after EHLO `helo`. */
  async function send(from: string, to: string[], message: string, helo = 'client.sender.example') {
    const c = await SmtpClient.connect(srv.smtpPort);
    await c.greeting();
    await c.command(`EHLO ${helo}`);
    const result = await c.sendMail(from, to, message);
    await c.command('QUIT');
    return result.final![0]!;
  }

  const message = (from: string, subject: string, extra = '') =>
    `From: <${from}>\r\nTo: <alice@example.test>\r\nSubject: ${subject}\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@test>\r\n${extra}\r\nBody of ${subject}.\r\n`;

  async function signed(from: string, subject: string, extra = ''): Promise<string> {
    const text = message(from, subject, extra);
    const signature = await senderKeys.signatureFor('sender.example', Buffer.from(text));
    assert.ok(signature, 'the test message is signed');
    return signature + text;
  }

  /** The message with this subject in a folder's new/ ('' for INBOX), or undefined. */
  async function delivered(mailbox: string, subject: string, folder = ''): Promise<string | undefined> {
    const dir = path.join(srv.mailRoot, mailbox, folder, 'new');
    for (const file of await readdir(dir).catch(() => [] as string[])) {
      const text = await readFile(path.join(dir, file), 'latin1');
      if (text.includes(`\nSubject: ${subject}\n`)) return text;
    }
    return undefined;
  }

  const authResults = (text: string) => {
    const fields = text.split(/\n(?![ \t])/).filter((f) => /^Authentication-Results:/i.test(f));
    return fields.map((f) => f.replace(/\r?\n[ \t]+/g, ' '));
  };

  it('delivers a signed, aligned message to INBOX with dkim=pass, spf=pass and dmarc=pass recorded', async () => {
    const reply = await send('news@sender.example', ['alice@example.test'], await signed('news@sender.example', 'aligned'));
    assert.equal(reply.code, 250, reply.text);
    const text = await delivered('example.test/alice', 'aligned');
    assert.ok(text?.includes('Subject: aligned'));
    const [ar, ...more] = authResults(text!);
    assert.equal(more.length, 0, 'one Authentication-Results field');
    assert.ok(ar!.startsWith(`Authentication-Results: ${AUTHSERV};`), ar);
    assert.match(ar!, /dkim=pass[^;]*header\.i=@sender\.example/);
    assert.match(ar!, /spf=pass[^;]*smtp\.mailfrom=[^;]*sender\.example/);
    assert.match(ar!, /dmarc=pass[^;]*header\.from=sender\.example/);
    // The delivery's log line carries the verdicts.
    const line = srv.logs.find((l) => l.msg === 'delivered' && l.to === 'alice@example.test' && l.dmarc === 'pass');
    assert.ok(line, 'delivery logged with the checks');
    assert.equal(line.spf, 'pass');
    assert.equal(line.folder, 'INBOX');
  });

  it('verifies every signature, Ed25519 included (RFC 8463)', async () => {
    const text = message('news@sender.example', 'twosignatures');
    const rsa = await senderKeys.signatureFor('sender.example', Buffer.from(text));
    const ed = await edKeys.signatureFor('sender.example', Buffer.from(text));
    assert.ok(rsa && ed && /a=ed25519-sha256/.test(ed));
    const reply = await send('news@sender.example', ['alice@example.test'], ed + rsa + text);
    assert.equal(reply.code, 250, reply.text);
    const signed2 = await delivered('example.test/alice', 'twosignatures');
    assert.ok(signed2, 'delivered');
    const [ar] = authResults(signed2);
    assert.match(ar!, /dkim=pass[^;]*header\.s=ed[^;]*header\.a=ed25519-sha256/);
    assert.match(ar!, /dkim=pass[^;]*header\.s=sel[^;]*header\.a=rsa-sha256/);
  });

  it('refuses a forged From: whose domain publishes p=reject with 550 5.7.1 at the end of DATA', async () => {
    const before = (await readdir(path.join(srv.mailRoot, 'example.test/alice/new')).catch(() => [])).length;
    const reply = await send('evil@attacker.example', ['alice@example.test'], message('ceo@bank.example', 'forged'), 'attacker.example');
    assert.deepEqual([reply.code, reply.enhanced], [550, '5.7.1'], reply.text);
    assert.match(reply.text, /DMARC/);
    const afterCount = (await readdir(path.join(srv.mailRoot, 'example.test/alice/new')).catch(() => [])).length;
    assert.equal(afterCount, before, 'nothing delivered');
    const refused = srv.logs.find((l) => l.msg === 'message refused' && l.dmarc === 'fail');
    assert.equal(refused?.dmarc_policy, 'reject');
    // Nothing waits in the checks' directory afterwards.
    assert.deepEqual(await readdir(path.join(srv.dir, 'data', 'inbound')), []);
  });

  it('delivers a p=quarantine failure into Junk, created with its special use, which IMAP lists', async () => {
    const reply = await send(
      'x@attacker.example',
      ['bob@example.test'],
      message('promo@quarantined.example', 'quarantined'),
      'attacker.example',
    );
    assert.equal(reply.code, 250, reply.text);
    assert.equal(await delivered('example.test/bob', 'quarantined'), undefined, 'not in INBOX');
    const junk = await delivered('example.test/bob', 'quarantined', '.Junk');
    assert.ok(junk?.includes('Subject: quarantined'), 'in Junk');
    assert.match(authResults(junk!)[0]!, /dmarc=fail/);
    const subscriptions = await readFile(path.join(srv.mailRoot, 'example.test/bob/subscriptions'), 'latin1');
    assert.match(subscriptions, /^Junk$/m);
    // IMAP sees it as any delivery: Junk is listed with its special use and holds the message.
    const imap = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
    await imap.greeting();
    assert.equal((await imap.login('bob@example.test', 'bob-pw')).status, 'OK');
    const list = await imap.cmd('LIST "" "*"');
    assert.ok(
      list.untagged.some((l) => /\\Junk/.test(l) && /"?Junk"?$/.test(l)),
      list.untagged.join('\n'),
    );
    const select = await imap.cmd('SELECT Junk');
    assert.equal(select.status, 'OK');
    assert.ok(select.untagged.includes('1 EXISTS'), select.untagged.join('\n'));
    await imap.logout();
  });

  it('gives a message for several mailboxes one verdict and one copy in each Junk, also through the queue', async () => {
    // small@ has a quota: the message goes through the queue, which delivers to each mailbox alone.
    const reply = await send(
      'x@attacker.example',
      ['carol@example.test', 'small@example.test'],
      message('promo@quarantined.example', 'twojunk'),
      'attacker.example',
    );
    assert.equal(reply.code, 250, reply.text);
    await waitFor(async () => Boolean(await delivered('example.test/small', 'twojunk', '.Junk')), 10_000, 'the queue delivered to small');
    for (const mailbox of ['example.test/carol', 'example.test/small']) {
      const junk = await delivered(mailbox, 'twojunk', '.Junk');
      assert.ok(junk?.includes('Subject: twojunk'), `${mailbox}: in Junk`);
      assert.equal(authResults(junk!).length, 1, `${mailbox}: one Authentication-Results field`);
    }
  });

  it('honours a DMARC failure sealed by a trusted forwarder whose ARC chain passes', async () => {
    const original = message('ceo@bank.example', 'arcforwarded');
    const seal = await sealMessage(Buffer.from(original), {
      signingDomain: 'forwarder.example',
      selector: 'arc',
      privateKey: forwarderKey,
      authResults: 'forwarder.example; spf=pass smtp.mailfrom=bank.example; dmarc=pass header.from=bank.example',
      cv: 'none',
    } as Parameters<typeof sealMessage>[1]);
    const reply = await send(
      'list-bounces@forwarder.example',
      ['alice@example.test'],
      seal.toString('latin1') + original,
      'mail.forwarder.example',
    );
    assert.equal(reply.code, 250, reply.text);
    const text = await delivered('example.test/alice', 'arcforwarded');
    assert.ok(text?.includes('Subject: arcforwarded'), 'in INBOX');
    assert.match(authResults(text!)[0]!, /arc=pass/);
    assert.match(authResults(text!)[0]!, /dmarc=fail/);
    assert.ok(srv.logs.some((l) => l.msg === 'delivered' && l.dmarc_override === 'arc:forwarder.example'));
  });

  it('only records a DMARC failure for an exempt domain (a mailing list)', async () => {
    const reply = await send('x@attacker.example', ['carol@example.test'], message('list@lists.example', 'listmail'), 'attacker.example');
    assert.equal(reply.code, 250, reply.text);
    const text = await delivered('example.test/carol', 'listmail');
    assert.ok(text?.includes('Subject: listmail'));
    assert.match(authResults(text!)[0]!, /dmarc=fail/);
    assert.ok(srv.logs.some((l) => l.msg === 'delivered' && l.to === 'carol@example.test' && l.dmarc_override === 'domain'));
  });

  it('removes an incoming Authentication-Results field that claims our authserv-id, and keeps others', async () => {
    const forged = `Authentication-Results: ${AUTHSERV.toUpperCase()}; dkim=pass header.d=bank.example; dmarc=pass\r\nAuthentication-Results: other.example; spf=pass\r\n`;
    const reply = await send('news@sender.example', ['alice@example.test'], await signed('news@sender.example', 'forgedar', forged));
    assert.equal(reply.code, 250, reply.text);
    const text = await delivered('example.test/alice', 'forgedar');
    assert.ok(text?.includes('Subject: forgedar'));
    const fields = authResults(text!);
    assert.equal(fields.length, 2, fields.join('\n'));
    assert.ok(fields[0]!.startsWith(`Authentication-Results: ${AUTHSERV}; `));
    assert.match(fields[0]!, /dmarc=pass/);
    assert.ok(!fields.some((f) => f.includes('header.d=bank.example')), 'the forged field is gone');
    assert.ok(
      fields.some((f) => f.startsWith('Authentication-Results: other.example;')),
      'the other server’s field stays',
    );
  });

  it('seals a message an alias forwards to another server with an ARC set that verifies', async () => {
    const count = sink.messages.length;
    const reply = await send('news@sender.example', ['forward@example.test'], await signed('news@sender.example', 'forwarded'));
    assert.equal(reply.code, 250, reply.text);
    const [out] = (await sink.waitForMessages(count + 1, 15_000)).slice(count);
    const data = out!.data;
    const text = data.toString('latin1');
    assert.match(text, /^ARC-Seal: i=1;/m);
    assert.match(text, /^ARC-Message-Signature: i=1;/m);
    assert.match(text, /^ARC-Authentication-Results: i=1; mx\.test\.example;/m);
    const resolver = new Dns({ servers: [`127.0.0.1:${dns.port}`] }).resolve;
    const verified = await dkimVerify(data, { resolver } as Parameters<typeof dkimVerify>[1]);
    const chain = await verifyArc((verified as unknown as { arc: Parameters<typeof verifyArc>[0] }).arc, { resolver } as Parameters<
      typeof verifyArc
    >[1]);
    assert.equal(chain.status.result, 'pass', JSON.stringify(chain.status));
  });

  it('answers a DNS timeout with a temporary failure, not a pass', async () => {
    const reply = await send('someone@slow.example', ['alice@example.test'], message('someone@slow.example', 'slowdns'), 'slow.example');
    assert.equal(reply.code, 451, reply.text);
    assert.match(reply.enhanced ?? '', /^4\./);
    await waitFor(() => srv.logs.some((l) => l.msg === 'message refused' && l.dmarc === 'temperror'), 2000, 'temperror logged');
  });
});
