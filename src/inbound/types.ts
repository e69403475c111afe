/**
 * What the inbound checks of the MX share (SPF/DKIM/DMARC/ARC, blocklists, milters, scanners):
 * the message as received and its envelope, and what each check wants done with it. The SMTP
 * layer receives the message into a file first, runs the checks in order, merges their results
 * (policy.ts) and only then delivers, to INBOX or Junk, or answers with the refusal.
 */
import type { Status } from '../status.js';

/** A received message waiting for its verdict. */
export interface InboundMessage {
  /** The message as the client sent it (CRLF line ends, dot-unstuffed), our Received: not included. */
  file: string;
  /** Its size in bytes. */
  size: number;
  envelope: InboundEnvelope;
}

export interface InboundEnvelope {
  /** The id in log lines and in our Received: field. */
  queueId: string;
  /** The client's address ('' over a unix socket). */
  clientIp: string;
  /** The client's name from reverse DNS when known, else undefined (milters get "[ip]"). */
  clientHostname?: string;
  clientPort?: number;
  /** The HELO/EHLO argument. */
  helo: string;
  /** 'SMTP' or 'ESMTP' (and 'ESMTPS' under TLS), as in Received:. */
  protocol: string;
  /** TLS version and cipher when the session is encrypted. */
  tls?: { version: string; cipher: string };
  /** MAIL FROM, '' for the null sender. */
  sender: string;
  /** RCPT TO addresses as the client gave them. */
  recipients: string[];
  /** Our host name (myhostname; the authserv-id). */
  hostname: string;
}

/**
 * What a check wants done, from mildest to strongest: a merge takes the strongest (policy.ts).
 * 'junk' delivers into the recipient's Junk folder; 'discard' accepts and drops (milters).
 */
export type InboundAction = 'accept' | 'junk' | 'discard' | 'tempfail' | 'reject';

/** A header field to add: name and unfolded value (no CR or LF; the writer folds). */
export type HeaderField = [name: string, value: string];

export interface CheckResult {
  action: InboundAction;
  /** The reply for 'reject' and 'tempfail' (the check's own text, e.g. a DNSBL's or a milter's). */
  status?: Status;
  /** Fields to add at the top of the message, in this order. */
  addHeaders?: HeaderField[];
  /** Facts for the delivery's log line, e.g. { spf: 'pass' } or { rspamd_score: 7.1 }. */
  log?: Record<string, unknown>;
  /** What a scanner found, for Sieve's spamtest and virustest. */
  scores?: SpamScores;
}

/**
 * RFC 5235 scores: spam 1 (surely not) to 10 (surely spam), virus 1 (clean) to 5 (infected);
 * absent: not tested.
 */
export interface SpamScores {
  spam?: number;
  virus?: number;
}

/**
 * A spam score on RFC 5235's scale: 1 at a score of 0 or less, 10 at the scanner's threshold
 * and above, evenly between (Pigeonhole's "score" status type with the threshold as its
 * sieve_spamtest_max_value).
 */
export function spamtestValue(score: number, threshold: number): number {
  if (!Number.isFinite(score) || score <= 0) return 1;
  if (!(threshold > 0) || score >= threshold) return 10;
  return Math.min(10, Math.max(1, Math.round(1 + (9 * score) / threshold)));
}
