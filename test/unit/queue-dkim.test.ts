/**
 * DKIM keys and signatures (RFC 6376, RFC 8463), every signature checked by mailauth's verifier
 * with a resolver serving the generated TXT record.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
// The top-level 'mailauth' entry loads undici, which does not run on every Node 20 release.
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { isMailError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { DkimKeys, dkimRecord, generateKey, normalizeDomain, parseKey } from '../../src/queue/dkim.js';

const MESSAGE = [
  'Received: from client.example (client.example [192.0.2.9]) by mx.example.com',
  'Return-Path: <alice@example.com>',
  'From: Alice =?utf-8?q?M=C3=BCller?= <alice@example.com>',
  'To: bob@remote.example,',
  '  carol@remote.example',
  'Subject:   Grüße   aus   Köln  ',
  'Date: Tue, 1 Oct 2024 10:00:00 +0000',
  'Message-ID: <abc@example.com>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: 8bit',
  '',
  'Hello Bob,  ',
  '.a line that starts with a dot',
  '..and one with two',
  '\tGrüße, Ärger, 日本語',
  '',
  '',
].join('\n');

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

type Resolver = (name: string, rrtype: string) => Promise<string[][]>;

function resolverFor(records: Record<string, string>): Resolver {
  return async (name, rrtype) => {
    const value = records[name.toLowerCase()];
    if (rrtype !== 'TXT' || value === undefined) throw Object.assign(new Error(`${name} not found`), { code: 'ENOTFOUND' });
    return [[value]];
  };
}

async function verify(message: Buffer, resolver: Resolver) {
  const { results } = await dkimVerify(message, { resolver, curTime: new Date() });
  assert.equal(results.length, 1, 'one signature');
  return results[0]!;
}

function tags(signature: string): Map<string, string> {
  const unfolded = signature.replace(/\r\n[ \t]+/g, ' ').replace(/^DKIM-Signature:/, '');
  return new Map(
    unfolded
      .split(';')
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => [t.slice(0, t.indexOf('=')).trim(), t.slice(t.indexOf('=') + 1).replace(/\s+/g, '')] as [string, string]),
  );
}

describe('DKIM', () => {
  let dir: string;
  let record: { name: string; record: string; zone: string; path: string };
  let resolver: Resolver;
  let keys: DkimKeys;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dkim-'));
    record = await generateKey(path.join(dir, 'keys'), 'Example.COM', 'mail');
    resolver = resolverFor({ [record.name]: record.record });
    keys = new DkimKeys({ dir: path.join(dir, 'keys'), selector: 'mail', logger: silentLogger });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('generates a 2048-bit RSA key, private to its owner, and the TXT record for it', async () => {
    assert.equal(record.path, path.join(dir, 'keys', 'example.com', 'mail.pem'));
    assert.equal((await stat(record.path)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(record.path))).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(dir, 'keys'))).mode & 0o777, 0o700);
    assert.deepEqual(await readdir(path.dirname(record.path)), ['mail.pem'], 'no temporary file left behind');
    const pem = await readFile(record.path, 'utf8');
    assert.match(pem, /^-----BEGIN RSA PRIVATE KEY-----\n/);
    assert.equal(createPrivateKey(pem).asymmetricKeyDetails?.modulusLength, 2048);

    assert.equal(record.name, 'mail._domainkey.example.com');
    assert.match(record.record, /^v=DKIM1; k=rsa; p=MIIB[A-Za-z0-9+/]+=*$/);
    const zone = /^mail\._domainkey\.example\.com\. IN TXT \( ((?:"[^"]*" ?)+)\)$/.exec(record.zone);
    assert.ok(zone, record.zone);
    const strings = [...zone[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    assert.ok(strings.length >= 3, 'a 2048-bit key needs more than one string');
    for (const s of strings) assert.ok(s.length <= 255, `string of ${s.length} characters`);
    assert.equal(strings.join(''), record.record);
  });

  it('refuses to overwrite a key, and names that are no domains', async () => {
    const before = await readFile(record.path, 'utf8');
    await assert.rejects(generateKey(path.join(dir, 'keys'), 'example.com', 'mail', 1024), (err) => isMailError(err, 'ALREADY_EXISTS'));
    assert.equal(await readFile(record.path, 'utf8'), before);
    for (const bad of ['../etc', 'a/b', 'a..b', '.hidden', '', 'exa mple.com']) {
      await assert.rejects(generateKey(path.join(dir, 'keys'), bad, 'mail', 1024), (err) => isMailError(err), bad);
      assert.equal(await keys.get(bad), undefined, bad);
    }
    assert.equal(normalizeDomain('Bücher.Example.'), 'xn--bcher-kva.example');
  });

  for (const [variant, text] of [
    ['LF', MESSAGE],
    ['CRLF', crlf(MESSAGE)],
  ] as const) {
    it(`signs a message with ${variant} line ends so that it verifies as sent (CRLF)`, async () => {
      const signature = await keys.signatureFor('example.com', Buffer.from(text));
      assert.ok(signature);
      assert.match(signature, /^DKIM-Signature: /);
      assert.ok(signature.endsWith('\r\n'));
      for (const line of signature.slice(0, -2).split('\r\n')) {
        assert.ok(line.length <= 78, `line of ${line.length} characters`);
        assert.doesNotMatch(line, /[\r\n]/);
      }
      assert.equal(
        signature
          .split('\r\n')
          .slice(1, -1)
          .every((l) => /^[ \t]/.test(l)),
        true,
        'continuation lines are folded',
      );

      const t = tags(signature);
      assert.equal(t.get('a'), 'rsa-sha256');
      assert.equal(t.get('c'), 'relaxed/relaxed');
      assert.equal(t.get('d'), 'example.com');
      assert.equal(t.get('s'), 'mail');
      const h = t.get('h')!.toLowerCase().split(':');
      assert.deepEqual(
        h.filter((n) => n === 'from'),
        ['from'],
        'From is signed',
      );
      for (const n of ['to', 'subject', 'date', 'message-id', 'mime-version', 'content-type', 'content-transfer-encoding'])
        assert.ok(h.includes(n), n);
      assert.ok(!h.includes('received') && !h.includes('return-path'), 'trace fields are not signed');

      const sent = Buffer.from(signature + crlf(text));
      const result = await verify(sent, resolver);
      assert.equal(result.status.result, 'pass', JSON.stringify(result.status));
      assert.equal(result.signingDomain, 'example.com');
      assert.equal(result.selector, 'mail');
      // As stored (LF line ends) it verifies too.
      assert.equal((await verify(Buffer.from(signature + text), resolver)).status.result, 'pass');
    });
  }

  it('signs a stream the same as a buffer, whatever the chunk boundaries', async () => {
    const now = new Date('2024-10-01T10:00:00Z');
    const fromBuffer = await keys.signatureFor('example.com', Buffer.from(MESSAGE), { now });
    const bytes = Buffer.from(MESSAGE);
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 3) chunks.push(bytes.subarray(i, i + 3));
    const fromStream = await keys.signatureFor('example.com', Readable.from(chunks), { now });
    // RSA PKCS#1 v1.5 signatures are deterministic.
    assert.equal(fromStream, fromBuffer);
  });

  it('a changed body, a From added below the signed one or a changed Subject fails verification', async () => {
    const signature = (await keys.signatureFor('example.com', Buffer.from(MESSAGE)))!;
    const sent = crlf(MESSAGE);
    const tampered = [
      sent.replace('Hello Bob', 'Hello Eve'),
      sent.replace('\r\n\r\n', '\r\nFrom: mallory@evil.example\r\n\r\n'),
      sent.replace('Köln', 'Bonn'),
    ];
    for (const message of tampered) {
      const result = await verify(Buffer.from(signature + message), resolver);
      assert.notEqual(result.status.result, 'pass', message.slice(0, 80));
    }
    // Whitespace that relaxed canonicalization ignores does not break it.
    const reflowed = sent.replace('Hello Bob,  ', 'Hello   Bob,').replace('Subject:   Grüße', 'Subject: Grüße');
    assert.equal((await verify(Buffer.from(signature + reflowed), resolver)).status.result, 'pass');
  });

  it('returns undefined when the domain has no key, and for a message without From', async () => {
    assert.equal(await keys.signatureFor('other.example', Buffer.from(MESSAGE)), undefined);
    const stream = Readable.from([Buffer.from(MESSAGE)]);
    assert.equal(await keys.signatureFor('other.example', stream), undefined);
    assert.equal(stream.destroyed, true, 'the unread stream is released');
    assert.equal(await keys.signatureFor('example.com', Buffer.from(MESSAGE.replace(/^From: .*\n/m, ''))), undefined);
  });

  it('signs a message without a body, and one without an empty line', async () => {
    for (const text of ['From: a@example.com\r\nSubject: x\r\n\r\n', 'From: a@example.com\r\nSubject: x\r\n']) {
      const signature = await keys.signatureFor('example.com', Buffer.from(text));
      assert.ok(signature);
      assert.equal(tags(signature).get('bh'), '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=', 'sha256 of the empty string');
      assert.equal((await verify(Buffer.from(signature + text), resolver)).status.result, 'pass');
    }
  });

  it('picks up a key created while running, after at most a minute', async () => {
    let now = 1_000_000;
    const d = path.join(dir, 'late');
    const late = new DkimKeys({ dir: d, selector: 'sel1', logger: silentLogger, now: () => now });
    assert.equal(await late.get('late.example'), undefined);
    const created = await generateKey(d, 'late.example', 'sel1', 1024);
    now += 59_000;
    assert.equal(await late.get('late.example'), undefined, 'the absence is cached');
    now += 1_000;
    const key = await late.get('late.example');
    assert.equal(key?.domain, 'late.example');
    assert.equal(key?.selector, 'sel1');
    const signature = (await late.signatureFor('LATE.example', Buffer.from(MESSAGE)))!;
    const result = await verify(Buffer.from(signature + MESSAGE), resolverFor({ [created.name]: created.record }));
    assert.equal(result.status.result, 'pass');
    assert.equal(result.selector, 'sel1');

    // A replaced key file is noticed too; an unusable one stops signing without an exception.
    await writeFile(created.path, 'not a key');
    now += 60_000;
    assert.equal(await late.get('late.example'), undefined);
    assert.equal(await late.signatureFor('late.example', Buffer.from(MESSAGE)), undefined);
  });

  it('signs with an Ed25519 key (RFC 8463)', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const d = path.join(dir, 'ed');
    await mkdir(path.join(d, 'ed.example'), { recursive: true });
    await writeFile(path.join(d, 'ed.example', 'mail.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const ed = new DkimKeys({ dir: d, selector: 'mail', logger: silentLogger });
    const rr = dkimRecord('ed.example', 'mail', privateKey);
    assert.match(rr.record, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    const signature = (await ed.signatureFor('ed.example', Buffer.from(MESSAGE)))!;
    assert.equal(tags(signature).get('a'), 'ed25519-sha256');
    const result = await verify(Buffer.from(signature + crlf(MESSAGE)), resolverFor({ [rr.name]: rr.record }));
    assert.equal(result.status.result, 'pass', JSON.stringify(result.status));
  });

  it('refuses RSA keys shorter than 1024 bits (RFC 8301)', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 512 });
    assert.throws(() => parseKey(privateKey.export({ type: 'pkcs1', format: 'pem' }), 'example.com', 'mail'), /1024/);
  });
});
