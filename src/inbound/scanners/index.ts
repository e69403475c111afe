/**
 * The content scanners that are not milters, run side by side on one received message. Each
 * configured scanner yields exactly one result (its verdict or its default action); the caller
 * merges them with the other checks (policy.ts). The order of the results is rspamd, spamd, clamd.
 */
import type { Logger } from '../../log.js';
import type { InboundMessage } from '../types.js';
import type { ScannerResult, ScannersConfig } from './config.js';
import { scanWithClamd } from './clamd.js';
import { scanWithRspamd } from './rspamd.js';
import { scanWithSpamd } from './spamd.js';

export { scannersConfigSchema, type ScannerResult, type ScannersConfig } from './config.js';

export async function runScanners(config: ScannersConfig, message: InboundMessage, log: Logger): Promise<ScannerResult[]> {
  const scans: Promise<ScannerResult>[] = [];
  if (config.rspamd) scans.push(scanWithRspamd(config.rspamd, message, log));
  if (config.spamd) scans.push(scanWithSpamd(config.spamd, message, log));
  if (config.clamd) scans.push(scanWithClamd(config.clamd, message, log));
  return Promise.all(scans);
}
