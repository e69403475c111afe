/**
 * Maildir message file names as Dovecot 2.3 reads and writes them:
 *
 *   <unique>[,<K>=<V>...][:2,<flags>]      e.g. 1795327904.M640972P25406.vm,S=173,W=181:2,FRSa
 *
 * - <unique>: the maildir unique name (time.MusecPpid.host). Dovecot generates them without ','.
 * - ",S=<bytes>" (file size) and ",W=<bytes>" (size with CRLF line ends) are Maildir++ / Dovecot
 *   extra fields (maildir-storage.h MAILDIR_EXTRA_*); Courier writes only ",S=". Unknown fields
 *   are kept. Everything before ':' is the "base": the message's identity, the key in
 *   dovecot-uidlist and its GUID (maildir-filename.c maildir_filename_base_cmp).
 * - ":2," then flag letters (maildir-filename-flags.c): D \Draft, F \Flagged, R \Answered,
 *   S \Seen, T \Deleted; 'a'..'z' are keywords 0..25 of dovecot-keywords. Any other letter
 *   (e.g. the maildir spec's P "passed", which Dovecot 2.3 does NOT map to $Forwarded) is
 *   ignored but kept on rewrite, as is a second ",..." flag set and an info not starting "2,".
 * The info separator ':' is compiled into Dovecot (MAILDIR_INFO_SEP); `sep` exists only for
 * mail stores that use another one (e.g. ';' or '!' on file systems without ':').
 */

/** IMAP system flags that Maildir stores in the file name. */
export type MaildirSystemFlag = '\\Draft' | '\\Flagged' | '\\Answered' | '\\Seen' | '\\Deleted';

const FLAG_TO_LETTER: Readonly<Record<MaildirSystemFlag, string>> = {
  '\\Draft': 'D',
  '\\Flagged': 'F',
  '\\Answered': 'R',
  '\\Seen': 'S',
  '\\Deleted': 'T',
};
const LETTER_TO_FLAG: ReadonlyMap<string, MaildirSystemFlag> = new Map(
  Object.entries(FLAG_TO_LETTER).map(([flag, letter]) => [letter, flag as MaildirSystemFlag]),
);

/** Keyword letters: index 0 is 'a' (maildir-storage.h MAILDIR_KEYWORD_FIRST/LAST). */
const MAILDIR_MAX_KEYWORDS = 26;

function keywordLetter(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= MAILDIR_MAX_KEYWORDS) {
    throw new RangeError(`keyword index ${index} is outside 0..25`);
  }
  return String.fromCharCode(0x61 + index);
}

/** A parsed file name. Parsing never throws: odd parts are kept in the fields below. */
export interface MaildirName {
  /** The whole file name. */
  name: string;
  /** Everything before the info separator: the key Dovecot's uidlist and GUID use. */
  base: string;
  /** The base up to its first ',' (the maildir unique name). */
  unique: string;
  /** The ",K=V" extra fields of the base, in order (a field without '=' has value ''). */
  fields: Array<{ key: string; value: string }>;
  /** S= size in bytes, when present and a safe integer. */
  size?: number;
  /** W= size with CRLF line ends, when present and a safe integer. */
  vsize?: number;
  /** The raw info after the separator (e.g. "2,FS"), or undefined when the name has none. */
  info?: string;
  /** System flags, in the ASCII order of their letters. */
  flags: MaildirSystemFlag[];
  /** Keyword indexes (0 = 'a') in the order they appear, without duplicates. */
  keywords: number[];
  /** Letters of the "2," flag set that are neither system flags nor keywords, in order. */
  otherFlags: string;
}

export interface NameOptions {
  /** Info separator; Dovecot's is ':'. */
  sep?: string;
}

/** Splits a name into base and info at the last separator (as maildir_filename_flags_get does). */
function splitInfo(name: string, sep: string): { base: string; info?: string } {
  const at = name.lastIndexOf(sep);
  return at < 0 ? { base: name } : { base: name.slice(0, at), info: name.slice(at + sep.length) };
}

function sizeValue(value: string): number | undefined {
  if (!/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function parseMaildirName(name: string, opts: NameOptions = {}): MaildirName {
  const sep = opts.sep ?? ':';
  const { base, info } = splitInfo(name, sep);
  const parts = base.split(',');
  const fields = parts.slice(1).map((p) => {
    const eq = p.indexOf('=');
    return eq < 0 ? { key: p, value: '' } : { key: p.slice(0, eq), value: p.slice(eq + 1) };
  });
  const result: MaildirName = { name, base, unique: parts[0]!, fields, flags: [], keywords: [], otherFlags: '' };
  if (info !== undefined) result.info = info;
  // The first ,S= / ,W= counts (maildir_filename_get_size stops at the first match).
  const s = fields.find((f) => f.key === 'S');
  const w = fields.find((f) => f.key === 'W');
  const size = s && sizeValue(s.value);
  const vsize = w && sizeValue(w.value);
  if (size !== undefined) result.size = size;
  if (vsize !== undefined) result.vsize = vsize;
  if (info === undefined || !info.startsWith('2,')) return result;
  const flagSet = info.slice(2).split(',')[0]!;
  const flags = new Set<MaildirSystemFlag>();
  for (const ch of flagSet) {
    const flag = LETTER_TO_FLAG.get(ch);
    if (flag) flags.add(flag);
    else if (ch >= 'a' && ch <= 'z') {
      const idx = ch.charCodeAt(0) - 0x61;
      if (!result.keywords.includes(idx)) result.keywords.push(idx);
    } else result.otherFlags += ch;
  }
  result.flags = [...flags].sort((a, b) => FLAG_TO_LETTER[a].localeCompare(FLAG_TO_LETTER[b]));
  return result;
}

function isKnownFlagChar(ch: string): boolean {
  return LETTER_TO_FLAG.has(ch) || (ch >= 'a' && ch <= 'z');
}

/**
 * Returns the name with its flags replaced, exactly as Dovecot's maildir_filename_flags_kw_set
 * does: the old info is removed, ":2," is always written, the new D F R S T and keyword letters
 * are merged in ASCII order between the letters Dovecot does not know (which keep their place),
 * and a second ",..." flag set is kept. An info that does not start with "2," is dropped.
 */
export function setMaildirFlags(
  name: string,
  flags: Iterable<MaildirSystemFlag>,
  keywords: Iterable<number> = [],
  opts: NameOptions = {},
): string {
  const sep = opts.sep ?? ':';
  const { base, info } = splitInfo(name, sep);
  const old = info !== undefined && info.startsWith('2,') ? info.slice(2) : '';
  const wanted = new Set<string>();
  for (const f of flags) {
    const letter = FLAG_TO_LETTER[f];
    if (!letter) throw new RangeError(`${String(f)} is not a flag Maildir stores in the file name`);
    wanted.add(letter);
  }
  const keywordLetters = [...new Set([...keywords].map(keywordLetter))].sort();
  const systemLetters = [...wanted].sort();
  let out = base + sep + '2,';
  let pos = 0;
  let keywordsDone = false;
  for (;;) {
    while (pos < old.length && isKnownFlagChar(old[pos]!)) pos++;
    const atEnd = pos >= old.length || old[pos] === ',';
    const next = atEnd ? 256 : old.charCodeAt(pos);
    while (systemLetters.length > 0 && next > systemLetters[0]!.charCodeAt(0)) out += systemLetters.shift();
    if (!keywordsDone && next > 0x61) {
      out += keywordLetters.join('');
      keywordsDone = true;
    }
    if (atEnd) break;
    out += old[pos];
    pos++;
  }
  if (pos < old.length) out += old.slice(pos); // another flag set: kept as it is
  return out;
}

/** Builds a name from its parts (the inverse of parseMaildirName for names Dovecot writes). */
export function buildMaildirName(
  parts: {
    base: string;
    flags?: Iterable<MaildirSystemFlag>;
    keywords?: Iterable<number>;
    otherFlags?: string;
    /** Write no info at all (a fresh file in new/); only when there are no flags. */
    noInfo?: boolean;
  },
  opts: NameOptions = {},
): string {
  const sep = opts.sep ?? ':';
  if (parts.base.includes(sep) || parts.base.includes('/')) {
    throw new RangeError(`maildir base name ${JSON.stringify(parts.base)} contains '${sep}' or '/'`);
  }
  const flags = [...(parts.flags ?? [])];
  const keywords = [...(parts.keywords ?? [])];
  if (parts.noInfo) {
    if (flags.length > 0 || keywords.length > 0 || parts.otherFlags) throw new RangeError('noInfo with flags');
    return parts.base;
  }
  const other = [...(parts.otherFlags ?? '')].filter((c) => !isKnownFlagChar(c) && c !== ',').join('');
  return setMaildirFlags(parts.base + sep + '2,' + other, flags, keywords, opts);
}

/**
 * Adds ,S=<size>,W=<vsize> to a unique name, as Dovecot's maildir-save.c does: the base of every
 * message file written here (delivery, APPEND, COPY).
 */
export function baseWithSizes(unique: string, size: number, vsize?: number): string {
  return vsize === undefined ? `${unique},S=${size}` : `${unique},S=${size},W=${vsize}`;
}

/**
 * Orders names by delivery time: the leading seconds, then the M<usecs> of the unique part,
 * then the base (maildir-filename.c maildir_filename_sort_cmp; Dovecot gives new files their
 * UIDs in this order).
 */
export function compareMaildirNames(a: string, b: string, opts: NameOptions = {}): number {
  const sep = opts.sep ?? ':';
  const secs = (s: string) => /^\d*/.exec(s)![0];
  const sa = secs(a);
  const sb = secs(b);
  const na = sa === '' ? 0n : BigInt(sa);
  const nb = sb === '' ? 0n : BigInt(sb);
  if (na !== nb) return na < nb ? -1 : 1;
  const usecs = (rest: string) => {
    if (!rest.startsWith('.')) return undefined;
    const uniq = rest.slice(1).split(/[.]/)[0]!.split(sep)[0]!;
    const m = /M(\d*)/.exec(uniq);
    return m ? Number(m[1] || 0) : undefined;
  };
  const ua = usecs(a.slice(sa.length));
  const ub = usecs(b.slice(sb.length));
  if (ua !== undefined && ub !== undefined && ua !== ub) return ua - ub;
  const ba = splitInfo(a, sep).base;
  const bb = splitInfo(b, sep).base;
  return ba < bb ? -1 : ba > bb ? 1 : 0;
}
