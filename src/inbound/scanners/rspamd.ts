/**
 * rspamd's HTTP protocol (rspamd.com/doc/developers/protocol.html): POST /checkv2 to the normal
 * worker with the message as the body and the envelope in request headers (IP, Helo, From, one
 * Rcpt per recipient, Queue-Id, Hostname, MTA-Name, TLS-*; no User, the MX is unauthenticated).
 * The JSON reply names an action; it is mapped as rspamd's own milter (rspamd_proxy) maps it:
 * reject -> 550 5.7.1, soft reject -> 451 4.7.1, add header / rewrite subject -> Junk,
 * greylist -> 451 4.7.1 (or accept), no action -> accept.
 */
import { createReadStream } from 'node:fs';
import http from 'node:http';
import type { Logger } from '../../log.js';
import { spamtestValue, type HeaderField, type InboundMessage } from '../types.js';
import { ScannerError, defaultResult, safeText, type RspamdConfig, type ScannerResult } from './config.js';

const MAX_REPLY = 4 * 1024 * 1024;

const ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'] as const;
type RspamdAction = (typeof ACTIONS)[number];

interface RspamdSymbol {
  score: number;
  options?: string[];
}

/** The parts of the /checkv2 reply used here. */
export interface RspamdReply {
  action: RspamdAction;
  score: number;
  requiredScore: number;
  symbols: Map<string, RspamdSymbol>;
  smtpMessage?: string;
  /** milter.add_headers in order; milter.remove_headers as [name, index]. */
  addHeaders: HeaderField[];
  removeHeaders: [string, number][];
}

function requestHeaders(message: InboundMessage, config: RspamdConfig): http.OutgoingHttpHeaders {
  const env = message.envelope;
  const headers: http.OutgoingHttpHeaders = {
    'Content-Length': message.size,
    'Queue-Id': env.queueId,
    Helo: env.helo,
    From: env.sender === '' ? '<>' : env.sender,
    Rcpt: env.recipients,
    'MTA-Name': env.hostname,
  };
  if (env.clientIp) headers.IP = env.clientIp;
  if (env.clientHostname) headers.Hostname = env.clientHostname;
  if (env.tls) {
    headers['TLS-Version'] = env.tls.version;
    headers['TLS-Cipher'] = env.tls.cipher;
  }
  if (config.password !== undefined) headers.Password = config.password;
  // Header values must not carry CR, LF or other controls: node refuses them (ERR_INVALID_CHAR).
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === 'string') headers[name] = safeText(value, 1000);
    else if (Array.isArray(value)) headers[name] = value.map((v) => safeText(v, 1000));
  }
  return headers;
}

/** POSTs the message and resolves with the reply body; any failure is a ScannerError. */
function post(config: RspamdConfig, message: InboundMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const url = new URL('checkv2', config.url.endsWith('/') ? config.url : `${config.url}/`);
    const req = http.request(url, { method: 'POST', headers: requestHeaders(message, config), agent: false });
    const body = createReadStream(message.file, { highWaterMark: 64 * 1024 });
    const timer = setTimeout(() => finish(new ScannerError('TIMEOUT', `no complete reply within ${config.timeout} ms`)), config.timeout);

    function finish(err: Error | undefined, data?: Buffer): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      body.destroy();
      req.destroy();
      if (err) reject(err);
      else resolve(data!);
    }

    body.on('error', (err) => finish(new ScannerError('IO', `reading the message: ${err.message}`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const connect = err.code === 'ECONNREFUSED' || err.code === 'ENOENT' || err.code === 'EHOSTUNREACH';
      // HPE_*: node's HTTP parser did not understand the reply.
      finish(new ScannerError(connect ? 'CONNECT' : err.code?.startsWith('HPE_') ? 'PROTOCOL' : 'IO', err.message));
    });
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > MAX_REPLY) return finish(new ScannerError('PROTOCOL', `reply longer than ${MAX_REPLY} bytes`));
        chunks.push(chunk);
      });
      res.on('error', (err) => finish(new ScannerError('IO', err.message)));
      res.once('end', () => {
        if (res.statusCode !== 200)
          finish(new ScannerError('REFUSED', `HTTP ${res.statusCode}: ${safeText(Buffer.concat(chunks).toString('utf8'))}`));
        else finish(undefined, Buffer.concat(chunks));
      });
    });
    body.pipe(req);
  });
}

/** milter.add_headers values: a string, {value, order}, or a list of those (one field each). */
function milterAddHeaders(raw: unknown): HeaderField[] {
  if (typeof raw !== 'object' || raw === null) return [];
  const fields: { name: string; value: string; order: number }[] = [];
  for (const [name, spec] of Object.entries(raw)) {
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    for (const one of Array.isArray(spec) ? spec : [spec]) {
      const value = typeof one === 'string' ? one : typeof one?.value === 'string' ? one.value : undefined;
      const order = typeof one?.order === 'number' ? one.order : Number.MAX_SAFE_INTEGER;
      if (value !== undefined) fields.push({ name, value: value.replace(/\r?\n[ \t]*/g, ' ').replace(/[\x00-\x1f\x7f]/g, ' '), order });
    }
  }
  return fields.sort((a, b) => a.order - b.order).map((f) => [f.name, f.value]);
}

function milterRemoveHeaders(raw: unknown): [string, number][] {
  if (typeof raw !== 'object' || raw === null) return [];
  return Object.entries(raw)
    .filter(([name, index]) => /^[\x21-\x39\x3b-\x7e]+$/.test(name) && Number.isInteger(index))
    .map(([name, index]) => [name, index as number]);
}

/** Reads the /checkv2 JSON; garbage or an unknown action throws a ScannerError. */
export function parseRspamdReply(body: Buffer): RspamdReply {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ScannerError('PROTOCOL', 'reply is not JSON');
  }
  if (typeof json !== 'object' || json === null) throw new ScannerError('PROTOCOL', 'reply is not a JSON object');
  const action = json.action;
  if (!ACTIONS.includes(action as RspamdAction)) throw new ScannerError('PROTOCOL', `unknown action ${JSON.stringify(action)}`);
  const symbols = new Map<string, RspamdSymbol>();
  if (typeof json.symbols === 'object' && json.symbols !== null) {
    for (const [name, s] of Object.entries(json.symbols as Record<string, { score?: unknown; options?: unknown }>)) {
      const options = Array.isArray(s?.options) ? s.options.filter((o): o is string => typeof o === 'string') : undefined;
      symbols.set(name, { score: typeof s?.score === 'number' ? s.score : 0, ...(options ? { options } : {}) });
    }
  }
  const messages = json.messages as Record<string, unknown> | undefined;
  const milter = json.milter as Record<string, unknown> | undefined;
  const reply: RspamdReply = {
    action: action as RspamdAction,
    score: typeof json.score === 'number' ? json.score : 0,
    requiredScore: typeof json.required_score === 'number' ? json.required_score : 0,
    symbols,
    addHeaders: milterAddHeaders(milter?.add_headers),
    removeHeaders: milterRemoveHeaders(milter?.remove_headers),
  };
  if (typeof messages?.smtp_message === 'string' && safeText(messages.smtp_message)) reply.smtpMessage = safeText(messages.smtp_message);
  return reply;
}

const SPAM_ACTIONS: ReadonlySet<RspamdAction> = new Set(['add header', 'rewrite subject', 'soft reject', 'reject']);

/**
 * The fields rspamd's milter_headers module would add (rspamd 3.4, plugins/milter_headers.lua):
 * X-Spam: Yes for any action but `no action` and `greylist`; X-Spamd-Result with "True" only for
 * `reject` and the symbols by decreasing absolute score; and X-Rspamd-Score. Fields the reply
 * itself asks for (milter.add_headers) come first and take precedence over these.
 */
export function rspamdHeaders(reply: RspamdReply): HeaderField[] {
  const symbols = [...reply.symbols]
    .sort(([, a], [, b]) => Math.abs(b.score) - Math.abs(a.score))
    .map(([name, s]) => `${name}(${s.score.toFixed(2)})[${(s.options ?? []).map((o) => safeText(o, 100)).join(',')}]`);
  const verdict = `default: ${reply.action === 'reject' ? 'True' : 'False'} [${reply.score.toFixed(2)} / ${reply.requiredScore.toFixed(2)}]`;
  const own: HeaderField[] = [
    ['X-Spamd-Result', [verdict, ...symbols].join('; ')],
    ['X-Rspamd-Score', reply.score.toFixed(2)],
  ];
  if (SPAM_ACTIONS.has(reply.action)) own.unshift(['X-Spam', 'Yes']);
  const given = new Set(reply.addHeaders.map(([name]) => name.toLowerCase()));
  return [...reply.addHeaders, ...own.filter(([name]) => !given.has(name.toLowerCase()))];
}

function verdict(reply: RspamdReply, config: RspamdConfig): Pick<ScannerResult, 'action' | 'status'> {
  switch (reply.action) {
    case 'reject':
      return { action: 'reject', status: { code: 550, enhanced: '5.7.1', text: reply.smtpMessage ?? 'Spam message rejected' } };
    case 'soft reject':
      return { action: 'tempfail', status: { code: 451, enhanced: '4.7.1', text: reply.smtpMessage ?? 'Try again later' } };
    case 'greylist':
      if (config.greylist === 'accept') return { action: 'accept' };
      return { action: 'tempfail', status: { code: 451, enhanced: '4.7.1', text: reply.smtpMessage ?? 'Greylisted, try again later' } };
    case 'add header':
    case 'rewrite subject':
      return { action: 'junk' };
    case 'no action':
      return { action: 'accept' };
  }
}

export async function scanWithRspamd(config: RspamdConfig, message: InboundMessage, log: Logger): Promise<ScannerResult> {
  if (message.size > config.max_size) {
    log.info({ scanner: 'rspamd', size: message.size, max_size: config.max_size }, 'message larger than rspamd max_size: not scanned');
    return { scanner: 'rspamd', action: 'accept', log: { rspamd: 'skipped (size)' } };
  }
  try {
    const reply = parseRspamdReply(await post(config, message));
    const result: ScannerResult = {
      scanner: 'rspamd',
      ...verdict(reply, config),
      log: { rspamd: reply.action, rspamd_score: reply.score },
      scores: { spam: spamtestValue(reply.score, reply.requiredScore) },
    };
    if (config.add_headers) {
      result.addHeaders = rspamdHeaders(reply);
      if (reply.removeHeaders.length > 0) result.removeHeaders = reply.removeHeaders;
    }
    return result;
  } catch (err) {
    log.warn({ scanner: 'rspamd', err: String(err) }, `rspamd gave no verdict: ${config.default_action}`);
    return defaultResult('rspamd', config.default_action, err);
  }
}
