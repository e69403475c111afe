/**
 * `maild dkim generate`: the key lands where the daemon looks for it, and the printed record
 * verifies a signature made with it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { silentLogger } from '../../src/log.js';
import { DkimKeys } from '../../src/queue/dkim.js';
import { runCliCaptured } from '../helpers/cli.js';

const maild = runCliCaptured;

describe('maild dkim generate', () => {
  let dir: string;
  let config: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-cli-dkim-'));
    config = path.join(dir, 'maild.yaml');
    await writeFile(
      config,
      'data_dir: data\nlisteners: [{protocol: smtp, port: 0}]\ndirectory: {file: {path: directory.yaml}}\nmail: {root: mail}\n',
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates DATA_DIR/dkim/DOMAIN/mail.pem and prints the record to publish', async () => {
    const r = await maild(['--config', config, 'dkim', 'generate', 'Example.com']);
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(dir, 'data', 'dkim', 'example.com', 'mail.pem');
    assert.match(r.stdout, new RegExp(`^private key: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const name = /^ {2}name: {2}(\S+)$/m.exec(r.stdout)?.[1];
    const value = /^ {2}value: (v=DKIM1; k=rsa; p=\S+)$/m.exec(r.stdout)?.[1];
    assert.equal(name, 'mail._domainkey.example.com');
    assert.ok(value);
    assert.match(r.stdout, /^mail\._domainkey\.example\.com\. IN TXT \( "v=DKIM1; k=rsa; " "p=[^"]+"( "[^"]+")* \)$/m);

    // What the daemon signs with this key verifies against the printed record.
    const keys = new DkimKeys({ dir: path.join(dir, 'data', 'dkim'), selector: 'mail', logger: silentLogger });
    const message = 'From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n';
    const signature = await keys.signatureFor('example.com', Buffer.from(message));
    assert.ok(signature);
    const resolver = async (n: string) => {
      if (n !== name) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return [[value]];
    };
    const { results } = await dkimVerify(Buffer.from(signature + message), { resolver });
    assert.equal(results[0]?.status.result, 'pass');
  });

  it('refuses to overwrite an existing key, with exit 1', async () => {
    const r = await maild(['--config', config, 'dkim', 'generate', 'example.com']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already exists/);
    assert.equal(r.stdout, '');
  });

  it('takes --selector and dkim.keys_dir (relative to the configuration)', async () => {
    const other = path.join(dir, 'other.yaml');
    await writeFile(
      other,
      'data_dir: data\nlisteners: [{protocol: smtp, port: 0}]\ndirectory: {file: {path: directory.yaml}}\nmail: {root: mail}\ndkim: {keys_dir: keys, selector: s1}\n',
    );
    const r = await maild(['--config', other, 'dkim', 'generate', 'example.org']);
    assert.equal(r.code, 0, r.stderr);
    await stat(path.join(dir, 'keys', 'example.org', 's1.pem'));
    assert.match(r.stdout, /name: {2}s1\._domainkey\.example\.org$/m);
    const r2 = await maild(['--config', other, 'dkim', 'generate', 'example.org', '--selector', '2024a']);
    assert.equal(r2.code, 0, r2.stderr);
    await stat(path.join(dir, 'keys', 'example.org', '2024a.pem'));
  });

  it('rejects a missing domain, a bad domain and an unknown subcommand', async () => {
    assert.equal((await maild(['--config', config, 'dkim', 'generate'])).code, 64);
    assert.equal((await maild(['--config', config, 'dkim', 'rotate', 'example.com'])).code, 64);
    const bad = await maild(['--config', config, 'dkim', 'generate', '../evil']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a domain name/);
    const usage = await maild(['--help']);
    assert.match(usage.stdout, /^ {2}dkim generate DOMAIN \[--selector S\]/m);
  });
});
