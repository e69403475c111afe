/**
 * SEARCH criteria (RFC 3501 section 6.4.4; RFC 9051 section 6.4.4; CONDSTORE MODSEQ, RFC 7162
 * section 3.1.5): parsed into a tree, evaluated per message. A message is first judged on what
 * the index knows (flags, sizes, dates, UIDs); only when the answer still depends on its content
 * is that loaded: the usual header keys (FROM, TO, CC, BCC, SUBJECT, SENT*, HEADER of the fields
 * in message-cache.ts) from the metadata cache, other HEADER keys from the header alone (its
 * length is cached), BODY and TEXT from the whole file. A cache miss parses the file once and
 * fills the cache.
 */
import { simpleParser } from 'mailparser';
import type { Mailbox } from '../store/mail/mailbox.js';
import { lfToCrlf } from '../store/line-ends.js';
import { FLAG_ANSWERED, FLAG_DELETED, FLAG_DRAFT, FLAG_FLAGGED, FLAG_SEEN, type MessageRecord } from '../store/mail/types.js';
import {
  CACHED_HEADERS,
  CACHE_SCHEMA,
  FIELD_SEARCH,
  SearchMeta,
  addressKey,
  cacheFields,
  decodedHeaders,
  isCachedHeader,
} from './message-cache.js';
import { parseStructure } from './mime/index.js';
import { ParseError, astring, atom, number, number64, type Token } from './parser.js';
import { parseSequenceSet, selectIndexes, type SeqRange } from './sequence.js';
import { monthIndex } from './args.js';

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

const MAX_DEPTH = 32;

/** date (RFC 3501 section 9): 1-Feb-1994, possibly quoted; as a day number (UTC days). */
function parseDay(t: Token | undefined): number {
  const text = astring(t, 'date');
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
  const month = m ? monthIndex(m[2]!) : -1;
  if (!m || month < 0) throw new ParseError('invalid date');
  return Math.floor(Date.UTC(Number(m[3]), month, Number(m[1])) / 86_400_000);
}

/** The calendar day of a timestamp, "disregarding time and timezone" as the server sees it. */
function localDay(ms: number): number {
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
        // The addresses without comments and the display names, as Dovecot compares them
        // (RFC 5322 section 3.4.1: CFWS is not part of an address); HEADER FROM sees the field as is.
        return { op: 'header', field: addressKey(name.toLowerCase()), value: str() };
      case 'SUBJECT':
        return { op: 'header', field: name.toLowerCase(), value: str() };
      case 'HEADER': {
        const field = str().toLowerCase();
        const value = str();
        // No field name has a colon (RFC 5322 section 2.2): such a key matches nothing (and
        // never the address forms kept under "address:from").
        return field.includes(':') ? { op: 'not', key: { op: 'all' } } : { op: 'header', field, value };
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

/** What the criteria read beyond the index. */
interface Needs {
  /** Header fields or the sent date. */
  headers: boolean;
  /** A header field the cache does not hold. */
  uncached: boolean;
  /** The header fields named (lower case). */
  fields: Set<string>;
  /** The body (BODY, TEXT). */
  body: boolean;
}

function analyze(key: SearchKey, n: Needs): Needs {
  switch (key.op) {
    case 'header':
      n.headers = true;
      n.fields.add(key.field);
      if (!isCachedHeader(key.field)) n.uncached = true;
      break;
    case 'sentbefore':
    case 'senton':
    case 'sentsince':
      n.headers = true;
      n.fields.add('date');
      break;
    case 'body':
    case 'text':
      n.body = true;
      break;
    case 'not':
      analyze(key.key, n);
      break;
    case 'or':
      analyze(key.a, n);
      analyze(key.b, n);
      break;
    case 'and':
      for (const k of key.keys) analyze(k, n);
      break;
    default:
      break;
  }
  return n;
}

interface Content {
  /** Every top-level header field, decoded (when the message or its header was read). */
  headers?: Map<string, string[]>;
  /** The cached fields (when nothing else was needed). */
  meta?: SearchMeta;
  sentDay?: number | null;
  bodyText?: string;
  headerText?: string;
}

const NO_CONTENT: Content = {};
const lower = (s: string) => s.toLowerCase();

function headerValues(c: Content, field: string): string[] | undefined {
  if (c.headers) return c.headers.get(field);
  return c.meta?.values(field);
}

/**
 * The day a Date header names, as written: RFC 3501 section 6.4.4 compares SENTBEFORE, SENTON and
 * SENTSINCE "disregarding time and timezone", so "25 Mar 2007 23:00 -0700" is 25-Mar-2007 (as
 * Dovecot reads it). RFC 5322 section 3.3 date (two- and three-digit years per section 4.3);
 * other forms Date.parse knows give their UTC day; null when nothing parses.
 */
function writtenDay(date: string): number | null {
  const m = /(?:^|[\s,(])(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})(?=\s|$)/.exec(date);
  const month = m ? monthIndex(m[2]!) : -1;
  if (m && month >= 0) {
    const day = Number(m[1]);
    let year = Number(m[3]);
    if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900;
    else if (m[3]!.length === 3) year += 1900;
    if (day >= 1 && day <= 31) return Math.floor(Date.UTC(year, month, day) / 86_400_000);
  }
  const ms = Date.parse(date);
  return Number.isFinite(ms) ? Math.floor(ms / 86_400_000) : null;
}

/** The day of the first Date header, or null when it has none or it does not parse. */
function sentDay(c: Content): number | null {
  if (c.sentDay === undefined) {
    const date = headerValues(c, 'date')?.[0];
    c.sentDay = date ? writtenDay(date) : null;
  }
  return c.sentDay;
}

/** Evaluates the criteria for the messages of a view. */
export class SearchRunner {
  readonly #mailbox: Mailbox;
  readonly #key: SearchKey;
  readonly #needs: Needs;
  readonly #decodeOnly: ReadonlySet<string>;
  /** The view indexes each UID or sequence-set key selects (exactly as FETCH selects them). */
  #sets = new Map<SearchKey, Set<number>>();

  constructor(mailbox: Mailbox, key: SearchKey) {
    this.#mailbox = mailbox;
    this.#key = key;
    this.#needs = analyze(key, { headers: false, uncached: false, body: false, fields: new Set() });
    this.#decodeOnly = new Set([...CACHED_HEADERS, ...this.#needs.fields]);
  }

  /** Indexes (into viewUids) of matching messages. */
  async run(viewUids: readonly number[], recent: (uid: number) => boolean): Promise<number[]> {
    const out: number[] = [];
    this.#sets = new Map();
    const collect = (key: SearchKey): void => {
      if (key.op === 'uid' || key.op === 'seq') this.#sets.set(key, new Set(selectIndexes(key.ranges, viewUids, key.op === 'uid')));
      else if (key.op === 'not') collect(key.key);
      else if (key.op === 'or') {
        collect(key.a);
        collect(key.b);
      } else if (key.op === 'and') key.keys.forEach(collect);
    };
    collect(this.#key);
    if (needsDetails(this.#key)) await this.#mailbox.ensureDetails(viewUids);
    // BODY and TEXT read every file anyway; the cache serves searches of header fields.
    const useCache = this.#needs.headers && !this.#needs.body;
    if (useCache) await this.#mailbox.loadCache(CACHE_SCHEMA);
    try {
      for (let i = 0; i < viewUids.length; i++) {
        const rec = this.#mailbox.record(viewUids[i]!);
        if (!rec) continue;
        const known = this.#indexOnly(this.#key, rec, i + 1, viewUids.length, recent);
        if (known !== undefined) {
          if (known) out.push(i);
          continue;
        }
        const content: Content = {};
        try {
          await this.#load(rec, content, useCache);
        } catch {
          continue; // vanished meanwhile
        }
        if (this.#eval(this.#key, rec, i + 1, viewUids.length, content, recent)) out.push(i);
      }
    } finally {
      if (useCache) await this.#mailbox.flushCache();
    }
    return out;
  }

  async #load(rec: MessageRecord, content: Content, useCache: boolean): Promise<void> {
    if (useCache) {
      const cached = this.#mailbox.cached(rec.uid)?.field(FIELD_SEARCH);
      const meta = cached && SearchMeta.from(cached);
      if (meta) {
        if (!this.#needs.uncached) {
          content.meta = meta;
          return;
        }
        // Other header fields: the header is enough, and the cache knows where it ends.
        const head = lfToCrlf(await this.#mailbox.readHead(rec.uid, meta.headerBytes));
        content.headers = decodedHeaders(head, parseStructure(head), this.#needs.fields);
        return;
      }
    }
    const raw = await this.#mailbox.read(rec.uid);
    const data = lfToCrlf(raw);
    const root = parseStructure(data);
    // TEXT looks at every field; otherwise those asked for and those the cache keeps are enough.
    const headers = decodedHeaders(data, root, this.#needs.body ? undefined : this.#decodeOnly);
    content.headers = headers;
    if (useCache && this.#mailbox.putCached(rec.uid, cacheFields(raw, data, root, headers))) await this.#mailbox.flushCache();
    if (this.#needs.body) {
      const parsed = await simpleParser(data, { skipImageLinks: true, skipTextToHtml: true });
      content.bodyText = `${parsed.text ?? ''}\n${typeof parsed.html === 'string' ? parsed.html.replace(/<[^>]*>/g, ' ') : ''}`;
      content.headerText = [...headers.entries()]
        .filter(([k]) => !k.includes(':'))
        .map(([k, v]) => v.map((x) => `${k}: ${x}`).join('\n'))
        .join('\n');
    }
  }

  /** The answer from the index alone, or undefined when it depends on the message's content. */
  #indexOnly(key: SearchKey, rec: MessageRecord, seq: number, total: number, recent: (uid: number) => boolean): boolean | undefined {
    switch (key.op) {
      case 'header':
      case 'sentbefore':
      case 'senton':
      case 'sentsince':
      case 'body':
      case 'text':
        return undefined;
      case 'not': {
        const v = this.#indexOnly(key.key, rec, seq, total, recent);
        return v === undefined ? undefined : !v;
      }
      case 'or': {
        const a = this.#indexOnly(key.a, rec, seq, total, recent);
        if (a === true) return true;
        const b = this.#indexOnly(key.b, rec, seq, total, recent);
        if (b === true) return true;
        return a === undefined || b === undefined ? undefined : false;
      }
      case 'and': {
        let unknown = false;
        for (const k of key.keys) {
          const v = this.#indexOnly(k, rec, seq, total, recent);
          if (v === false) return false;
          if (v === undefined) unknown = true;
        }
        return unknown ? undefined : true;
      }
      default:
        return this.#eval(key, rec, seq, total, NO_CONTENT, recent);
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
      case 'sentbefore': {
        const day = sentDay(c);
        return day !== null && day < key.day;
      }
      case 'senton': {
        const day = sentDay(c);
        return day !== null && day === key.day;
      }
      case 'sentsince': {
        const day = sentDay(c);
        return day !== null && day >= key.day;
      }
      case 'header': {
        const values = headerValues(c, key.field);
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
      case 'seq':
        return this.#sets.get(key)?.has(seq - 1) ?? false;
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
