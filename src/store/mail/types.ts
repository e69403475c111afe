/** Shared types of the mailbox engine (IMAP and POP3 sessions use these through Mailbox). */

/** System flags, as a bit set: what the Maildir info letters S R F T D mean (RFC 3501 2.3.2). */
export const FLAG_SEEN = 1;
export const FLAG_ANSWERED = 2;
export const FLAG_FLAGGED = 4;
export const FLAG_DELETED = 8;
export const FLAG_DRAFT = 16;

export const SYSTEM_FLAGS: ReadonlyArray<[number, string]> = [
  [FLAG_SEEN, '\\Seen'],
  [FLAG_ANSWERED, '\\Answered'],
  [FLAG_FLAGGED, '\\Flagged'],
  [FLAG_DELETED, '\\Deleted'],
  [FLAG_DRAFT, '\\Draft'],
];

export function systemFlagBit(name: string): number | undefined {
  const lower = name.toLowerCase();
  for (const [bit, flag] of SYSTEM_FLAGS) if (flag.toLowerCase() === lower) return bit;
  return undefined;
}

export interface MessageRecord {
  uid: number;
  /** The Maildir base name (before ':2,'); stable for the message's life. */
  base: string;
  /** The current file name in its directory, flags included. */
  name: string;
  inNew: boolean;
  flags: number;
  /** Keyword names, as the client spelled them when they were created. */
  keywords: string[];
  modseq: number;
  /** Bytes on disk (LF line ends). */
  size: number;
  /** Bytes with CRLF line ends: RFC822.SIZE. */
  vsize: number;
  /** INTERNALDATE in ms: the file's mtime, as Dovecot uses it. */
  internalDate: number;
}

/** What changed in a mailbox with one operation or sync, for the views. */
export interface MailboxChange {
  modseq: number;
  added: number[];
  expunged: number[];
  flagged: number[];
}

export interface FolderInfo {
  /** The IMAP name (modified UTF-7, with the configured separator). */
  name: string;
  specialUse?: string;
  subscribed: boolean;
  hasChildren: boolean;
  /** A parent name that exists only because it has children (\NonExistent when listed). */
  exists: boolean;
}

export interface MailboxStatus {
  messages: number;
  recent: number;
  uidNext: number;
  uidValidity: number;
  unseen: number;
  deleted: number;
  size: number;
  highestModseq: number;
}
