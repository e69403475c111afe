/**
 * The vacation action's reply (RFC 5230): when not to answer (section 4.5: bounces, lists, robots,
 * mail not addressed to the user) and the reply itself (section 5: From, To, Subject "Auto:",
 * In-Reply-To/References, Auto-Submitted: auto-replied).
 */
import { randomBytes } from 'node:crypto';

/** The header block of a message (up to the first empty line). */
export function headerBlock(raw: Buffer): string {
  const text = raw.subarray(0, 256 * 1024).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  return end < 0 ? text : text.slice(0, end);
}

/** Local parts that are robots, never answered (RFC 5230 section 4.6; Pigeonhole's list). */
const ROBOT_LOCALPART = /^(mailer-daemon|listserv|majordomo|owner-.*|.*-request|.*-owner|postmaster|noreply|no-reply)$/i;

/** Header fields of a list message (RFC 2369, RFC 2919). */
const LIST_FIELDS = /^(list-id|list-help|list-subscribe|list-unsubscribe|list-post|list-owner|list-archive)$/i;

/** The unfolded header fields of the message: [lower-case name, value]. */
function fields(raw: Buffer): Array<[string, string]> {
  return headerBlock(raw)
    .split(/\r?\n(?![ \t])/)
    .map((f) => {
      const colon = f.indexOf(':');
      return colon > 0
        ? ([
            f.slice(0, colon).trim().toLowerCase(),
            f
              .slice(colon + 1)
              .replace(/\r?\n[ \t]+/g, ' ')
              .trim(),
          ] as [string, string])
        : undefined;
    })
    .filter((f): f is [string, string] => f !== undefined);
}

/** Addresses in address-list header values (the angle-bracket or bare addr-spec forms). */
function addressesIn(values: string[]): string[] {
  const out: string[] = [];
  for (const v of values)
    for (const m of v.matchAll(/<([^<>\s]+@[^<>\s]+)>|([^\s<>,;:"()]+@[^\s<>,;:"()]+)/g)) out.push((m[1] ?? m[2]!).toLowerCase());
  return out;
}

/** Why no reply is sent, or undefined when one may be. */
export function vacationWanted(raw: Buffer, sender: string, recipient: string, addresses: string[]): string | undefined {
  if (sender === '') return 'null sender';
  const local = sender.split('@')[0] ?? '';
  if (ROBOT_LOCALPART.test(local)) return 'sender is a robot or a list';
  const mine = new Set([recipient.toLowerCase(), ...addresses.map((a) => a.toLowerCase())]);
  if (mine.has(sender.toLowerCase())) return 'sender is the recipient';
  const hdr = fields(raw);
  const get = (name: string) => hdr.filter(([n]) => n === name).map(([, v]) => v);
  const auto = get('auto-submitted')[0];
  if (auto && !/^no\b/i.test(auto)) return 'auto-submitted';
  if (get('precedence').some((p) => /^(bulk|list|junk)$/i.test(p))) return 'precedence bulk/list/junk';
  if (hdr.some(([n]) => LIST_FIELDS.test(n))) return 'list message';
  const to = addressesIn([...get('to'), ...get('cc'), ...get('bcc'), ...get('resent-to'), ...get('resent-cc')]);
  if (!to.some((a) => mine.has(a))) return 'not addressed to the recipient';
  return undefined;
}

/** RFC 2047 B encoding for a header value that is not ASCII. */
function encodeWord(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : `=?UTF-8?B?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

export function vacationReply(
  raw: Buffer,
  opts: { reason: string; mime: boolean; subject?: string; from?: string; to: string; recipient: string; hostname: string; now: Date },
): Buffer {
  const hdr = fields(raw);
  const get = (name: string) => hdr.find(([n]) => n === name)?.[1];
  const originalSubject = get('subject') ?? '';
  const subject = opts.subject !== undefined ? encodeWord(opts.subject) : `Auto: ${originalSubject}`.trim();
  const messageId = get('message-id');
  const references = [get('references'), messageId].filter(Boolean).join(' ');
  const lines = [
    `From: ${opts.from ?? `<${opts.recipient}>`}`,
    `To: <${opts.to}>`,
    `Subject: ${subject}`,
    `Date: ${opts.now.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${randomBytes(12).toString('hex')}.vacation@${opts.hostname}>`,
    ...(messageId ? [`In-Reply-To: ${messageId}`] : []),
    ...(references ? [`References: ${references}`] : []),
    // RFC 3834 section 5, RFC 5230 section 5.1.
    'Auto-Submitted: auto-replied (vacation)',
    'Precedence: bulk',
    'MIME-Version: 1.0',
  ];
  if (opts.mime) return Buffer.from(`${lines.join('\r\n')}\r\n${opts.reason.replace(/\r?\n/g, '\r\n')}`, 'utf8');
  const ascii = /^[\x00-\x7e]*$/.test(opts.reason);
  const body = ascii
    ? opts.reason.replace(/\r?\n/g, '\r\n')
    : (Buffer.from(opts.reason, 'utf8')
        .toString('base64')
        .match(/.{1,76}/g)
        ?.join('\r\n') ?? '');
  lines.push('Content-Type: text/plain; charset=utf-8', `Content-Transfer-Encoding: ${ascii ? '7bit' : 'base64'}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}\r\n`, 'utf8');
}
