/**
 * The contract of the Sieve interpreter (RFC 5228 and its extensions): compile a script once,
 * run it on a message, get the actions. No I/O here: delivery (store, queue) carries the actions
 * out, ManageSieve stores scripts, the CLI prints the actions as Pigeonhole's sieve-test does.
 */

/** A compile error, with the position Pigeonhole reports ("line 3: ..."); column from 1. */
export interface SieveError {
  line: number;
  column: number;
  message: string;
}

/** What a script may use and how much (RFC 5804 section 1.7 limits; Pigeonhole's defaults). */
export interface SieveLimits {
  maxScriptSize: number;
  maxActions: number;
  maxRedirects: number;
  maxIncludeDepth: number;
  /** CPU time for one run, in ms; a script over it stops with a runtime error (implicit keep). */
  maxCpuMs: number;
}

/** The message and envelope a script sees. */
export interface SieveInput {
  /** The whole message as delivered (header and body, CRLF or LF line ends). */
  message: Buffer;
  envelope: {
    /** MAIL FROM ('' for the null sender). */
    from: string;
    /** The recipient this delivery is for (RCPT TO, or the mailbox an alias led to). */
    to: string;
    /** RFC 5228 section 5.4 "auth": the authenticated submitter, when known. */
    auth?: string;
  };
  /** Scores from the inbound checks for spamtest/virustest (RFC 5235), when known. */
  spamScore?: number;
  virusScore?: number;
  /** "now" for the date extension and vacation (tests pass a fixed one). */
  now?: Date;
}

/** The actions, in the order the script made them (RFC 5228 section 2.10). */
export type SieveAction =
  | { type: 'keep'; flags?: string[] }
  | { type: 'fileinto'; mailbox: string; create: boolean; copy: boolean; flags?: string[] }
  | { type: 'redirect'; address: string; copy: boolean }
  | { type: 'discard' }
  | { type: 'reject'; reason: string; extended: boolean }
  | {
      type: 'vacation';
      reason: string;
      /** :mime: reason is a MIME entity (header and body). */
      mime: boolean;
      subject?: string;
      from?: string;
      addresses: string[];
      /** Seconds between replies to one sender (:days * 86400 or :seconds; the default when absent). */
      period?: number;
      handle?: string;
    }
  /** editheader (RFC 5293): header changes, applied to the delivered copies in order. */
  | { type: 'addheader'; name: string; value: string; last: boolean }
  | { type: 'deleteheader'; name: string; index?: number; last?: boolean; values?: string[] }
  /**
   * duplicate (RFC 7352): remember `key` for `period` seconds once the message is delivered
   * (section 3: only then); with `last`, each sighting restarts the period.
   */
  | { type: 'duplicate'; key: string; period: number; last: boolean; handle?: string };

export interface SieveResult {
  actions: SieveAction[];
  /**
   * True when the message is kept because nothing cancelled the implicit keep (RFC 5228 section
   * 2.10.2); the keep then appears in `actions` too, as Pigeonhole lists it.
   */
  implicitKeep: boolean;
  /** A runtime error: the actions so far are dropped and the message is kept (RFC 5228 section 2.10.6). */
  error?: string;
}
