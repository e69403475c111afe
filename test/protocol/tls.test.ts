/**
 * TLS: implicit TLS (SMTPS-style) listeners, an operator's certificate, and a renewed
 * certificate picked up by reload (SIGHUP) without a restart.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { generate } from 'selfsigned';
import { parseConfig } from '../../src/config/load.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer } from '../helpers/server.js';
import { stringify } from 'yaml';

async function certificate(cn: string) {
  const pems = await generate([{ name: 'commonName', value: cn }], { keySize: 2048, algorithm: 'sha256' });
  return { cert: pems.cert, key: pems.private, fingerprint: new X509Certificate(pems.cert).fingerprint256 };
}

function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
      s.destroy();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

describe('TLS', () => {
  it('serves implicit TLS with the configured certificate and reloads a renewed one', async () => {
    const first = await certificate('mx.first.example');
    const second = await certificate('mx.second.example');
    const srv = await startTestServer({
      config: {
        listeners: [{ name: 'smtps', protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'implicit' }],
      },
    });
    try {
      const certFile = path.join(srv.dir, 'cert.pem');
      const keyFile = path.join(srv.dir, 'key.pem');
      await writeFile(certFile, first.cert);
      await writeFile(keyFile, first.key);
      const configPath = srv.runtime.config.configPath;
      const raw = (await readFile(configPath, 'utf8')) + stringify({ tls: { cert: certFile, key: keyFile } });
      await writeFile(configPath, raw);
      await srv.runtime.reload(parseConfig(raw, configPath, {}));
      const port = srv.runtime.portOf('smtps');
      assert.equal(await peerFingerprint(port), first.fingerprint);

      const c = await SmtpClient.connect(port, { implicitTls: true });
      assert.equal((await c.greeting()).code, 220);
      const ehlo = await c.command('EHLO tls.client.example');
      assert.ok(!ehlo.lines.some((l) => l.includes('STARTTLS')), 'no STARTTLS inside implicit TLS');
      await c.quit();

      // The certificate is renewed on disk (certbot); a reload picks it up for new sessions.
      await writeFile(certFile, second.cert);
      await writeFile(keyFile, second.key);
      await srv.runtime.reload(parseConfig(raw, configPath, {}));
      assert.equal(await peerFingerprint(port), second.fingerprint);

      // A key that does not match its certificate is refused; the running one stays.
      await writeFile(keyFile, first.key);
      await assert.rejects(srv.runtime.reload(parseConfig(raw, configPath, {})), /key does not belong to the certificate/);
      assert.equal(await peerFingerprint(port), second.fingerprint);
    } finally {
      await srv.stop();
    }
  });
});
