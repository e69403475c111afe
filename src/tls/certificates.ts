/**
 * TLS credentials: the operator's certificate and key, or a self-signed pair generated on first
 * start in data_dir/tls (like Debian's snakeoil certificate), so STARTTLS works out of the box.
 * Re-read on SIGHUP, so a renewed certificate (certbot) is picked up without a restart.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';

export interface Credentials {
  key: string;
  cert: string;
  source: 'configured' | 'self-signed';
  /** Subject and expiry, for the start-up log line. */
  subject: string;
  validTo: string;
}

function describe(cert: string, key: string, where: string): { subject: string; validTo: string } {
  try {
    const x509 = new X509Certificate(cert);
    createPrivateKey(key);
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not belong to the certificate');
    return { subject: x509.subject.replace(/\n/g, ', '), validTo: x509.validTo };
  } catch (err) {
    throw new MailError('CONFIG_INVALID', `${where}: ${(err as Error).message}`);
  }
}

export async function loadCredentials(
  tls: { cert?: string | undefined; key?: string | undefined },
  dataDir: string,
  hostname: string,
  logger: Logger,
): Promise<Credentials> {
  if (tls.cert && tls.key) {
    const read = async (file: string, key: string) => {
      try {
        return await fs.readFile(file, 'utf8');
      } catch (err) {
        throw new MailError('CONFIG_INVALID', `${key}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
    };
    const cert = await read(tls.cert, 'tls.cert');
    const key = await read(tls.key, 'tls.key');
    return { cert, key, source: 'configured', ...describe(cert, key, 'tls.cert/tls.key') };
  }
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'selfsigned-cert.pem');
  const keyFile = path.join(dir, 'selfsigned-key.pem');
  try {
    const [cert, key] = await Promise.all([fs.readFile(certFile, 'utf8'), fs.readFile(keyFile, 'utf8')]);
    return { cert, key, source: 'self-signed', ...describe(cert, key, certFile) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const now = new Date();
  // Loaded only to generate: the privileged keeper reads certificates and stays small.
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: hostname }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: now,
    notAfterDate: new Date(now.getTime() + 10 * 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: hostname },
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // The key first and private; a crash between the two writes leaves a key without a cert,
  // which the next start treats as missing and regenerates.
  await fs.writeFile(`${keyFile}.tmp`, pems.private, { mode: 0o600 });
  await fs.rename(`${keyFile}.tmp`, keyFile);
  await fs.writeFile(`${certFile}.tmp`, pems.cert, { mode: 0o644 });
  await fs.rename(`${certFile}.tmp`, certFile);
  logger.info({ cert: certFile, hostname }, 'generated a self-signed certificate; set tls.cert and tls.key for a real one');
  return { cert: pems.cert, key: pems.private, source: 'self-signed', ...describe(pems.cert, pems.private, certFile) };
}
