/**
 * dovecot-keywords: the names of the keyword letters a..z of a Maildir folder's file names
 * (maildir-keywords.c, Dovecot 2.3). One line per keyword: "<index> <name>\n", index 0..25
 * ('a' + index). Only 26 keywords fit in file names; Dovecot keeps further ones in its index
 * only, which this store does not have, so addKeyword() says null when all 26 are taken.
 *
 * Reading (maildir_keywords_sync): lines without a space, with a bad index (not 0..25) or an
 * empty name are skipped, and so is a last line without '\n'; for a repeated index the last
 * line wins. Names are looked up without
 * regard to case. A letter used in a file name but missing here is named "unknown-<index>"
 * by Dovecot (made unique with "?"s) and written to the file.
 *
 * Writing (maildir_keywords_commit): only while holding the dovecot-uidlist lock; the new
 * content is written into "dovecot-keywords.lock" (after unlinking a stale one), fsynced and
 * renamed over the file, whose mtime must grow every time: Dovecot rereads it only when the
 * mtime (in seconds) differs from the one it last read.
 */
import fs from 'node:fs/promises';
import { acquireDotlock } from './dotlock.js';
import { isErrno } from './fsutil.js';

export const MAX_KEYWORDS = 26;

/** Index → name; a hole (undefined) is an unused letter. */
export type KeywordTable = Array<string | undefined>;

export interface KeywordsParse {
  keywords: KeywordTable;
  problems: string[];
}

export function parseKeywords(text: string): KeywordsParse {
  const keywords: KeywordTable = [];
  const problems: string[] = [];
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const partial = lines.pop()!; // Dovecot does not read a last line without '\n'
  if (partial !== '') problems.push(`unterminated last line skipped: ${JSON.stringify(partial.slice(0, 80))}`);
  lines.forEach((line, i) => {
    const sp = line.indexOf(' ');
    const idx = sp < 0 ? NaN : /^\d{1,3}$/.test(line.slice(0, sp)) ? Number(line.slice(0, sp)) : NaN;
    const name = sp < 0 ? '' : line.slice(sp + 1);
    if (!(idx >= 0 && idx < MAX_KEYWORDS) || name === '') {
      problems.push(`line ${i + 1} skipped: ${JSON.stringify(line.slice(0, 80))}`);
      return;
    }
    keywords[idx] = name;
  });
  return { keywords, problems };
}

export function formatKeywords(keywords: KeywordTable): string {
  if (keywords.length > MAX_KEYWORDS) throw new RangeError(`more than ${MAX_KEYWORDS} keywords`);
  let out = '';
  keywords.forEach((name, i) => {
    if (name === undefined) return;
    if (name === '' || /[\r\n]/.test(name)) throw new RangeError(`keyword ${JSON.stringify(name)} cannot be stored`);
    out += `${i} ${name}\n`;
  });
  return out;
}

/** Throws a RangeError unless `name` is an IMAP keyword: an atom (RFC 3501 flag-keyword). */
function checkKeywordName(name: string): void {
  if (name === '' || /[\x00-\x20\x7f-\uffff(){%*"\\\]]/.test(name)) {
    throw new RangeError(`${JSON.stringify(name)} is not a valid IMAP keyword`);
  }
}

/** The index of a keyword (case-insensitive, as Dovecot's lookup), or null. */
export function findKeyword(keywords: KeywordTable, name: string): number | null {
  const lower = name.toLowerCase();
  const i = keywords.findIndex((k) => k !== undefined && k.toLowerCase() === lower);
  return i < 0 ? null : i;
}

/**
 * Returns the index of `name`, adding it at the first free index when it is new (the table is
 * changed in place); null when all 26 letters are taken.
 */
export function addKeyword(keywords: KeywordTable, name: string): number | null {
  checkKeywordName(name);
  const found = findKeyword(keywords, name);
  if (found !== null) return found;
  for (let i = 0; i < MAX_KEYWORDS; i++) {
    if (keywords[i] === undefined) {
      keywords[i] = name;
      return i;
    }
  }
  return null;
}

/**
 * The names of keyword indexes from a file name. A letter without a name gets the one Dovecot
 * invents, "unknown-<index>" (plus "?"s until unique), added to the table so it can be saved.
 */
export function keywordNames(keywords: KeywordTable, indexes: Iterable<number>): string[] {
  const names: string[] = [];
  for (const i of indexes) {
    let name = keywords[i];
    if (name === undefined) {
      name = `unknown-${i}`;
      while (findKeyword(keywords, name) !== null) name += '?';
      keywords[i] = name;
    }
    names.push(name);
  }
  return names;
}

export interface KeywordsFile extends KeywordsParse {
  /** mtime of the file read, in whole seconds (0 when missing); pass it to writeKeywords. */
  mtimeSeconds: number;
}

/** Reads dovecot-keywords; a missing file is an empty table. */
export async function readKeywords(file: string): Promise<KeywordsFile> {
  let h: fs.FileHandle;
  try {
    h = await fs.open(file, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return { keywords: [], problems: [], mtimeSeconds: 0 };
    throw err;
  }
  try {
    const st = await h.stat();
    const text = (await h.readFile()).toString('utf8');
    return { ...parseKeywords(text), mtimeSeconds: Math.floor(st.mtimeMs / 1000) };
  } finally {
    await h.close();
  }
}

/**
 * Replaces dovecot-keywords the way Dovecot does (see above). The caller holds the
 * dovecot-uidlist lock. `previousMtimeSeconds` is the mtime of the version last read (default:
 * the current file's), which the new file's mtime will exceed.
 */
export async function writeKeywords(
  file: string,
  keywords: KeywordTable,
  opts: { previousMtimeSeconds?: number; fsync?: boolean } = {},
): Promise<void> {
  const text = formatKeywords(keywords);
  let previous = opts.previousMtimeSeconds;
  if (previous === undefined) {
    try {
      previous = Math.floor((await fs.stat(file)).mtimeMs / 1000);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      previous = 0;
    }
  }
  await fs.unlink(`${file}.lock`).catch(() => {}); // safe: we hold the uidlist lock
  const lock = await acquireDotlock(file, { timeoutMs: 0, staleMs: 0, writePid: false });
  await lock.replace(text, { mtimeAfter: previous, fsync: opts.fsync });
}
