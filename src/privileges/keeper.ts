/**
 * The privileged keeper: a small process that stays root after the daemon has dropped to its
 * user, so a SIGHUP can re-read what only root may read, as Dovecot's config process does. It
 * answers one request over the IPC channel of its parent, "reload": the configuration file's text
 * and the TLS certificate and key it names. The paths come from the root-owned configuration,
 * never from the request, so a compromised daemon can learn nothing it was not already given.
 * It exits when its parent goes away.
 */
import { readFileSync } from 'node:fs';
import { parseConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import { loadCredentials } from '../tls/certificates.js';
import type { KeeperReply, KeeperRequest } from './keeper-client.js';

const configPath = process.argv[2];
/** The keeper has nothing to log (the daemon logs the outcome); pino stays out of this process. */
const quiet = { info: () => undefined } as unknown as Logger;
if (!configPath || !process.send) {
  process.stderr.write('maild keeper: started without its parent or configuration path\n');
  process.exit(64);
}

async function answer(request: KeeperRequest): Promise<KeeperReply> {
  try {
    const configText = readFileSync(configPath!, 'utf8');
    const cfg = parseConfig(configText, configPath!);
    const credentials = await loadCredentials(cfg.tls, cfg.data_dir, cfg.hostname, quiet);
    return { id: request.id, ok: true, configText, credentials };
  } catch (err) {
    return { id: request.id, ok: false, error: (err as Error).message };
  }
}

process.on('message', (request: KeeperRequest) => {
  if (request?.type !== 'reload' || typeof request.id !== 'number') return;
  void answer(request).then((reply) => process.send!(reply));
});
process.on('disconnect', () => process.exit(0));
