/**
 * Message submission (RFC 6409) pieces that do not depend on smtp-server: the SASL login
 * (RFC 4954) on top of the shared password check, and what happens to a submitted message's
 * header before it is committed to the queue:
 *   - every From: address must belong to the login (RFC 6409 section 6.1; Postfix checks only
 *     the envelope, we check the header too so nobody signs mail in someone else's name);
 *   - missing Date and Message-ID are added (RFC 6409 sections 8.2 and 8.3, Postfix's
 *     always_add_missing_headers), a missing From: becomes the envelope sender (section 8.1);
 *   - the message is DKIM-signed for the From: domain when a key exists (RFC 6376).
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { logLoginRefused, passwordLogin } from '../auth/login.js';
import type { AuthLimiter } from '../auth/limiter.js';
import { headerSafe, splitAddress } from '../directory/address.js';
import type { Directory } from '../directory/directory.js';
import type { Logger } from '../log.js';
import { fromAddresses, hasField, parseHeaderBlock } from './headers.js';
import { rfc5322Date } from './received.js';
import { AUTH_INVALID, AUTH_TEMPORARY, SenderNotOwnedError } from './replies.js';
import type { Status } from '../status.js';
import { ownsAddress, type SenderCheckDeps } from './sender-check.js';

/** What signs outgoing mail (src/queue/dkim.ts DkimKeys); undefined: no key for the domain. */
export interface DkimSigner {
  signatureFor(domain: string, message: Readable | Buffer): Promise<string | undefined>;
}

export interface SaslCredentials {
  method: string;
  username: string;
  password: string;
  /** SASL PLAIN's authorization identity (RFC 4616), when the client gave one. */
  authzid?: string;
  /** SASL PLAIN's authentication identity. */
  authcid?: string;
}

export type SaslOutcome = { ok: true; login: string } | { ok: false; reply: Status };

/**
 * Checks SASL PLAIN/LOGIN credentials with the failed-login delay and failure counting shared
 * with IMAP and POP3. Wrong credentials: 535 5.7.8; a directory that cannot answer: 454 4.7.0
 * (RFC 4954 section 6), so a client asks for the password again only when it was wrong.
 */
export async function saslLogin(
  deps: { directory: Directory; limiter: AuthLimiter; log: Logger },
  ip: string,
  creds: SaslCredentials,
): Promise<SaslOutcome> {
  // Acting as another user (a PLAIN authzid that differs from the authcid) is not supported.
  if (creds.authzid && creds.authcid && creds.authzid.toLowerCase() !== creds.authcid.toLowerCase()) {
    logLoginRefused(deps.log, 'smtp', creds.authcid, 'authzid');
    deps.limiter.recordFailure(ip);
    return { ok: false, reply: AUTH_INVALID };
  }
  let outcome;
  try {
    outcome = await passwordLogin(deps, ip, creds.username, creds.password, 'smtp');
  } catch (err) {
    deps.log.error({ err, user: creds.username.slice(0, 256) }, 'smtp login failed unexpectedly');
    return { ok: false, reply: AUTH_TEMPORARY };
  }
  if (!outcome.ok) return { ok: false, reply: outcome.temporary ? AUTH_TEMPORARY : AUTH_INVALID };
  return { ok: true, login: outcome.user.email };
}

/** RFC 5322 section 3.6.4 msg-id for a message without one: <QUEUEID.RANDOM@hostname>. */
function newMessageId(queueId: string, hostname: string): string {
  return `<${queueId}.${randomBytes(6).toString('hex').toUpperCase()}@${headerSafe(hostname).replace(/[<>\s]/g, '')}>`;
}

export interface CommitContext extends SenderCheckDeps {
  login: string;
  /** Envelope sender ('' for the null sender). */
  sender: string;
  hostname: string;
  queueId: string;
  /** The header text handed to the queue as `prepend` (Received), CRLF line ends. */
  prepend: string;
  dkim?: DkimSigner | undefined;
  log: Logger;
  /** Addresses already found to be owned in this session (saves lookups). */
  owned?: Set<string>;
}

/**
 * The queue's beforeCommit hook for a submission: refuses a From: not owned by the login
 * (SenderNotOwnedError: 553 5.7.1, nothing is queued), returns the header lines to prepend
 * after Received (missing From/Date/Message-ID, then the DKIM-Signature).
 */
export function submissionBeforeCommit(c: CommitContext): (headers: Buffer, reread: (prefix: string) => Readable) => Promise<string> {
  return async (headers, reread) => {
    const fields = parseHeaderBlock(headers);
    const froms = fromAddresses(fields);
    if (hasField(fields, 'from') && froms.length === 0) throw new SenderNotOwnedError(c.login, '(no address in From:)', 'From:');
    for (const address of froms) {
      if (c.owned?.has(address.toLowerCase())) continue;
      if (!(await ownsAddress(c, c.login, address))) throw new SenderNotOwnedError(c.login, address, 'From:');
      c.owned?.add(address.toLowerCase());
    }
    let extra = '';
    const author = froms[0] ?? (c.sender || c.login);
    if (froms.length === 0) extra += `From: <${headerSafe(author)}>\r\n`;
    if (!hasField(fields, 'date')) extra += `Date: ${rfc5322Date(new Date())}\r\n`;
    if (!hasField(fields, 'message-id')) extra += `Message-ID: ${newMessageId(c.queueId, c.hostname)}\r\n`;
    return extra + (await signature(c, author, c.prepend + extra, reread));
  };
}

/** The DKIM-Signature for mail from `author`'s domain ('' without a key), over prefix + message. */
async function signature(
  c: { dkim?: DkimSigner | undefined; queueId: string; log: Logger },
  author: string,
  prefix: string,
  reread: (prefix: string) => Readable,
): Promise<string> {
  const domain = splitAddress(author)?.domain;
  if (!c.dkim || !domain) return '';
  const message = reread(prefix);
  try {
    const field = await c.dkim.signatureFor(domain, message);
    if (field) return field.endsWith('\n') ? field : `${field}\r\n`;
  } catch (err) {
    // An unsigned message is better than none: DMARC may still pass through SPF.
    c.log.error({ err, qid: c.queueId, domain }, 'dkim signing failed; sending unsigned');
  } finally {
    message.destroy();
  }
  return '';
}

/**
 * The queue's beforeCommit hook for mail relayed for a trusted network (a web application on
 * this host, say): signed for its From: domain when there is a key, as OpenDKIM signs for
 * Postfix's mynetworks. Nothing is checked or added otherwise.
 */
export function relayBeforeCommit(c: {
  dkim?: DkimSigner | undefined;
  queueId: string;
  sender: string;
  prepend: string;
  log: Logger;
}): (headers: Buffer, reread: (prefix: string) => Readable) => Promise<string> {
  return async (headers, reread) => {
    const author = fromAddresses(parseHeaderBlock(headers))[0] ?? c.sender;
    return author ? signature(c, author, c.prepend, reread) : '';
  };
}
