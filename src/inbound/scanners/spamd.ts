/**
 * SpamAssassin's spamd, SPAMC/SPAMD protocol 1.5 (spamd/PROTOCOL in the SpamAssassin sources):
 *
 *   SYMBOLS SPAMC/1.5          SPAMD/1.1 0 EX_OK
 *   Content-length: <n>        Content-length: <m>
 *   User: <name>               Spam: True ; 15.0 / 5.0
 *                              <blank line>
 *   <message>                  GTUBE,MISSING_DATE,...
 *
 * A non-zero code in the status line (e.g. 76 EX_PROTOCOL) is a failure. Spam is Junk, or a 550
 * when spam_action is reject; messages over max_size are passed unscanned, as spamc does.
 */
import type { Logger } from '../../log.js';
import { spamtestValue, type HeaderField, type InboundMessage } from '../types.js';
import { ScannerError, defaultResult, parseAddress, safeText, type ScannerResult, type SpamdConfig } from './config.js';
import { exchange, messageChunks } from './exchange.js';

async function* symbolsRequest(message: InboundMessage, user: string | undefined): AsyncGenerator<Buffer> {
  const head = [`SYMBOLS SPAMC/1.5`, `Content-length: ${message.size}`];
  if (user !== undefined) head.push(`User: ${safeText(user, 100)}`);
  yield Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1');
  yield* messageChunks(message.file);
}

export interface SpamdVerdict {
  spam: boolean;
  score: number;
  threshold: number;
  symbols: string[];
}

/** Reads spamd's reply to SYMBOLS; an error status or garbage throws a ScannerError. */
export function parseSpamdReply(reply: Buffer): SpamdVerdict {
  const text = reply.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  const lines = (headEnd < 0 ? text : text.slice(0, headEnd)).split('\r\n');
  const status = /^SPAMD\/\d+\.\d+ (\d+) (.*)$/.exec(lines[0] ?? '');
  if (!status) throw new ScannerError('PROTOCOL', `unexpected reply ${JSON.stringify(safeText(lines[0] ?? ''))}`);
  if (status[1] !== '0') throw new ScannerError('REFUSED', `spamd: ${status[1]} ${safeText(status[2]!)}`);
  let verdict: SpamdVerdict | undefined;
  for (const line of lines.slice(1)) {
    const spam = /^Spam:\s*(True|False|Yes|No)\s*;\s*(-?\d+(?:\.\d+)?)\s*\/\s*(-?\d+(?:\.\d+)?)\s*$/i.exec(line);
    if (spam) verdict = { spam: /^(true|yes)$/i.test(spam[1]!), score: Number(spam[2]), threshold: Number(spam[3]), symbols: [] };
  }
  if (!verdict || headEnd < 0) throw new ScannerError('PROTOCOL', 'reply without a complete "Spam:" header');
  verdict.symbols = text
    .slice(headEnd + 4)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => /^[A-Za-z0-9_.-]+$/.test(s));
  return verdict;
}

/** The fields SpamAssassin itself adds (X-Spam-Status as its default "_YESNO_, score=..." template). */
export function spamdHeaders(v: SpamdVerdict): HeaderField[] {
  const score = v.score.toFixed(1);
  const status = `${v.spam ? 'Yes' : 'No'}, score=${score} required=${v.threshold.toFixed(1)} tests=${v.symbols.join(',') || 'none'}`;
  const fields: HeaderField[] = [];
  if (v.spam) fields.push(['X-Spam-Flag', 'YES']);
  fields.push(['X-Spam-Score', score], ['X-Spam-Status', status]);
  return fields;
}

export async function scanWithSpamd(config: SpamdConfig, message: InboundMessage, log: Logger): Promise<ScannerResult> {
  if (message.size > config.max_size) {
    log.info({ scanner: 'spamd', size: message.size, max_size: config.max_size }, 'message larger than spamd max_size: not scanned');
    return { scanner: 'spamd', action: 'accept', log: { spamd: 'skipped (size)' } };
  }
  try {
    const reply = await exchange({
      address: parseAddress(config.address)!,
      timeout: config.timeout,
      request: symbolsRequest(message, config.user),
      maxReply: 64 * 1024,
    });
    const verdict = parseSpamdReply(reply);
    const result: ScannerResult = {
      scanner: 'spamd',
      action: 'accept',
      log: { spamd: verdict.spam ? 'spam' : 'ham', spamd_score: verdict.score },
      scores: { spam: spamtestValue(verdict.score, verdict.threshold) },
    };
    if (config.add_headers) result.addHeaders = spamdHeaders(verdict);
    if (verdict.spam && config.spam_action === 'reject') {
      result.action = 'reject';
      result.status = { code: 550, enhanced: '5.7.1', text: 'Message rejected as spam' };
    } else if (verdict.spam) result.action = 'junk';
    return result;
  } catch (err) {
    log.warn({ scanner: 'spamd', err: String(err) }, `spamd gave no verdict: ${config.default_action}`);
    return defaultResult('spamd', config.default_action, err);
  }
}
