/**
 * Debian's OpenDKIM as a milter: one instance signing (mail of example.test from an internal
 * client), one verifying with the public key from TestPublicKeys, both started once for this
 * file with a key from opendkim-genkey. The signature it asks us to insert verifies with
 * mailauth's verifier, and in the order [signer, verifier] the verifier sees the signer's edit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { miltersSchema } from '../../src/inbound/milter/config.js';
import { runMilters } from '../../src/inbound/milter/index.js';
import type { InboundMessage } from '../../src/inbound/types.js';
import { generateDkimKey, startOpendkim, type DkimKey, type MilterDaemon } from '../helpers/milter-daemons.js';

describe('milter client with OpenDKIM', () => {
  let dir: string;
  let key: DkimKey;
  let signer: MilterDaemon;
  let verifier: MilterDaemon;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-milter-dkim-'));
    key = await generateDkimKey(dir, 'example.test', 'sel1');
    [signer, verifier] = await Promise.all([startOpendkim('s', key), startOpendkim('v', key)]);
  });
  after(async () => {
    await Promise.all([signer?.stop(), verifier?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  const resolver = async (name: string, rrtype: string) => {
    if (rrtype === 'TXT' && name.toLowerCase() === `${key.selector}._domainkey.${key.domain}`) return [[key.dnsTxt]];
    throw Object.assign(new Error(`${name} not found`), { code: 'ENOTFOUND' });
  };

  const SHORT_BODY = ['Hello Bob,', '', 'a line with trailing spaces   ', ''];

  async function message(name: string, body = SHORT_BODY): Promise<InboundMessage> {
    const text = [
      'From: Alice <alice@example.test>',
      'To: =?utf-8?q?Bob?= <bob@remote.example>',
      'Subject: signed by the milter, Grüße aus Köln',
      `Message-ID: <${name}@example.test>`,
      'Date: Mon, 07 Dec 2026 10:00:00 +0000',
      '',
      ...body,
    ].join('\r\n');
    // A signed field with raw 8-bit bytes (not UTF-8) and a UTF-8 Subject: both must reach
    // OpenDKIM byte for byte, or the signature fails over the file.
    const bytes = Buffer.concat([Buffer.from('Cc: Andr\xe9 <andre@remote.example>\r\n', 'latin1'), Buffer.from(text, 'utf8')]);
    const file = path.join(dir, name);
    await writeFile(file, bytes);
    return {
      file,
      size: bytes.length,
      envelope: {
        queueId: `Q${name}`,
        clientIp: '127.0.0.1',
        clientHostname: 'localhost',
        clientPort: 40001,
        helo: 'client.example.test',
        protocol: 'ESMTP',
        sender: 'alice@example.test',
        recipients: ['bob@remote.example'],
        hostname: 'mx.example.test',
      },
    };
  }

  it('inserts the DKIM-Signature OpenDKIM asks for, on top, and it verifies', async () => {
    const r = await runMilters(miltersSchema.parse([{ address: signer.address, name: 'opendkim' }]), await message('signed'));
    try {
      assert.equal(r.action, 'accept');
      const [edit] = r.edits[0]!.edits;
      assert.equal(edit?.type, 'insheader');
      const signed = await readFile(r.message.file);
      const text = signed.toString('utf8');
      assert.match(text, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/simple; d=example\.test; s=sel1;\r\n\t/);
      assert.match(text, /\r\n\th=Cc:From:To:Subject:Date;\r\n/, 'the 8-bit Cc and the UTF-8 Subject are signed');
      assert.ok(text.includes('\r\nFrom: Alice <alice@example.test>\r\n'));
      const { results } = await dkimVerify(signed, { resolver, curTime: new Date() });
      assert.equal(results.length, 1);
      assert.equal(results[0]!.status.result, 'pass');
      assert.equal(results[0]!.signingDomain, 'example.test');
      assert.equal(results[0]!.selector, 'sel1');
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });

  it('runs milters in order: the verifier after the signer sees the signature and passes it', async () => {
    const input = await message('chain');
    const r = await runMilters(
      miltersSchema.parse([
        { address: signer.address, name: 'signer' },
        { address: verifier.address, name: 'verifier' },
      ]),
      input,
    );
    try {
      assert.equal(r.action, 'accept');
      assert.deepEqual(
        r.edits.map((e) => e.milter),
        ['signer', 'verifier'],
      );
      const text = await readFile(r.message.file, 'utf8');
      assert.match(text, /^Authentication-Results: mx\.example\.test;\r\n\tdkim=pass .*header\.d=example\.test/);
      assert.match(text, /\r\nDKIM-Signature: v=1;/);
      assert.equal(r.createdFile, r.message.file);
      assert.equal(r.createdFile, `${input.file}.milter2`, 'only the last edited copy is left');
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });

  it('in the other order the verifier sees no signature: it adds no result, the signer still signs', async () => {
    const r = await runMilters(
      miltersSchema.parse([
        { address: verifier.address, name: 'verifier' },
        { address: signer.address, name: 'signer' },
      ]),
      await message('reversed'),
    );
    try {
      assert.equal(r.action, 'accept');
      assert.deepEqual(
        r.edits.map((e) => e.milter),
        ['signer'],
      );
      const text = await readFile(r.message.file, 'utf8');
      assert.doesNotMatch(text, /dkim=pass/);
      assert.match(text, /^DKIM-Signature: /);
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });

  it('sends a body of several 64 KiB chunks intact: the signature over it verifies', async () => {
    // 5000 numbered lines, about 390 KB: seven SMFIC_BODY chunks of at most 65535 bytes.
    const body = Array.from({ length: 5000 }, (_, i) => `line ${i} ${'x'.repeat(70)}`);
    const r = await runMilters(
      miltersSchema.parse([{ address: signer.address }, { address: verifier.address }]),
      await message('large', [...body, '']),
    );
    try {
      assert.equal(r.action, 'accept');
      const signed = await readFile(r.message.file);
      assert.ok(signed.length > 6 * 65535);
      assert.match(signed.toString('utf8'), /^Authentication-Results: mx\.example\.test;\r\n\tdkim=pass /);
      const { results } = await dkimVerify(signed, { resolver, curTime: new Date() });
      assert.equal(results[0]!.status.result, 'pass');
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });
});
