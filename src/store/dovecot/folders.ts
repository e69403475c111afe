/**
 * Maildir++ folders (LAYOUT=maildir++, Dovecot's default for Maildir): INBOX is the Maildir root;
 * every other mailbox is a directory ".<level>[.<level>...]" in the root (".Work.Projects"), with
 * cur/ new/ tmp/ and an empty "maildirfolder" file. Levels are modified UTF-7 on disk
 * (".Entw&APw-rfe"), and '.' is the on-disk hierarchy separator.
 *
 * Clients use the namespace's separator: '/' here by default, or '.' (then names equal the
 * on-disk form). Rules, as Dovecot 2.3 applies them (mail-storage.c mailbox_verify_name and
 * mailbox_verify_create_name, mailbox-list.c mailbox_list_is_valid_fs_name, imap's mUTF-7 check),
 * checked against Dovecot's own answers in test/fixtures/dovecot-maildir/imap-create.json:
 * - "INBOX" in any case is INBOX, also as the first level ("inbox/foo" is "INBOX/foo",
 *   stored as ".INBOX.foo"); other names are case-sensitive.
 * - Not valid: empty; not valid modified UTF-7 (see mutf7.ts); a leading, trailing or doubled
 *   separator; '.' in a level when the separator is '/' (there is no escape character by
 *   default); '/' when the separator is '.'; a leading '~'; control characters (also encoded,
 *   e.g. "&AAE-", refused for new mailboxes); a level over 255 bytes or a name over 4096
 *   (Dovecot's limits); and a directory name over 255 bytes (NAME_MAX: Dovecot's mkdir fails).
 * - IMAP CREATE strips one trailing separator before these checks (RFC 3501 6.3.3).
 * - cur, new and tmp are ALLOWED as levels: with Maildir++ they become ".cur", ".x.new" and do not
 *   clash with INBOX's cur/ new/ tmp/ (Dovecot creates them). `rejectReserved` refuses them anyway.
 * - Listing (mailbox-list-maildir-iter.c): every directory (or symlink to one) of the root whose
 *   name starts with '.', except "." and "..", "..DOVECOT-TRASHED" (a deletion in progress) and
 *   names with an empty level; a missing parent (".Work.Projects" without ".Work") is listed as a
 *   non-existent mailbox with children (\NonExistent \HasChildren). INBOX is always listed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError } from '../../errors.js';
import { acquireDotlock, UIDLIST_LOCK } from './dotlock.js';
import { isErrno } from './fsutil.js';
import { decodeMUtf7Checked, encodeMUtf7 } from './mutf7.js';
import { newUidlist, readUidlist, UIDLIST_NAME, writeUidlist } from './uidlist.js';
import { nextUidValidity } from './uidvalidity.js';

export type HierarchySeparator = '/' | '.';

export interface FolderOptions {
  /** The hierarchy separator clients see: '/' (default) or '.'. */
  separator?: HierarchySeparator;
  /** Also refuse cur, new and tmp as levels (Dovecot allows them with Maildir++). */
  rejectReserved?: boolean;
  /**
   * The name is of an existing mailbox (SELECT, DELETE, ...): skip the rules Dovecot applies only
   * to new names (control characters, lengths, reserved names).
   */
  existing?: boolean;
}

const MAILDIRFOLDER_NAME = 'maildirfolder';
const TRASHED_DIR_NAME = '..DOVECOT-TRASHED';
const MAX_NAME_BYTES = 4096; // MAILBOX_LIST_NAME_MAX_LENGTH (PATH_MAX)
const MAX_LEVEL_BYTES = 255; // MAILBOX_MAX_HIERARCHY_NAME_LENGTH
const MAX_DIR_NAME_BYTES = 255; // NAME_MAX

const sepOf = (opts: FolderOptions): HierarchySeparator => opts.separator ?? '/';
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** True for "INBOX" in any case. */
export function isInbox(name: string): boolean {
  return name.length === 5 && name.toUpperCase() === 'INBOX';
}

/** Writes INBOX, or an INBOX first level, in upper case (mail-storage.c mailbox_alloc). */
export function normalizeInbox(name: string, separator: HierarchySeparator = '/'): string {
  if (name.length >= 5 && name.slice(0, 5).toUpperCase() === 'INBOX' && (name.length === 5 || name[5] === separator)) {
    return 'INBOX' + name.slice(5);
  }
  return name;
}

/**
 * Why `name` (as a client sends it: modified UTF-7, with the client separator) is not a valid
 * mailbox name, or null when it is. The reasons are Dovecot's wording where it has one.
 */
export function mailboxNameProblem(name: string, opts: FolderOptions = {}): string | null {
  const sep = sepOf(opts);
  if (name === '') return 'Name is empty';
  if (isInbox(name)) return null;
  if (/[\x00-\x1f\x7f]/.test(name)) return 'Control characters not allowed in mailbox names';
  const decoded = decodeMUtf7Checked(name);
  if (!decoded.ok) return `Mailbox name is not valid mUTF-7: ${decoded.reason}`;
  if (sep === '/' && name.includes('.')) return "Character not allowed in mailbox name: '.'";
  if (name.startsWith(sep)) return 'Begins with hierarchy separator';
  if (name.includes(sep + sep)) return 'Has adjacent hierarchy separators';
  if (name.endsWith(sep)) return 'Ends with hierarchy separator';
  if (sep === '.' && name.includes('/')) return "Name must not have '/' characters";
  if (name.startsWith('~')) return "Begins with '~'";
  const levels = normalizeInbox(name, sep).split(sep);
  for (const level of levels) {
    if (level === '.') return "Contains '.' part";
    if (level === '..') return "Contains '..' part";
  }
  if (opts.existing) return null;
  if (opts.rejectReserved && levels.some((l) => l === 'cur' || l === 'new' || l === 'tmp')) {
    return 'Contains reserved name';
  }
  if (/[\x00-\x1f]/.test(decoded.value)) return 'Control characters not allowed in new mailbox names';
  const canonical = levels.map(canonicalLevel);
  if (bytes(decoded.value) > MAX_NAME_BYTES || canonical.some((l) => bytes(l) > MAX_LEVEL_BYTES)) {
    return 'Mailbox name too long';
  }
  if (bytes('.' + canonical.join('.')) > MAX_DIR_NAME_BYTES) {
    return 'Mailbox name too long (its directory name would exceed 255 bytes)';
  }
  return null;
}

/** The level as Dovecot stores it: decoded and encoded again (e.g. "&AOR-" -> "&AOQ-"). */
function canonicalLevel(level: string): string {
  const d = decodeMUtf7Checked(level);
  return d.ok ? encodeMUtf7(d.value) : encodeMUtf7(level);
}

export interface MailboxName {
  /** The name in canonical form, as LIST shows it: "INBOX", "Work/Projects", "Entw&APw-rfe". */
  name: string;
  /** The name in UTF-8, for display: "Entwürfe". */
  display: string;
  /** Hierarchy levels as stored (modified UTF-7), as the subscriptions file lists them. */
  levels: string[];
  /** The directory relative to the Maildir root: "" for INBOX, ".Work.Projects" otherwise. */
  dir: string;
}

/**
 * Validates and maps a client's mailbox name to its directory. Throws
 * MailError('BAD_MAILBOX_NAME') with the reason when it is not valid.
 */
export function parseMailboxName(name: string, opts: FolderOptions = {}): MailboxName {
  const sep = sepOf(opts);
  const problem = mailboxNameProblem(name, opts);
  if (problem) throw new MailError('BAD_MAILBOX_NAME', `invalid mailbox name ${JSON.stringify(name)}: ${problem}`);
  const normal = normalizeInbox(name, sep);
  if (normal === 'INBOX') return { name: 'INBOX', display: 'INBOX', levels: ['INBOX'], dir: '' };
  const levels = normal.split(sep).map(canonicalLevel);
  return {
    name: levels.join(sep),
    display: levels
      .map((l) => decodeMUtf7Checked(l))
      .map((d, i) => (d.ok ? d.value : levels[i]!))
      .join(sep),
    levels,
    dir: '.' + levels.join('.'),
  };
}

/** The client (modified UTF-7) form of a UTF-8 name ("Entwürfe" -> "Entw&APw-rfe"). */
export function utf8ToMailboxName(display: string): string {
  return encodeMUtf7(display);
}

export interface FolderEntry extends MailboxName {
  /** False for a parent that only exists because it has children (\NonExistent). */
  exists: boolean;
  hasChildren: boolean;
  /**
   * False when the directory is not the canonical spelling of `name` (e.g. raw UTF-8 written by
   * other software): open it by `dir`, not by mapping `name` again.
   */
  canonical: boolean;
}

/**
 * Maps a directory name of the Maildir root (".Work.Projects") to its mailbox, or null when it is
 * not a mailbox directory name. Levels that are not valid modified UTF-7 are shown encoded, as
 * Dovecot shows them.
 */
export function dirToMailbox(dirName: string, opts: FolderOptions = {}): (MailboxName & { canonical: boolean }) | null {
  const sep = sepOf(opts);
  if (!dirName.startsWith('.') || dirName === '.' || dirName === '..' || dirName === TRASHED_DIR_NAME) return null;
  const stored = dirName.slice(1).split('.');
  if (stored.some((l) => l === '' || l.includes('/'))) return null;
  if (stored.length === 1 && isInbox(stored[0]!)) return null; // ".INBOX" is not INBOX; Dovecot cannot open it either
  const levels = stored.map(canonicalLevel);
  if (isInbox(levels[0]!)) levels[0] = 'INBOX';
  const display = stored.map((l) => {
    const d = decodeMUtf7Checked(l);
    return d.ok ? d.value : l;
  });
  if (levels[0] === 'INBOX') display[0] = 'INBOX';
  return {
    name: levels.join(sep),
    display: display.join(sep),
    levels,
    dir: dirName,
    canonical: '.' + levels.join('.') === dirName,
  };
}

/**
 * Lists the mailboxes of a Maildir++ root: INBOX, every mailbox directory, and the missing
 * parents of nested ones, sorted by name with INBOX first.
 */
export async function listFolders(root: string, opts: FolderOptions = {}): Promise<FolderEntry[]> {
  const sep = sepOf(opts);
  const byName = new Map<string, FolderEntry>();
  byName.set('INBOX', { name: 'INBOX', display: 'INBOX', levels: ['INBOX'], dir: '', exists: true, hasChildren: false, canonical: true });
  let entries: import('node:fs').Dirent<Buffer>[];
  try {
    entries = await fs.readdir(root, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [...byName.values()];
    throw err;
  }
  for (const e of entries) {
    const dirName = e.name.toString('utf8');
    if (!Buffer.from(dirName, 'utf8').equals(e.name)) continue; // not UTF-8 (Dovecot renames these)
    const mb = dirToMailbox(dirName, opts);
    if (!mb) continue;
    if (!e.isDirectory()) {
      if (!e.isSymbolicLink() && e.isFile()) continue;
      const st = await fs.stat(path.join(root, dirName)).catch(() => null);
      if (!st?.isDirectory()) continue;
    }
    const prev = byName.get(mb.name);
    if (prev?.exists && prev.canonical) continue; // two spellings of one name: keep the canonical one
    byName.set(mb.name, { ...mb, exists: true, hasChildren: prev?.hasChildren ?? false });
  }
  for (const entry of [...byName.values()]) {
    const parts = entry.name.split(sep);
    for (let n = parts.length - 1; n >= 1; n--) {
      const parentName = parts.slice(0, n).join(sep);
      const parent = byName.get(parentName);
      if (parent) {
        parent.hasChildren = true;
        continue;
      }
      const levels = entry.levels.slice(0, n);
      byName.set(parentName, {
        name: parentName,
        display: entry.display.split(sep).slice(0, n).join(sep),
        levels,
        dir: '.' + levels.join('.'),
        exists: false,
        hasChildren: true,
        canonical: true,
      });
    }
  }
  return [...byName.values()].sort((a, b) =>
    a.name === 'INBOX' ? -1 : b.name === 'INBOX' ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
}

/**
 * Creates a new mailbox as Dovecot does (maildir-storage.c maildir_create): the directory
 * <root>/.<levels> with cur/ new/ tmp/ and maildirfolder, with the root's permissions and owner,
 * then (unless `uidlist` is false) its dovecot-uidlist with a UIDVALIDITY from the root's
 * counter (uidvalidity.ts) and a new GUID. Throws MailError ALREADY_EXISTS when the directory
 * exists, BAD_MAILBOX_NAME for an invalid name.
 */
export async function createFolder(
  root: string,
  name: string,
  opts: FolderOptions & { uidlist?: boolean } = {},
): Promise<MailboxName & { uidValidity?: number }> {
  const mb = parseMailboxName(name, { ...opts, existing: false });
  if (mb.dir === '') throw new MailError('ALREADY_EXISTS', 'INBOX always exists');
  const rootStat = await fs.stat(root);
  const mode = rootStat.mode & 0o7777;
  const dir = path.join(root, mb.dir);
  const chown = async (p: string) => {
    if (process.getuid?.() === 0) await fs.chown(p, rootStat.uid, rootStat.gid);
  };
  try {
    await fs.mkdir(dir, { mode });
  } catch (err) {
    if (isErrno(err, 'EEXIST')) throw new MailError('ALREADY_EXISTS', `mailbox ${mb.name} already exists`);
    throw err;
  }
  await fs.chmod(dir, mode);
  await chown(dir);
  for (const sub of ['cur', 'new', 'tmp']) {
    const p = path.join(dir, sub);
    await fs.mkdir(p, { mode });
    await fs.chmod(p, mode);
    await chown(p);
  }
  const marker = path.join(dir, MAILDIRFOLDER_NAME);
  await fs.writeFile(marker, '', { mode: mode & 0o666 });
  await chown(marker);
  if (opts.uidlist === false) return mb;
  const file = path.join(dir, UIDLIST_NAME);
  const lock = await acquireDotlock(file, UIDLIST_LOCK);
  try {
    // Someone who opened the folder between our mkdir and this lock may have written it already.
    const existing = await readUidlist(file);
    if (existing?.uidlist && !existing.corrupt) return { ...mb, uidValidity: existing.uidlist.uidValidity };
    const uidValidity = await nextUidValidity(root);
    await writeUidlist(file, newUidlist(uidValidity));
    return { ...mb, uidValidity };
  } finally {
    await lock.release();
  }
}
