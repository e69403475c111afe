/**
 * Delivery status notifications: the bounce and the delay warning sent to the envelope sender,
 * as a multipart/report (RFC 6522) with a human readable part, a message/delivery-status part
 * (RFC 3464) and the headers of the original message (text/rfc822-headers, as Postfix sends by
 * default). A pure function: the queue decides when, and enqueues the result with sender <>.
 */
import { randomBytes } from 'node:crypto';

export interface DsnRecipient {
  address: string;
  /** The address the client gave, when it differs (RFC 3464 Original-Recipient). */
  original?: string;
  /** RFC 3461 ORCPT as the client gave it ("rfc822;bob@example.com"); preferred over `original`. */
  orcpt?: string;
  /** RFC 3464 section 2.3.3: failed, delayed, delivered (to a mailbox here), relayed (to a server that sends no report). */
  action: 'failed' | 'delayed' | 'delivered' | 'relayed';
  /** RFC 3463 enhanced status code, e.g. "5.1.1". */
  status: string;
  /** "smtp; 550 5.1.1 user unknown"; a value without a type gets "X-Maild; ". */
  diagnostic?: string;
  /** The host that answered, e.g. "mx1.example.com" or "mx1.example.com[192.0.2.1]:25". */
  remoteMta?: string;
  lastAttempt?: Date;
  willRetryUntil?: Date;
}

export interface DsnInput {
  /** Our host name. */
  reportingMta: string;
  queueId: string;
  /** Envelope sender of the original message: where the report goes (never ''). */
  originalSender: string;
  arrivalDate: Date;
  recipients: DsnRecipient[];
  /** Header block of the original message, as stored. */
  originalHeaders: Buffer;
  /**
   * The whole original message (RFC 3461 RET=FULL), returned as message/rfc822 instead of the
   * headers alone; ignored above 1 MiB, where the headers are returned.
   */
  originalMessage?: Buffer;
  /** RFC 3461 ENVID of the original message (Original-Envelope-Id). */
  envid?: string;
  kind: 'failure' | 'delay' | 'success';
  now?: Date;
  /** Where senders can ask for help, named in the text; default "postmaster". */
  postmaster?: string;
}

/** RFC 5322 section 2.1.1: at most 998 octets per line; values are kept well below. */
const MAX_VALUE_BYTES = 900;
/** Larger original header blocks are cut at a line boundary. */
const MAX_ORIGINAL_HEADERS = 64 * 1024;
const MAX_LINE = 998;
/** A RET=FULL message larger than this is returned as its headers only. */
const MAX_RETURNED_MESSAGE = 1024 * 1024;

/**
 * The header block of a message: everything up to and including the line end before the first
 * empty line (CRLF CRLF or LF LF). The whole message when it has no empty line.
 */
export function headerBlock(message: Buffer): Buffer {
  if (message[0] === 0x0a) return message.subarray(0, 0);
  if (message[0] === 0x0d && message[1] === 0x0a) return message.subarray(0, 0);
  for (let i = message.indexOf(0x0a); i !== -1; i = message.indexOf(0x0a, i + 1)) {
    if (message[i + 1] === 0x0a || (message[i + 1] === 0x0d && message[i + 2] === 0x0a)) return message.subarray(0, i + 1);
  }
  return message;
}

/**
 * A value from outside on one line: control characters (CR and LF included) become spaces, runs
 * of spaces one, and it is cut to `maxBytes` of UTF-8 ("..." marks a cut). Safe for header
 * fields, log lines and reports; the queue and the SMTP client use it too.
 */
export function oneLine(value: string, maxBytes = MAX_VALUE_BYTES): string {
  return truncate(
    value
      .replace(/[\x00-\x1f\x7f]+/g, ' ')
      .replace(/ {2,}/g, ' ')
      .trim(),
    maxBytes,
  );
}

/** Cuts a string to at most maxBytes of UTF-8, never inside a character. */
function truncate(value: string, maxBytes: number): string {
  if (Buffer.byteLength(value) <= maxBytes) return value;
  let bytes = 0;
  let out = '';
  for (const ch of value) {
    bytes += Buffer.byteLength(ch);
    if (bytes > maxBytes - 3) break;
    out += ch;
  }
  return `${out}...`;
}

/** An address for a field value: one line, no angle brackets. */
const address = (value: string) => oneLine(value).replace(/[<>]/g, '');
/** A host name: the first word, of the characters host names and address literals use. */
const host = (value: string) => (oneLine(value, 255).split(' ')[0] ?? '').replace(/[^\p{L}\p{N}.\-_:[\]]/gu, '');

/** RFC 5322 section 3.3 date-time, in UTC. */
function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

/**
 * Folds a field or text line at spaces so lines stay near `width` characters, continuation
 * lines starting with `indent`. Words are never split; values are cut to MAX_VALUE_BYTES
 * beforehand, so no line can exceed 998 octets.
 */
function fold(line: string, width = 78, indent = ' '): string {
  if (line.length <= width) return line;
  const words = line.split(' ');
  const lines: string[] = [];
  let current = words.shift()!;
  for (const word of words) {
    if (current.length + 1 + word.length > width && current.trim()) {
      lines.push(current);
      current = `${indent}${word}`;
    } else current += ` ${word}`;
  }
  lines.push(current);
  return lines.join('\r\n');
}

/** "smtp; 550 ..." stays; a diagnostic without a type gets one (RFC 3464 section 2.3.6). */
function diagnosticCode(diagnostic: string): string {
  const d = oneLine(diagnostic);
  return /^[A-Za-z][A-Za-z0-9-]*;/.test(d) ? d : `X-Maild; ${d}`;
}

function statusCode(status: string, action: DsnRecipient['action']): string {
  const s = oneLine(status, 32);
  // RFC 3463 section 2: class.subject.detail; a failure is 5.x.x (or 4.x.x given up), a delay
  // 4.x.x, a delivery 2.x.x.
  if (action === 'delivered' || action === 'relayed') return /^2\.\d{1,3}\.\d{1,3}$/.test(s) ? s : '2.0.0';
  if (/^[45]\.\d{1,3}\.\d{1,3}$/.test(s)) return s;
  return action === 'failed' ? '5.0.0' : '4.0.0';
}

/** The original header block with CRLF line ends, lines cut to 998 octets, at most ~64 KiB. */
function originalHeaderPart(headers: Buffer): Buffer {
  let block = headers;
  if (block.length > MAX_ORIGINAL_HEADERS) {
    const cut = block.lastIndexOf(0x0a, MAX_ORIGINAL_HEADERS - 1);
    block = block.subarray(0, cut > 0 ? cut + 1 : MAX_ORIGINAL_HEADERS);
  }
  const text = block.toString('latin1').replace(/\x00/g, '');
  const lines = text.split(/\r\n|\n|\r/);
  if (lines[lines.length - 1] === '') lines.pop();
  // latin1 keeps every byte as one character, so length is the octet count.
  return Buffer.from(lines.map((l) => `${l.slice(0, MAX_LINE)}\r\n`).join(''), 'latin1');
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

function humanText(input: DsnInput, mta: string, now: Date): string {
  const postmaster = input.postmaster ? address(input.postmaster) : 'postmaster';
  const lines: string[] = [`This is the mail system at host ${mta}.`, ''];
  if (input.kind === 'success') {
    lines.push(
      'Your message was successfully delivered to the destination(s)',
      'listed below. If the message was delivered to a mailbox you will',
      'receive no further notifications. Otherwise you may still receive',
      'notifications of mail delivery errors from other systems.',
      '',
      '                   The mail system',
      '',
    );
    for (const r of input.recipients) {
      const how = r.action === 'delivered' ? 'delivery via local mailbox' : `relayed${r.remoteMta ? ` to ${host(r.remoteMta)}` : ''}`;
      lines.push(fold(`<${address(r.address)}>: ${how}`, 76, '    '), '');
    }
    return lines.join('\r\n');
  }
  if (input.kind === 'delay') {
    const hours = Math.max(1, Math.floor((now.getTime() - input.arrivalDate.getTime()) / 3_600_000));
    const until = input.recipients.map((r) => r.willRetryUntil).find((d) => d !== undefined);
    lines.push(
      '####################################################################',
      '# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #',
      '####################################################################',
      '',
      `Your message could not be delivered for more than ${plural(hours, 'hour')}.`,
    );
    if (until) {
      const days = Math.max(1, Math.round((until.getTime() - input.arrivalDate.getTime()) / 86_400_000));
      lines.push(`It will be retried until it is ${plural(days, 'day')} old.`);
    }
  } else {
    lines.push(
      "I'm sorry to have to inform you that your message could not",
      "be delivered to one or more recipients. It's attached below.",
    );
  }
  lines.push(
    '',
    `For further assistance, please send mail to ${postmaster}.`,
    '',
    'If you do so, please include this problem report. You can',
    'delete your own text from the attached returned message.',
    '',
    '                   The mail system',
    '',
  );
  for (const r of input.recipients) {
    const what = r.diagnostic
      ? oneLine(r.diagnostic).replace(/^[A-Za-z][A-Za-z0-9-]*; */, '')
      : `delivery status ${statusCode(r.status, r.action)}`;
    const said = r.remoteMta ? `host ${host(r.remoteMta)} said: ${what}` : what;
    const orig = r.original && r.original !== r.address ? ` (expanded from <${address(r.original)}>)` : '';
    lines.push(fold(`<${address(r.address)}>${orig}: ${said}`, 76, '    '), '');
  }
  return lines.join('\r\n');
}

function deliveryStatus(input: DsnInput, mta: string): string {
  // RFC 3464 section 2.2: per-message fields, then one block per recipient (section 2.3).
  const blocks: string[][] = [
    [
      `Reporting-MTA: dns; ${mta}`,
      `X-Maild-Queue-ID: ${oneLine(input.queueId, 64)}`,
      `X-Maild-Sender: rfc822; ${address(input.originalSender)}`,
      `Arrival-Date: ${rfc5322Date(input.arrivalDate)}`,
    ],
  ];
  // RFC 3464 section 2.2.1: the envelope id the sender gave, first of the per-message fields.
  if (input.envid && oneLine(input.envid)) blocks[0]!.unshift(`Original-Envelope-Id: ${oneLine(input.envid)}`);
  for (const r of input.recipients) {
    const fields = [`Final-Recipient: rfc822; ${address(r.address)}`];
    const orcpt = r.orcpt && /^([A-Za-z0-9-]+);\s*(.+)$/.exec(oneLine(r.orcpt));
    if (orcpt) fields.push(`Original-Recipient: ${orcpt[1]}; ${address(orcpt[2]!)}`);
    else if (r.original) fields.push(`Original-Recipient: rfc822; ${address(r.original)}`);
    fields.push(`Action: ${r.action}`, `Status: ${statusCode(r.status, r.action)}`);
    // Remote-MTA names a host: the "[address]:port" decoration of a RecipientResult is dropped.
    const remote = r.remoteMta && host(r.remoteMta.replace(/\[.*$/, ''));
    if (remote) fields.push(`Remote-MTA: dns; ${remote}`);
    if (r.diagnostic && oneLine(r.diagnostic)) fields.push(fold(`Diagnostic-Code: ${diagnosticCode(r.diagnostic)}`));
    if (r.lastAttempt) fields.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`);
    if (r.action === 'delayed' && r.willRetryUntil) fields.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    blocks.push(fields);
  }
  return blocks.map((b) => `${b.join('\r\n')}\r\n`).join('\r\n');
}

const has8bit = (b: Buffer) => b.some((byte) => byte > 0x7f);

const SUBJECTS: Record<DsnInput['kind'], string> = {
  failure: 'Undelivered Mail Returned to Sender',
  delay: 'Delayed Mail (still being retried)',
  success: 'Successful Mail Delivery Report',
};

/** The whole original message for RET=FULL (RFC 3461 section 4.3): CRLF line ends, lines cut to 998 octets. */
function returnedMessagePart(message: Buffer): Buffer {
  const text = message.toString('latin1').replace(/\x00/g, '');
  const lines = text.split(/\r\n|\n|\r/);
  if (lines[lines.length - 1] === '') lines.pop();
  return Buffer.from(lines.map((l) => `${l.slice(0, MAX_LINE)}\r\n`).join(''), 'latin1');
}

/** Builds the bounce (kind 'failure'), delay warning or success report for the original sender, CRLF line ends. */
export function buildDsn(input: DsnInput): Buffer {
  const sender = address(input.originalSender);
  // RFC 5321 section 4.5.5: nothing is ever sent back to the null sender.
  if (!sender) throw new Error('no delivery status notification to the null sender');
  if (!input.recipients.length) throw new Error('a delivery status notification needs at least one recipient');
  const now = input.now ?? new Date();
  const mta = host(input.reportingMta) || 'localhost';

  const text = Buffer.from(humanText(input, mta, now), 'utf8');
  const status = Buffer.from(deliveryStatus(input, mta), 'utf8');
  const full = input.kind === 'failure' && input.originalMessage && input.originalMessage.length <= MAX_RETURNED_MESSAGE;
  const headers = full ? returnedMessagePart(input.originalMessage!) : originalHeaderPart(input.originalHeaders);

  // RFC 2046 section 5.1.1: the boundary must not occur in any part.
  let boundary: string;
  do boundary = `${randomBytes(12).toString('hex')}.${Math.floor(now.getTime() / 1000)}/${mta}`;
  while ([text, status, headers].some((part) => part.includes(boundary)));

  const cte = (b: Buffer) => (has8bit(b) ? '8bit' : '7bit');
  const stamp = now
    .toISOString()
    .replace(/[-:TZ]/g, '')
    .replace(/\..*$/, '');
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${mta}>`,
    `To: <${sender}>`,
    `Subject: ${SUBJECTS[input.kind]}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${stamp}.${oneLine(input.queueId, 64).replace(/[^A-Za-z0-9._-]/g, '')}.${randomBytes(4).toString('hex')}@${mta}>`,
    // RFC 3834 section 5: an automatic response; RFC 3464 section 6.2 asks for no replies to it.
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    ` boundary="${boundary}"`,
    ...([text, status, headers].some(has8bit) ? ['Content-Transfer-Encoding: 8bit'] : []),
    '',
    'This is a MIME-encapsulated message.',
    '',
  ].join('\r\n');

  const part = (fields: string[], body: Buffer) => [Buffer.from(`\r\n--${boundary}\r\n${fields.join('\r\n')}\r\n\r\n`), body];
  return Buffer.concat([
    Buffer.from(head),
    ...part(
      ['Content-Description: Notification', 'Content-Type: text/plain; charset=utf-8', `Content-Transfer-Encoding: ${cte(text)}`],
      text,
    ),
    ...part(
      ['Content-Description: Delivery report', 'Content-Type: message/delivery-status', `Content-Transfer-Encoding: ${cte(status)}`],
      status,
    ),
    ...part(
      full
        ? ['Content-Description: Undelivered Message', 'Content-Type: message/rfc822', `Content-Transfer-Encoding: ${cte(headers)}`]
        : [
            `Content-Description: ${input.kind === 'success' ? 'Message Headers' : 'Undelivered Message Headers'}`,
            'Content-Type: text/rfc822-headers',
            `Content-Transfer-Encoding: ${cte(headers)}`,
          ],
      headers,
    ),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}
