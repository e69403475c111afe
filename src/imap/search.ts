/**
 * SEARCH criteria (RFC 3501 section 6.4.4; RFC 9051 section 6.4.4; CONDSTORE MODSEQ, RFC 7162
 * section 3.1.5): parsed into a tree, evaluated per message. Keys that need the message
 * (headers, body, sent dates) load it once per message and only when reached.
 */
import libmime from 'libmime';
import { simpleParser } from 'mailparser';
import type { Mailbox } from '../store/mail/mailbox.js';
import { lfToCrlf } from '../store/mail/mailbox.js';
import { FLAG_ANSWERED, FLAG_DELETED, FLAG_DRAFT, FLAG_FLAGGED, FLAG_SEEN, type MessageRecord } from '../store/mail/types.js';
import { headerFields, parseStructure } from './mime/index.js';
import { ParseError, astring, atom, number, number64, type Token } from './parser.js';
import { parseSequenceSet, type SeqRange } from './sequence.js';

export type SearchKey =
  | { op: 'all' }
  | { op: 'flag'; bit: number; set: boolean }
  | { op: 'keyword'; name: string; set: boolean }
  | { op: 'recent'; set: boolean }
  | { op: 'new' }
  | { op: 'larger' | 'smaller'; size: number }
  | { op: 'before' | 'on' | 'since' | 'sentbefore' | 'senton' | 'sentsince'; day: number }
  | { op: 'header'; field: string; value: string }
  | { op: 'body' | 'text'; value: string }
  | { op: 'uid'; ranges: SeqRange[] }
  | { op: 'seq'; ranges: SeqRange[] }
  | { op: 'modseq'; modseq: number }
  | { op: 'not'; key: SearchKey }
  | { op: 'or'; a: SearchKey; b: SearchKey }
  | { op: 'and'; keys: SearchKey[] };

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const MAX_DEPTH = 32;

/** date (RFC 3501 section 9): 1-Feb-1994, possibly quoted; as a day number (UTC days). */
function parseDay(t: Token | undefined): number {
  const text = astring(t, 'date');
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
  const month = m ? MONTHS.indexOf(m[2]!.toLowerCase()) : -1;
  if (!m || month < 0) throw new ParseError('invalid date');
  return Math.floor(Date.UTC(Number(m[3]), month, Number(m[1])) / 86_400_000);
}

/** The calendar day of a timestamp, "disregarding time and timezone" as the server sees it. */
export function localDay(ms: number): number {
  const d = new Date(ms);
  return Math.floor(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) / 86_400_000);
}

export class SearchParser {
  readonly #tokens: Token[];
  #pos = 0;
  usesModseq = false;

  constructor(tokens: Token[]) {
    this.#tokens = tokens;
  }

  parseAll(): SearchKey {
    const keys: SearchKey[] = [];
    while (this.#pos < this.#tokens.length) keys.push(this.#key(0));
    if (keys.length === 0) throw new ParseError('search criteria expected');
    return keys.length === 1 ? keys[0]! : { op: 'and', keys };
  }

  #next(what: string): Token {
    const t = this.#tokens[this.#pos++];
    if (!t) throw new ParseError(`${what} expected`);
    return t;
  }

  #key(depth: number): SearchKey {
    if (depth > MAX_DEPTH) throw new ParseError('search criteria nested too deeply');
    const t = this.#next('search key');
    if (t.type === 'list') {
      const inner = new SearchParser(t.items);
      const key = inner.#parseNested(depth + 1);
      this.usesModseq ||= inner.usesModseq;
      return key;
    }
    if (t.type !== 'atom') throw new ParseError('search key expected');
    const name = t.value.toUpperCase();
    if (/^[0-9*:,]+$/.test(name)) return { op: 'seq', ranges: parseSequenceSet(name) };
    const str = () => astring(this.#next(name), `${name} argument`);
    switch (name) {
      case 'ALL':
        return { op: 'all' };
      case 'ANSWERED':
      case 'UNANSWERED':
        return { op: 'flag', bit: FLAG_ANSWERED, set: name === 'ANSWERED' };
      case 'DELETED':
      case 'UNDELETED':
        return { op: 'flag', bit: FLAG_DELETED, set: name === 'DELETED' };
      case 'DRAFT':
      case 'UNDRAFT':
        return { op: 'flag', bit: FLAG_DRAFT, set: name === 'DRAFT' };
      case 'FLAGGED':
      case 'UNFLAGGED':
        return { op: 'flag', bit: FLAG_FLAGGED, set: name === 'FLAGGED' };
      case 'SEEN':
      case 'UNSEEN':
        return { op: 'flag', bit: FLAG_SEEN, set: name === 'SEEN' };
      case 'RECENT':
        return { op: 'recent', set: true };
      case 'OLD':
        return { op: 'recent', set: false };
      case 'NEW':
        return { op: 'new' };
      case 'KEYWORD':
      case 'UNKEYWORD':
        return { op: 'keyword', name: atom(this.#next(name), 'keyword'), set: name === 'KEYWORD' };
      case 'LARGER':
      case 'SMALLER':
        return { op: name === 'LARGER' ? 'larger' : 'smaller', size: number(this.#next(name), name) };
      case 'BEFORE':
      case 'ON':
      case 'SINCE':
      case 'SENTBEFORE':
      case 'SENTON':
      case 'SENTSINCE':
        return { op: name.toLowerCase() as 'before', day: parseDay(this.#next(name)) };
      case 'FROM':
      case 'TO':
      case 'CC':
      case 'BCC':
      case 'SUBJECT':
        return { op: 'header', field: name.toLowerCase(), value: str() };
      case 'HEADER': {
        const field = str().toLowerCase();
        return { op: 'header', field, value: str() };
      }
      case 'BODY':
      case 'TEXT':
        return { op: name === 'BODY' ? 'body' : 'text', value: str() };
      case 'UID':
        return { op: 'uid', ranges: parseSequenceSet(atom(this.#next(name), 'UID set')) };
      case 'NOT':
        return { op: 'not', key: this.#key(depth + 1) };
      case 'OR': {
        const a = this.#key(depth + 1);
        const b = this.#key(depth + 1);
        return { op: 'or', a, b };
      }
      case 'MODSEQ': {
        // MODSEQ [entry-name entry-type-req] mod-sequence-valzer
        let t2 = this.#next(name);
        if (t2.type === 'string') {
          this.#next('entry type');
          t2 = this.#next(name);
        }
        this.usesModseq = true;
        return { op: 'modseq', modseq: Number(number64(t2, 'MODSEQ')) };
      }
      default:
        throw new ParseError(`unknown search key ${name.slice(0, 30)}`);
    }
  }

  #parseNested(depth: number): SearchKey {
    const keys: SearchKey[] = [];
    while (this.#pos < this.#tokens.length) keys.push(this.#key(depth));
    if (keys.length === 0) throw new ParseError('empty search key list');
    return keys.length === 1 ? keys[0]! : { op: 'and', keys };
  }
}

/** What a key needs: only the index, the header, or the whole message. */
function needs(key: SearchKey): 'index' | 'header' | 'body' {
  switch (key.op) {
    case 'header':
    case 'sentbefore':
    case 'senton':
    case 'sentsince':
      return 'header';
    case 'body':
    case 'text':
      return 'body';
    case 'not':
      return needs(key.key);
    case 'or': {
      const a = needs(key.a);
      const b = needs(key.b);
      return a === 'body' || b === 'body' ? 'body' : a === 'header' || b === 'header' ? 'header' : 'index';
    }
    case 'and':
      return key.keys.map(needs).reduce((acc, n) => (acc === 'body' || n === 'body' ? 'body' : acc === 'header' || n === 'header' ? 'header' : 'index'), 'index' as 'index' | 'header' | 'body');
    default:
      return 'index';
  }
}

interface Content {
  headers?: Map<string, string[]>;
  sentDay?: number | null;
  bodyText?: string;
  headerText?: string;
}

const lower = (s: string) => s.toLowerCase();

/** Evaluates the criteria for the messages of a view. */
export class SearchRunner {
  readonly #mailbox: Mailbox;
  readonly #key: SearchKey;
  readonly #needs: 'index' | 'header' | 'body';

  constructor(mailbox: Mailbox, key: SearchKey) {
    this.#mailbox = mailbox;
    this.#key = key;
    this.#needs = needs(key);
  }

  /** Indexes (into viewUids) of matching messages. */
  async run(viewUids: readonly number[], recent: (uid: number) => boolean): Promise<number[]> {
    const out: number[] = [];
    if (needsDetails(this.#key)) await this.#mailbox.ensureDetails(viewUids);
    for (let i = 0; i < viewUids.length; i++) {
      const rec = this.#mailbox.record(viewUids[i]!);
      if (!rec) continue;
      const content: Content = {};
      if (this.#needs !== 'index') {
        try {
          await this.#load(rec, content);
        } catch {
          continue; // vanished meanwhile
        }
      }
      if (this.#eval(this.#key, rec, i + 1, viewUids.length, content, recent)) out.push(i);
    }
    return out;
  }

  async #load(rec: MessageRecord, content: Content): Promise<void> {
    const data = lfToCrlf(await this.#mailbox.read(rec.uid));
    const root = parseStructure(data);
    const headers = new Map<string, string[]>();
    for (const h of headerFields(data, root)) {
      const raw = h.raw.toString('utf8');
      const value = raw.slice(raw.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim();
      let decoded = value;
      try {
        decoded = libmime.decodeWords(value);
      } catch {
        // keep the raw text
      }
      const k = h.name.toLowerCase();
      headers.set(k, [...(headers.get(k) ?? []), decoded]);
    }
    content.headers = headers;
    const date = headers.get('date')?.[0];
    const ms = date ? Date.parse(date) : NaN;
    content.sentDay = Number.isFinite(ms) ? localDay(ms) : null;
    if (this.#needs === 'body') {
      const parsed = await simpleParser(data, { skipImageLinks: true, skipTextToHtml: true });
      content.bodyText = `${parsed.text ?? ''}\n${typeof parsed.html === 'string' ? parsed.html.replace(/<[^>]*>/g, ' ') : ''}`;
      content.headerText = [...headers.entries()].map(([k, v]) => v.map((x) => `${k}: ${x}`).join('\n')).join('\n');
    }
  }

  #eval(key: SearchKey, rec: MessageRecord, seq: number, total: number, c: Content, recent: (uid: number) => boolean): boolean {
    switch (key.op) {
      case 'all':
        return true;
      case 'flag':
        return Boolean(rec.flags & key.bit) === key.set;
      case 'keyword':
        return rec.keywords.some((k) => lower(k) === lower(key.name)) === key.set;
      case 'recent':
        return recent(rec.uid) === key.set;
      case 'new':
        return recent(rec.uid) && !(rec.flags & FLAG_SEEN);
      case 'larger':
        return rec.vsize > key.size;
      case 'smaller':
        return rec.vsize < key.size;
      case 'before':
        return localDay(rec.internalDate) < key.day;
      case 'on':
        return localDay(rec.internalDate) === key.day;
      case 'since':
        return localDay(rec.internalDate) >= key.day;
      case 'sentbefore':
        return c.sentDay != null && c.sentDay < key.day;
      case 'senton':
        return c.sentDay != null && c.sentDay === key.day;
      case 'sentsince':
        return c.sentDay != null && c.sentDay >= key.day;
      case 'header': {
        const values = c.headers?.get(key.field);
        if (!values) return false;
        // HEADER field "" matches every message that has the field (RFC 3501).
        const needle = lower(key.value);
        return values.some((v) => lower(v).includes(needle));
      }
      case 'body':
        return lower(c.bodyText ?? '').includes(lower(key.value));
      case 'text':
        return lower(`${c.headerText ?? ''}\n${c.bodyText ?? ''}`).includes(lower(key.value));
      case 'uid':
        return key.ranges.some((r) => (r.from === Infinity ? this.#lastUid() : r.from) <= rec.uid && rec.uid <= (r.to === Infinity ? this.#lastUid() : r.to));
      case 'seq':
        return key.ranges.some((r) => (r.from === Infinity ? total : r.from) <= seq && seq <= (r.to === Infinity ? total : r.to));
      case 'modseq':
        return rec.modseq >= key.modseq;
      case 'not':
        return !this.#eval(key.key, rec, seq, total, c, recent);
      case 'or':
        return this.#eval(key.a, rec, seq, total, c, recent) || this.#eval(key.b, rec, seq, total, c, recent);
      case 'and':
        return key.keys.every((k) => this.#eval(k, rec, seq, total, c, recent));
    }
  }

  #lastUid(): number {
    const uids = this.#mailbox.uids;
    return uids[uids.length - 1] ?? 0;
  }
}

function needsDetails(key: SearchKey): boolean {
  switch (key.op) {
    case 'larger':
    case 'smaller':
    case 'before':
    case 'on':
    case 'since':
      return true;
    case 'not':
      return needsDetails(key.key);
    case 'or':
      return needsDetails(key.a) || needsDetails(key.b);
    case 'and':
      return key.keys.some(needsDetails);
    default:
      return false;
  }
}
