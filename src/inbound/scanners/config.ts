/**
 * Configuration and results shared by the content scanners that are not milters: rspamd over its
 * HTTP protocol, SpamAssassin's spamd over SPAMC/1.5 and ClamAV's clamd over INSTREAM. Each one
 * is optional; a configured scanner that is down, slow or answers garbage yields its
 * `default_action` (tempfail by default), never an exception.
 */
import { z } from 'zod';
import { parseDuration, size } from '../../config/units.js';
import type { Status } from '../../status.js';
import type { CheckResult } from '../types.js';

/** A duration, in milliseconds once parsed (the same forms as src/config/schema.ts accepts). */
const duration = () =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined || ms === 0) {
      ctx.addIssue({ code: 'custom', message: `expected a duration such as 30, "30s" or "500ms", got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });

/** What to do with a message when the scanner cannot give a verdict. */
const defaultAction = () => z.enum(['tempfail', 'accept']).default('tempfail');

/** "host:port", "[v6]:port", or an absolute path to a unix socket ("unix:" prefix optional). */
const address = () =>
  z.string().refine((v) => parseAddress(v) !== undefined, {
    message: 'expected "host:port", "[ipv6]:port" or the path of a unix socket such as /run/clamav/clamd.ctl',
  });

export const rspamdConfigSchema = z.strictObject({
  /** The normal worker (or the proxy's self-scan): Debian's bind_socket is localhost:11333. */
  url: z
    .string()
    .url()
    .refine((v) => new URL(v).protocol === 'http:', { message: 'expected an http:// URL such as http://127.0.0.1:11333' })
    .default('http://127.0.0.1:11333'),
  /** The whole exchange: connect, send the message, read the verdict. */
  timeout: duration().default(30_000),
  default_action: defaultAction(),
  /**
   * Larger messages are passed unscanned (and logged): the normal worker refuses a message over
   * its max_message (50M by default), which would tempfail the message for ever.
   */
  max_size: size().default(50 * 1024 * 1024),
  /** Add rspamd's milter headers and X-Spam / X-Spamd-Result / X-Rspamd-Score, as rspamd's milter would. */
  add_headers: z.boolean().default(true),
  /** rspamd's `greylist` action: tempfail (as its milter does) or accept. */
  greylist: z.enum(['tempfail', 'accept']).default('tempfail'),
  /** Sent as the Password header (a controller or proxy that asks for one). */
  password: z.string().optional(),
});

export const spamdConfigSchema = z.strictObject({
  /** Debian's spamd listens on 127.0.0.1:783. */
  address: address().default('127.0.0.1:783'),
  timeout: duration().default(30_000),
  /** Larger messages are passed unscanned, as spamc does (its -s default is 500 KiB). */
  max_size: size().default(512_000),
  /** What a message spamd calls spam gets: the Junk folder or a 550 refusal. */
  spam_action: z.enum(['junk', 'reject']).default('junk'),
  default_action: defaultAction(),
  /** The User header: whose preferences spamd applies (omitted when unset). */
  user: z.string().min(1).optional(),
  /** Add X-Spam-Flag / X-Spam-Score / X-Spam-Status. */
  add_headers: z.boolean().default(true),
});

export const clamdConfigSchema = z.strictObject({
  /** Debian's clamd listens on the unix socket /run/clamav/clamd.ctl. */
  address: address().default('/run/clamav/clamd.ctl'),
  timeout: duration().default(60_000),
  /**
   * Larger messages are passed unscanned (and logged): clamd's own StreamMaxLength is 25M by
   * default, and a stream over it is an error, which would tempfail the message for ever.
   */
  max_size: size().default(25 * 1024 * 1024),
  default_action: defaultAction(),
});

/** Mounted by the lead under `inbound:` as `scanners:`. */
export const scannersConfigSchema = z
  .strictObject({
    rspamd: rspamdConfigSchema.optional(),
    spamd: spamdConfigSchema.optional(),
    clamd: clamdConfigSchema.optional(),
  })
  .default({});

export type RspamdConfig = z.output<typeof rspamdConfigSchema>;
export type SpamdConfig = z.output<typeof spamdConfigSchema>;
export type ClamdConfig = z.output<typeof clamdConfigSchema>;
export type ScannersConfig = z.output<typeof scannersConfigSchema>;
export type DefaultAction = z.output<ReturnType<typeof defaultAction>>;

export type ScannerName = 'rspamd' | 'spamd' | 'clamd';

/** A scanner's verdict: a CheckResult that says which scanner gave it. */
export interface ScannerResult extends CheckResult {
  scanner: ScannerName;
  /**
   * Fields rspamd asks to remove (its milter.remove_headers: name and 1-based index, 0 for
   * every occurrence), e.g. an X-Spam the sender put in. CheckResult cannot express it yet.
   */
  removeHeaders?: [name: string, index: number][];
}

export type ScannerErrorCode = 'CONNECT' | 'TIMEOUT' | 'IO' | 'PROTOCOL' | 'REFUSED';

/** Why a scanner gave no verdict; it becomes the scanner's default action and a log line. */
export class ScannerError extends Error {
  constructor(
    readonly code: ScannerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ScannerError';
  }
}

export const SCANNER_UNAVAILABLE: Status = {
  code: 451,
  enhanced: '4.7.1',
  text: 'Content scanner unavailable, try again later',
};

/** The result when a scanner gave no verdict: its default action, and the reason in the log. */
export function defaultResult(scanner: ScannerName, action: DefaultAction, err: unknown): ScannerResult {
  const reason = err instanceof ScannerError ? `${err.code}: ${err.message}` : String(err);
  const log = { [scanner]: 'unavailable', [`${scanner}_error`]: reason };
  return action === 'accept' ? { scanner, action: 'accept', log } : { scanner, action: 'tempfail', status: SCANNER_UNAVAILABLE, log };
}

/** A text from a scanner made safe for a reply line or a header value: printable ASCII, bounded. */
export function safeText(text: string, max = 200): string {
  return text
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim()
    .slice(0, max);
}

export type ScannerAddress = { path: string } | { host: string; port: number };

/** Parses a scanner address: an absolute path (or "unix:/path") is a unix socket, else host:port. */
export function parseAddress(value: string): ScannerAddress | undefined {
  const path = value.startsWith('unix:') ? value.slice(5) : value;
  if (path.startsWith('/')) return { path };
  const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/i.exec(value);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}
