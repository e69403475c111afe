/** A throwaway self-signed certificate and key (RSA 2048, two days) for a server under test. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Writes cert.pem and key.pem into `dir` for `commonName`; returns their paths. */
export async function selfSignedCert(dir: string, commonName: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '2',
    '-subj',
    `/CN=${commonName}`,
  ]);
  return { cert, key };
}
