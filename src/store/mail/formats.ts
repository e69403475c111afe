/**
 * The Dovecot on-disk formats as the mailbox engine uses them. The formats themselves live in
 * ../dovecot/ (checked against real Dovecot); this adapter is the one place the engine touches
 * them, in its own terms (flag bit sets, folder names with '/').
 */
import path from 'node:path';
import {
  UIDLIST_LOCK,
  acquireDotlock,
  appendUidlist,
  appendUidlistAt,
  buildMaildirName,
  createFolder,
  generateMailboxGuid,
  listFolders,
  mailboxNameProblem,
  nextUid,
  nextUidValidity,
  normalizeInbox,
  parseMailboxName,
  parseMaildirName,
  readKeywords,
  readSubscriptions,
  readUidlistStamped,
  setMaildirFlags,
  setSubscribed,
  writeKeywords,
  writeUidlist,
  type FolderEntry,
  type KeywordTable,
  type MaildirSystemFlag,
  type UidlistStamp,
  uidlistStamp,
} from '../dovecot/index.js';
import { MailError } from '../../errors.js';
import { FLAG_ANSWERED, FLAG_DELETED, FLAG_DRAFT, FLAG_FLAGGED, FLAG_SEEN } from './types.js';

// ---- file names ------------------------------------------------------------------------------

const BITS: Array<[number, MaildirSystemFlag]> = [
  [FLAG_DRAFT, '\\Draft'],
  [FLAG_FLAGGED, '\\Flagged'],
  [FLAG_ANSWERED, '\\Answered'],
  [FLAG_SEEN, '\\Seen'],
  [FLAG_DELETED, '\\Deleted'],
];

function flagNames(bits: number): MaildirSystemFlag[] {
  return BITS.filter(([bit]) => bits & bit).map(([, name]) => name);
}

export interface ParsedName {
  base: string;
  flags: number;
  /** Keyword indexes into dovecot-keywords (0 = 'a'). */
  keywords: number[];
  size?: number;
  vsize?: number;
}

export function parseName(name: string): ParsedName {
  const p = parseMaildirName(name);
  let flags = 0;
  for (const [bit, n] of BITS) if (p.flags.includes(n)) flags |= bit;
  return {
    base: p.base,
    flags,
    keywords: p.keywords,
    ...(p.size !== undefined ? { size: p.size } : {}),
    ...(p.vsize !== undefined ? { vsize: p.vsize } : {}),
  };
}

/** The name with new flags, as Dovecot rewrites it (letters it does not know keep their place). */
export function withFlags(name: string, flags: number, keywords: number[]): string {
  return setMaildirFlags(name, flagNames(flags), keywords);
}

/** The name of a new file in cur/. */
export function freshName(base: string, flags: number, keywords: number[]): string {
  return buildMaildirName({ base, flags: flagNames(flags), keywords });
}

// ---- dovecot-uidlist -------------------------------------------------------------------------

export interface UidlistState {
  uidValidity: number;
  nextUid: number;
  guid: string | undefined;
  records: Array<{ uid: number; base: string }>;
  /** Dovecot would throw such a file away and renumber: the engine rewrites it instead. */
  corrupt: boolean;
  version: 1 | 3;
  /** What was read, when records can be appended at its end (see UidlistStamp). */
  stamp: UidlistStamp | undefined;
}

const UIDLIST = 'dovecot-uidlist';
const KEYWORDS = 'dovecot-keywords';

export async function loadUidlist(folder: string): Promise<UidlistState | null> {
  const read = await readUidlistStamped(path.join(folder, UIDLIST));
  const parsed = read?.parse;
  if (!parsed?.uidlist) return null;
  const u = parsed.uidlist;
  return {
    uidValidity: u.uidValidity,
    nextUid: nextUid(u),
    guid: u.guid,
    records: u.records.map((r) => ({ uid: r.uid, base: r.base })),
    corrupt: parsed.corrupt,
    version: u.version,
    stamp: read?.stamp,
  };
}

/** Appends new records (caller holds the uidlist lock). */
export async function appendUids(folder: string, records: Array<{ uid: number; base: string }>): Promise<void> {
  await appendUidlist(
    path.join(folder, UIDLIST),
    records.map((r) => ({ ...r, ext: [] })),
  );
}

/** The uidlist's stamp now (caller holds the lock): unchanged means nobody wrote it since. */
export function stampOfUidlist(folder: string): Promise<UidlistStamp | undefined> {
  return uidlistStamp(path.join(folder, UIDLIST));
}

/** Appends new records at the end of the version of the file the caller has the stamp of (it holds the lock). */
export function appendUidsAt(
  folder: string,
  records: Array<{ uid: number; base: string }>,
  at: UidlistStamp & { version: 1 | 3 },
): Promise<UidlistStamp> {
  return appendUidlistAt(
    path.join(folder, UIDLIST),
    records.map((r) => ({ ...r, ext: [] })),
    at,
  );
}

/** Rewrites the uidlist (caller holds the lock); returns the GUID written. */
export async function rewriteUidlist(
  folder: string,
  state: { uidValidity: number; nextUid: number; guid: string | undefined; records: Array<{ uid: number; base: string }> },
): Promise<string> {
  return writeUidlist(path.join(folder, UIDLIST), {
    version: 3,
    uidValidity: state.uidValidity,
    headerNextUid: state.nextUid,
    ...(state.guid ? { guid: state.guid } : {}),
    headerExt: [],
    records: state.records.map((r) => ({ ...r, ext: [] })),
  });
}

/** A new UIDVALIDITY from the Maildir root's counter, as Dovecot gives it. */
export function newUidValidity(maildirRoot: string): Promise<number> {
  return nextUidValidity(maildirRoot);
}

export { generateMailboxGuid };

/** Runs fn holding dovecot-uidlist.lock (Dovecot's dotlock, with its timeouts). */
export async function withUidlistLock<T>(folder: string, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireDotlock(path.join(folder, UIDLIST), UIDLIST_LOCK);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

// ---- dovecot-keywords --------------------------------------------------------------------------

export async function loadKeywords(folder: string): Promise<{ table: KeywordTable; mtimeSeconds: number }> {
  const k = await readKeywords(path.join(folder, KEYWORDS));
  return { table: k.keywords, mtimeSeconds: k.mtimeSeconds };
}

/** Writes dovecot-keywords (caller holds the uidlist lock, as Dovecot requires). */
export async function saveKeywords(folder: string, table: KeywordTable, previousMtimeSeconds: number): Promise<void> {
  await writeKeywords(path.join(folder, KEYWORDS), table, { previousMtimeSeconds });
}

// ---- folders and subscriptions -----------------------------------------------------------------

/** The hierarchy separator clients see: Dovecot's default for Maildir++ is '.', '/' a common choice. */
export type Separator = '/' | '.';

const SUBSCRIPTIONS = 'subscriptions';

/**
 * Folder names as clients spell them, with the configured separator, mapped onto Dovecot's
 * Maildir++ layout (which always uses '.' on disk, escaped as Dovecot escapes it).
 */
export class FolderNames {
  readonly separator: Separator;
  readonly #options: { separator: Separator; rejectReserved: true };

  constructor(separator: Separator) {
    this.separator = separator;
    this.#options = { separator, rejectReserved: true };
  }

  /** Why a name cannot be used (null if it can). `existing`: a name of a mailbox that exists. */
  problem(name: string, existing: boolean): string | null {
    return mailboxNameProblem(name, { ...this.#options, existing });
  }

  /** The canonical name and directory of a folder; throws BAD_MAILBOX_NAME. */
  resolve(maildir: string, name: string, existing: boolean): { name: string; dir: string; levels: string[] } {
    const mb = parseMailboxName(normalizeInbox(name, this.separator), { ...this.#options, existing });
    return { name: mb.name, dir: mb.dir === '' ? maildir : path.join(maildir, mb.dir), levels: mb.levels };
  }

  isInbox(name: string): boolean {
    return normalizeInbox(name, this.separator) === 'INBOX';
  }

  /** The canonical spelling: INBOX (and an INBOX first level) in upper case. */
  canonical(name: string): string {
    return normalizeInbox(name, this.separator);
  }

  /** Is `name` below `parent` in the hierarchy? */
  isChildOf(name: string, parent: string): boolean {
    return name.startsWith(parent + this.separator);
  }

  list(maildir: string): Promise<FolderEntry[]> {
    return listFolders(maildir, { separator: this.separator });
  }

  /** Creates a folder as Dovecot does (directories, maildirfolder, a uidlist with a new UIDVALIDITY). */
  async make(maildir: string, name: string): Promise<void> {
    try {
      await createFolder(maildir, name, this.#options);
    } catch (err) {
      if (err instanceof MailError) throw err;
      throw new MailError('STORAGE_ERROR', `creating ${name}: ${(err as NodeJS.ErrnoException).code ?? err}`, { cause: err });
    }
  }

  /** The subscribed names; the file keeps levels, not separators, so either separator reads it. */
  async subscriptions(maildir: string): Promise<string[]> {
    const subs = await readSubscriptions(path.join(maildir, SUBSCRIPTIONS));
    return subs.names.map((levels) => this.canonical(levels.join(this.separator)));
  }

  async setSubscription(maildir: string, name: string, on: boolean): Promise<void> {
    await setSubscribed(path.join(maildir, SUBSCRIPTIONS), name.split(this.separator), on);
  }
}
