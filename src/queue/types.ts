/**
 * The outbound queue's contracts: what protocol code hands to the queue (enqueue), what a
 * delivery attempt reports per recipient, and how a destination is reached. The queue owns the
 * spool on disk; protocol code never touches it.
 */
import type { Readable } from 'node:stream';
import type { Status } from '../status.js';

/** A recipient as the queue keeps it. */
export interface QueueRecipient {
  /** Where the message goes (a mailbox address for local delivery, any address for remote). */
  address: string;
  /** The address the client gave, when it differs (alias expansion): DSN Original-Recipient. */
  original?: string;
  /** RFC 3461 NOTIFY: which reports the sender asked for (absent: failures and delays). */
  notify?: Array<'SUCCESS' | 'FAILURE' | 'DELAY' | 'NEVER'>;
  /** RFC 3461 ORCPT as given ("rfc822;bob@example.com"): the report's Original-Recipient. */
  orcpt?: string;
}

/** RFC 3461 parameters of MAIL FROM. */
export interface EnvelopeDsn {
  /** Return the full message (FULL) or its headers (HDRS, the default) in a failure report. */
  ret?: 'FULL' | 'HDRS';
  /** The sender's envelope id, echoed as Original-Envelope-Id. */
  envid?: string;
}

export interface EnqueueRequest {
  /** Envelope sender; '' is the null sender (bounces: never bounced themselves). */
  sender: string;
  recipients: QueueRecipient[];
  /** The message as received (CRLF or LF line ends). Streamed to disk, never held whole in memory. */
  message: Readable | Buffer;
  /**
   * Header fields this server adds in front of the message (Received, Date, Message-ID,
   * DKIM-Signature), each line ending in "\r\n" or "\n". Kept in the envelope, not written into
   * the message file, so the message never has to be rewritten.
   */
  prepend?: string;
  /** Largest message accepted, in bytes as received. */
  maxBytes: number;
  /** RFC 3461 RET and ENVID of MAIL FROM. */
  dsn?: EnvelopeDsn;
  /** The queue id to use (so log lines before the enqueue carry it already); a new one otherwise. */
  queueId?: string;
  /** The authenticated user who submitted it, for logs and `queue list`. */
  authUser?: string;
  /** Local mailboxes get it in the folder with this special use (the inbound checks' '\\Junk'), not INBOX. */
  folder?: string;
  /** The inbound scanners' RFC 5235 scores, for the local mailboxes' Sieve spamtest/virustest. */
  scores?: { spam?: number; virus?: number };
  /**
   * What produced it: a client's submission, a forward by an alias, a relay for a trusted
   * client, a bounce we generated, or inbound mail for several local mailboxes that is delivered
   * to each on its own (so one over quota is bounced alone).
   */
  origin: 'submission' | 'forward' | 'bounce' | 'relay' | 'inbound';
  /**
   * Called with the header block of the message (up to the first empty line, at most 256 KiB)
   * once it has arrived and before the message is committed; whatever it returns is appended to
   * `prepend`. Throwing a MailError refuses the message (nothing is queued). `reread(prefix)`
   * streams the stored message with `prefix` in front (for a signature over what will leave).
   * Submission uses it for the From: check, missing Date/Message-ID and the DKIM signature.
   */
  beforeCommit?: (headers: Buffer, reread: (prefix: string) => Readable) => Promise<string | void>;
}

export interface EnqueueResult {
  queueId: string;
  /** Bytes of the message file (as received). */
  size: number;
}

/** What protocol code needs of the queue. */
export interface OutboundQueue {
  /** Resolves only once the message and its envelope are on disk and fsynced. */
  enqueue(req: EnqueueRequest): Promise<EnqueueResult>;
}

/** TLS policy towards a destination (Postfix's smtp_tls_security_level). */
export type TlsPolicy =
  /** Never STARTTLS. */
  | 'none'
  /** Opportunistic: STARTTLS when offered, certificate not checked; cleartext otherwise. */
  | 'may'
  /** STARTTLS required (fail closed: temporary failure when not offered), certificate not checked. */
  | 'encrypt'
  /** STARTTLS required and the certificate must be valid for the host name. */
  | 'verify';

/** Where one transaction goes: explicit host(s) (transport table, relayhost) or the domain's MX. */
export interface NextHop {
  /**
   * 'mx': look up the MX records of `host` (falling back to A/AAAA, RFC 5321 section 5.1).
   * 'host': connect to `host` as given ([host] in Postfix syntax: no MX lookup).
   */
  lookup: 'mx' | 'host';
  host: string;
  port: number;
  tls: TlsPolicy;
  /**
   * TLS from the first byte (a relay on port 465, RFC 8314) instead of STARTTLS; the policy then
   * only decides whether the certificate is verified.
   */
  implicitTls?: boolean;
  /** SMTP AUTH towards a relay (only ever sent inside TLS). */
  auth?: { user: string; pass: string };
}

/**
 * One recipient's outcome of a delivery attempt: a status (src/status.ts) whose code is the SMTP
 * reply code (a synthetic 4xx/5xx for connection and DNS failures) and whose enhanced code is
 * the server's or derived from the code when it gave none.
 */
export interface RecipientResult extends Status {
  address: string;
  /** sent: 2xx. deferred: 4xx, connection or DNS trouble (retry). failed: 5xx or permanent DNS answer (bounce). */
  status: 'sent' | 'deferred' | 'failed';
  /**
   * One line, no CR/LF: a remote server's whole reply ("550 5.1.1 User unknown"), or the
   * status text of a local result with the detail in parentheses.
   */
  text: string;
  /** The host that answered, e.g. "mx1.example.com[192.0.2.1]:25", when one did. */
  remoteMta?: string;
}

/** One SMTP transaction: a message to one or more recipients of one destination. */
export interface Transaction {
  queueId: string;
  sender: string;
  recipients: string[];
  /** Opens the message as it leaves: prepended headers followed by the message file. */
  open(): Readable;
  /** Size in bytes, for the SIZE= parameter. */
  size: number;
  /** True when the message has 8-bit content (BODY=8BITMIME); send it when the server offers it. */
  eightBit?: boolean;
}
