/**
 * The faster header-end search and line-break repair of src/inbound/mailauth-parser.ts against
 * mailauth's originals: both are run on the same messages, split into chunks at every point (and
 * into single bytes), and must hand the same header block and body chunks on, with the same
 * state. Then mailauth's verifier, with the patch and the remembered KeyObject keys of
 * src/inbound/mailauth-keys.ts in place, on signed messages.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fastEnsureLinebreaks, fastProcessChunk, originalParser } from '../../src/inbound/mailauth-parser.js';
import { authenticateMessage, verifyDkim } from '../../src/inbound/mailauth.js';

interface Recorded {
  headers: string | undefined;
  body: string[];
  state: { headerBytes: number; stateBytes: number[]; lastByte: number | undefined; state: string };
}

/** A parser stand-in with the fields both versions use; records what they hand on. */
async function run(
  chunks: Buffer[],
  impl: { processChunk: typeof fastProcessChunk; ensureLinebreaks: typeof fastEnsureLinebreaks },
): Promise<Recorded> {
  const recorded: Recorded['body'] = [];
  let headers: string | undefined;
  const parser = {
    state: 'header',
    stateBytes: [] as number[],
    headerBytes: 0,
    headerChunks: [] as Buffer[],
    lastByte: undefined as number | undefined,
    async emitHeaders(chunk?: Buffer) {
      this.state = 'body';
      if (chunk) this.headerChunks.push(chunk);
      headers = Buffer.concat(this.headerChunks).toString('latin1');
    },
    async nextChunk(chunk: Buffer) {
      recorded.push(chunk.toString('latin1'));
    },
  };
  for (const chunk of chunks) {
    for (const part of impl.ensureLinebreaks.call(parser, chunk)) await impl.processChunk.call(parser, part);
  }
  // Body chunks may be split differently only where the input was; compare their concatenation.
  return {
    headers,
    body: [recorded.join('')],
    state: { headerBytes: parser.headerBytes, stateBytes: parser.stateBytes, lastByte: parser.lastByte, state: parser.state },
  };
}

const fast = { processChunk: fastProcessChunk, ensureLinebreaks: fastEnsureLinebreaks };

const MESSAGES = [
  'From: a@b\r\nSubject: x\r\n\r\nbody\r\nmore\r\n',
  'From: a@b\nSubject: bare\n\nbody\nwith bare LF\n',
  '\r\nFrom: not a header\r\n',
  '\nbody only\n',
  'From: a@b\r\nNo-Body: yes\r\n',
  'From: a@b\r\n\r\n',
  'From: a@b\r\n\n\r\nmixed\r\n',
  'From: a@b\r\nX: y\r\n\r\n\r\n\r\n',
  'From: a@b\r\n\tfolded\r\n\r\n\n\n\r\n',
  'A\rB\r\n\r\n\rC\n',
  '',
  '\n',
  '\r\n',
  'x',
  'From: a@b\r\r\n\r\nbody',
  'H: 1\n\r\nb',
];

test('the fast parser hands on what the original does, at every chunk boundary', async () => {
  let cases = 0;
  for (const text of MESSAGES) {
    const whole = Buffer.from(text, 'latin1');
    const splits: Buffer[][] = [[whole], [...whole].map((b) => Buffer.from([b]))];
    for (let i = 1; i < whole.length; i++) splits.push([whole.subarray(0, i), whole.subarray(i)]);
    for (let i = 1; i < whole.length; i++)
      for (let j = i + 1; j < whole.length; j++) splits.push([whole.subarray(0, i), whole.subarray(i, j), whole.subarray(j)]);
    for (const chunks of splits) {
      const expected = await run(chunks, originalParser);
      const actual = await run(chunks, fast);
      assert.deepEqual(actual, expected, `${JSON.stringify(text)} split ${chunks.map((c) => c.length).join('+')}`);
      cases++;
    }
  }
  assert.ok(cases > 1000);
});

test('random messages of CR, LF and text agree with the original', async () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const alphabet = ['\r', '\n', 'a', ':', ' ', '\r\n'];
  for (let n = 0; n < 3000; n++) {
    let text = '';
    const length = Math.floor(random() * 40);
    for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)];
    const whole = Buffer.from(text, 'latin1');
    const cut = Math.floor(random() * (whole.length + 1));
    const chunks = [whole.subarray(0, cut), whole.subarray(cut)].filter((c) => c.length > 0);
    assert.deepEqual(await run(chunks, fast), await run(chunks, originalParser), JSON.stringify(text));
  }
});

test('mailauth verifies DKIM signatures with the patched parser, and finds a changed body', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { dkimSign } = await import('mailauth/lib/dkim/sign.js');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const record = `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const resolver = async (name: string, type: string) => {
    if (type === 'TXT' && name === 'sel._domainkey.example.org') return [[record]];
    throw Object.assign(new Error('no such name'), { code: 'ENOTFOUND' });
  };
  // Bare LFs in the body: the verifier repairs them as the signer did.
  const message = 'From: Someone <someone@example.org>\nTo: x@example.net\nSubject: test\n\nline one\nline two\r\n\n\n';
  const signed = await dkimSign(message, {
    signatureData: [{ signingDomain: 'example.org', selector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) }],
  } as unknown as Parameters<typeof dkimSign>[1]);
  const full = Buffer.from(signed.signatures + message);
  const input = { ip: '192.0.2.1', helo: 'mx.example.org', sender: 'someone@example.org', authservId: 'mx.test', resolver };
  const good = await authenticateMessage(full, input);
  assert.equal(good.dkim.results?.[0]?.status.result, 'pass');
  // The remembered key is a KeyObject (src/inbound/mailauth-keys.ts); mailauth still reports the PEM text.
  assert.match(String((good.dkim.results?.[0] as { publicKey?: string }).publicKey), /^-----BEGIN (RSA )?PUBLIC KEY-----\n/);
  const again = await authenticateMessage(full, input);
  assert.equal(again.dkim.results?.[0]?.status.result, 'pass', 'verified again with the remembered key');
  const changed = await authenticateMessage(Buffer.from(signed.signatures + message.replace('line two', 'line 2')), input);
  // mailauth reports a body that no longer matches the bh= tag as neutral (RFC 6376 section 6.1.3).
  assert.equal(changed.dkim.results?.[0]?.status.result, 'neutral');
  assert.match(String(changed.dkim.results?.[0]?.status.comment), /body hash did not verify/);
});

test('verifyDkim on a buffer finds what mailauth dkimVerify finds through its stream', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { dkimSign } = await import('mailauth/lib/dkim/sign.js');
  const { dkimVerify } = await import('mailauth/lib/dkim/verify.js');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const record = `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const resolver = async (name: string, type: string) => {
    if (type === 'TXT' && name === 'sel._domainkey.example.org') return [[record]];
    throw Object.assign(new Error('no such name'), { code: 'ENOTFOUND' });
  };
  const sign = async (message: string) =>
    (
      await dkimSign(message, {
        signatureData: [{ signingDomain: 'example.org', selector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) }],
      } as unknown as Parameters<typeof dkimSign>[1])
    ).signatures + message;
  const plain = 'From: a@example.org\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n';
  const big = `From: a@example.org\r\nSubject: big\r\n\r\n${'y'.repeat(99)}\r\n`.repeat(1500);
  const signed = await sign(plain);
  const messages = [
    plain,
    signed,
    signed.replace('body', 'BODY'),
    await sign(big),
    await sign('From: a@example.org\nSubject: bare LF\n\nline\n'),
    '',
    'no header at all',
    'From: Group: a@example.org, b@example.net;\r\n\r\n',
  ];
  for (const text of messages) {
    const options = { resolver, sender: 'a@example.org' } as Parameters<typeof verifyDkim>[1];
    const viaStream = await dkimVerify(Buffer.from(text), options);
    const direct = await verifyDkim(Buffer.from(text), options);
    assert.deepEqual(direct, viaStream, text.slice(0, 60));
    const hidden = (r: object) => ['headers', 'arc'].map((k) => JSON.stringify((r as Record<string, unknown>)[k]));
    assert.deepEqual(hidden(direct), hidden(viaStream));
  }
});
