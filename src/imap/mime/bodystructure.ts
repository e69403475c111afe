/**
 * BODY and BODYSTRUCTURE (RFC 3501 7.4.2) as Dovecot 2.3 writes them
 * (lib-imap/imap-bodystructure.c):
 *
 * - type and subtype as written in Content-Type (case kept); "text" "plain" without one; an
 *   unparsable Content-Type gives what could be read of it, possibly "" "";
 * - parameters as written, RFC 2231 continuations merged; text parts always get a charset
 *   ("us-ascii" when none is given); other parts without parameters have NIL;
 * - Content-ID, Content-Description, Content-MD5, Content-Location: the raw header value;
 * - encoding: the token as written, "7bit" when absent or unparsable;
 * - sizes and line counts of the CRLF form; text parts have a line count, message/rfc822
 *   parts the envelope, structure and line count of the message inside;
 * - a multipart with no parts is written with one empty text/plain part;
 * - a multipart or message/rfc822 left unparsed because of the limits on nesting and part
 *   count is written as application/octet-stream (keeping its parameters).
 */
import { envelopeData, envelopeValue } from './envelope.js';
import type { MimePart } from './parser.js';
import { asciiLower } from './rfc822.js';
import { UnspacedList, astring, nstringNoLf } from './strings.js';
import type { ImapValue } from '../values.js';

const DEFAULT_CHARSET = 'us-ascii';

function params(list: Array<[string, string]>, defaultCharset: boolean): ImapValue {
  if (!defaultCharset && list.length === 0) return null;
  const out: ImapValue[] = [];
  let seenCharset = false;
  for (const [name, value] of list) {
    if (defaultCharset && asciiLower(name) === 'charset') seenCharset = true;
    out.push(astring(name), astring(value));
  }
  if (defaultCharset && !seenCharset) out.push('charset', DEFAULT_CHARSET);
  return out;
}

/** Disposition, language and location: the extension data every part type ends with. */
function commonExtension(part: MimePart): ImapValue[] {
  return [
    part.disposition === null ? null : [astring(part.disposition), params(part.dispositionParams, false)],
    part.language === null ? null : part.language.map(astring),
    nstringNoLf(part.location),
  ];
}

function emptyBody(extended: boolean): ImapValue {
  const body: ImapValue[] = ['text', 'plain', ['charset', DEFAULT_CHARSET], null, null, '7bit', 0, 0];
  if (extended) body.push(null, null, null, null);
  return body;
}

/**
 * The body structure of one part. Written without recursion on the JS stack for the parts of
 * multiparts and messages (a hostile message can nest 100 levels deep; that is fine, but the
 * explicit stack keeps it independent of the engine's stack size).
 */
export function partStructure(message: Buffer, part: MimePart, extended: boolean): ImapValue {
  // Post-order over the tree: children first, then the part that contains them.
  const done = new Map<MimePart, ImapValue>();
  const stack: Array<{ part: MimePart; expanded: boolean }> = [{ part, expanded: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const p = top.part;
    const kids = p.multipart || p.rfc822 ? p.children : [];
    if (!top.expanded && kids.length > 0) {
      top.expanded = true;
      for (let i = kids.length - 1; i >= 0; i--) stack.push({ part: kids[i]!, expanded: false });
      continue;
    }
    stack.pop();
    done.set(p, writePart(message, p, extended, done));
  }
  return done.get(part)!;
}

function writePart(m: Buffer, part: MimePart, extended: boolean, done: Map<MimePart, ImapValue>): ImapValue {
  if (part.multipart) {
    const children = part.children.length > 0 ? part.children.map((c) => done.get(c)!) : [emptyBody(extended)];
    const rest: ImapValue[] = [astring(part.contentSubtype ?? '')];
    if (extended) rest.push(params(part.params, false), ...commonExtension(part));
    return UnspacedList.of2(children, rest);
  }
  const out: ImapValue[] = [];
  let text = false;
  if (part.rfc822) {
    out.push('message', 'rfc822');
  } else if (part.truncated) {
    out.push('application', 'octet-stream');
  } else if (part.contentType === null) {
    text = true;
    out.push('text', 'plain');
  } else {
    text = asciiLower(part.contentType) === 'text';
    out.push(astring(part.contentType), astring(part.contentSubtype ?? ''));
  }
  out.push(
    params(part.params, text),
    nstringNoLf(part.id),
    nstringNoLf(part.description),
    part.encoding === null ? '7bit' : astring(part.encoding),
    part.bodyEnd - part.bodyStart,
  );
  if (text) {
    out.push(part.lines);
  } else if (part.rfc822) {
    const inner = part.children[0];
    if (inner !== undefined) {
      out.push(envelopeValue(envelopeData(m, inner.headerStart, inner.headerEnd)), done.get(inner)!, part.lines);
    } else {
      out.push(envelopeValue(envelopeData(m, 0, 0)), emptyBody(extended), part.lines);
    }
  }
  if (extended) out.push(nstringNoLf(part.md5), ...commonExtension(part));
  return out;
}
