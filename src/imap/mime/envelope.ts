/**
 * ENVELOPE (RFC 3501 7.4.2) as Dovecot 2.3 builds it (lib-mail/message-part-data.c,
 * lib-imap/imap-envelope.c): header text is sent raw, without RFC 2047 decoding.
 *
 * - Date, Subject, In-Reply-To, Message-ID: the last such header wins; From, Sender, Reply-To,
 *   To, Cc, Bcc: every such header adds its addresses (as if comma-separated).
 * - Sender and Reply-To default to From.
 * - Subject and display names are cleaned for humans (see strings.ts forHumans); the other
 *   strings lose their CR/LF.
 */
import { parseAddresses, type Address } from './address.js';
import { cName, eohSize, fieldValue, readHeaderField } from './header.js';
import { headerStrdup } from './parser.js';
import { asciiLower } from './rfc822.js';
import { UnspacedList, forHumans, nstring, nstringNoLf } from './strings.js';
import type { ImapValue } from '../values.js';

export interface EnvelopeData {
  date: string | null;
  subject: string | null;
  from: Address[];
  sender: Address[];
  replyTo: Address[];
  to: Address[];
  cc: Address[];
  bcc: Address[];
  inReplyTo: string | null;
  messageId: string | null;
}

/** The envelope fields of the header in m[start, end). */
export function envelopeData(m: Buffer, start: number, end: number): EnvelopeData {
  const env: EnvelopeData = {
    date: null,
    subject: null,
    from: [],
    sender: [],
    replyTo: [],
    to: [],
    cc: [],
    bcc: [],
    inReplyTo: null,
    messageId: null,
  };
  let pos = start;
  while (pos < end && eohSize(m, pos, end) === 0) {
    const f = readHeaderField(m, pos, end)!;
    pos = f.next;
    const name = asciiLower(cName(f.name));
    switch (name) {
      case 'date':
        env.date = headerStrdup(fieldValue(m, f));
        break;
      case 'subject':
        env.subject = headerStrdup(fieldValue(m, f));
        break;
      case 'in-reply-to':
        env.inReplyTo = headerStrdup(fieldValue(m, f));
        break;
      case 'message-id':
        env.messageId = headerStrdup(fieldValue(m, f));
        break;
      case 'from':
      case 'sender':
      case 'reply-to':
      case 'to':
      case 'cc':
      case 'bcc': {
        const list = env[name === 'reply-to' ? 'replyTo' : (name as 'from')];
        for (const a of parseAddresses(fieldValue(m, f))) list.push(a);
        break;
      }
    }
  }
  return env;
}

function addressList(list: Address[]): ImapValue {
  if (list.length === 0) return null;
  return UnspacedList.of2(
    list.map((a) => [a.name === null ? null : forHumans(a.name), nstring(a.route), nstring(a.mailbox), nstring(a.domain)]),
  );
}

/** The ENVELOPE value of a header's envelope data. */
export function envelopeValue(env: EnvelopeData): ImapValue {
  return [
    nstringNoLf(env.date),
    env.subject === null ? null : forHumans(env.subject),
    addressList(env.from),
    addressList(env.sender.length > 0 ? env.sender : env.from),
    addressList(env.replyTo.length > 0 ? env.replyTo : env.from),
    addressList(env.to),
    addressList(env.cc),
    addressList(env.bcc),
    nstringNoLf(env.inReplyTo),
    nstringNoLf(env.messageId),
  ];
}
