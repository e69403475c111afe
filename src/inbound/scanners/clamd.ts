/**
 * ClamAV's clamd, INSTREAM command (clamd(8), "INSTREAM"): "zINSTREAM\0", then the message in
 * chunks, each prefixed by its length as a 4-byte big-endian integer, then a zero-length chunk.
 * The reply, ended by NUL for z-commands: "stream: OK", "stream: <name> FOUND", or
 * "<reason> ERROR" (e.g. "INSTREAM size limit exceeded. ERROR" past StreamMaxLength).
 * A virus is refused: 554 5.7.1. Anything else that is not OK is a failure: the default action.
 */
import type { Logger } from '../../log.js';
import type { InboundMessage } from '../types.js';
import { ScannerError, defaultResult, parseAddress, safeText, type ClamdConfig, type ScannerResult } from './config.js';
import { exchange, messageChunks } from './exchange.js';

async function* instream(file: string): AsyncGenerator<Buffer> {
  yield Buffer.from('zINSTREAM\0', 'latin1');
  for await (const chunk of messageChunks(file)) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(chunk.length);
    yield length;
    yield chunk;
  }
  yield Buffer.alloc(4);
}

export type ClamdVerdict = { clean: true } | { clean: false; virus: string };

/** Reads clamd's reply to INSTREAM; an error reply or garbage throws a ScannerError. */
export function parseClamdReply(reply: Buffer): ClamdVerdict {
  const text = reply.toString('latin1').replace(/\0+$/, '').trim();
  if (text === 'stream: OK') return { clean: true };
  const found = /^stream: (.+) FOUND$/.exec(text);
  if (found) return { clean: false, virus: safeText(found[1]!, 100) };
  if (/ERROR$/.test(text)) throw new ScannerError('REFUSED', safeText(text));
  throw new ScannerError('PROTOCOL', `unexpected reply ${JSON.stringify(safeText(text))}`);
}

export async function scanWithClamd(config: ClamdConfig, message: InboundMessage, log: Logger): Promise<ScannerResult> {
  if (message.size > config.max_size) {
    log.info({ scanner: 'clamd', size: message.size, max_size: config.max_size }, 'message larger than clamd max_size: not scanned');
    return { scanner: 'clamd', action: 'accept', log: { clamd: 'skipped (size)' } };
  }
  try {
    const reply = await exchange({
      address: parseAddress(config.address)!,
      timeout: config.timeout,
      request: instream(message.file),
      maxReply: 4096,
    });
    const verdict = parseClamdReply(reply);
    if (verdict.clean) return { scanner: 'clamd', action: 'accept', log: { clamd: 'clean' }, scores: { virus: 1 } };
    return {
      scanner: 'clamd',
      action: 'reject',
      status: { code: 554, enhanced: '5.7.1', text: `message contains a virus (${verdict.virus})` },
      log: { clamd: 'virus', virus: verdict.virus },
      scores: { virus: 5 },
    };
  } catch (err) {
    log.warn({ scanner: 'clamd', err: String(err) }, `clamd gave no verdict: ${config.default_action}`);
    return defaultResult('clamd', config.default_action, err);
  }
}
