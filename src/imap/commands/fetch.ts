/**
 * FETCH and UID FETCH (RFC 3501 section 6.4.5; CONDSTORE CHANGEDSINCE/MODSEQ and QRESYNC
 * VANISHED, RFC 7162). Items that need only the index (FLAGS, UID, sizes, dates) never open
 * a message file; a whole message (BODY[], RFC822) is streamed from its file; ENVELOPE, BODY
 * and BODYSTRUCTURE come from the mailbox's metadata cache (message-cache.ts), encoded once
 * when the message was first parsed; sections parse the message.
 */
import { pipeline, Transform, type TransformCallback } from 'node:stream';
import { SMALL_FILE, type Mailbox } from '../../store/mail/mailbox.js';
import { lfToCrlf } from '../../store/line-ends.js';
import { FLAG_SEEN, type MessageRecord } from '../../store/mail/types.js';
import { SELECTED, type CommandResult, type ImapCommand, type Selected } from '../command.js';
import { CACHE_SCHEMA, FIELD_BODY, FIELD_BODYSTRUCTURE, FIELD_ENVELOPE, cacheFields } from '../message-cache.js';
import { extractSection, parseSectionSpec, parseStructure, type MimePart, type SectionSpec } from '../mime/index.js';
import { ParseError, atom, list, number64, type AtomToken, type ParsedCommand, type Token } from '../parser.js';
import { flagList } from '../selected.js';
import { formatSet, parseSequenceSet } from '../sequence.js';
import type { ImapSession } from '../session.js';
import { Atom, Literal, Raw, encodeValue, quote, type ImapValue } from '../values.js';
import { StreamLiteral, type OutputPart } from '../writer.js';
import { MONTHS } from '../args.js';

type Item =
  | { kind: 'UID' | 'FLAGS' | 'INTERNALDATE' | 'RFC822.SIZE' | 'ENVELOPE' | 'BODY' | 'BODYSTRUCTURE' | 'MODSEQ' }
  | { kind: 'section'; name: string; spec: SectionSpec; peek: boolean; partial?: { start: number; length?: number }; label: string };

const MACROS: Record<string, string[]> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
};

function parseItem(t: Token): Item {
  if (t.type !== 'atom') throw new ParseError('fetch attribute expected');
  const upper = t.value.toUpperCase();
  if (t.section !== undefined) return sectionItem(t);
  switch (upper) {
    case 'UID':
    case 'FLAGS':
    case 'INTERNALDATE':
    case 'RFC822.SIZE':
    case 'ENVELOPE':
    case 'BODY':
    case 'BODYSTRUCTURE':
    case 'MODSEQ':
      return { kind: upper };
    case 'RFC822':
      return { kind: 'section', name: 'RFC822', spec: { path: [] }, peek: false, label: 'RFC822' };
    case 'RFC822.HEADER':
      return { kind: 'section', name: 'RFC822.HEADER', spec: { path: [], text: 'HEADER' }, peek: true, label: 'RFC822.HEADER' };
    case 'RFC822.TEXT':
      return { kind: 'section', name: 'RFC822.TEXT', spec: { path: [], text: 'TEXT' }, peek: false, label: 'RFC822.TEXT' };
    default:
      throw new ParseError(`unknown fetch attribute ${upper.slice(0, 30)}`);
  }
}

function sectionItem(t: AtomToken): Item {
  const of = t.sectionOf!;
  if (of !== 'BODY' && of !== 'BODY.PEEK') throw new ParseError(`unsupported fetch attribute ${of.slice(0, 30)}`);
  const spec = parseSectionSpec(t.section!);
  if (!spec) throw new ParseError(`invalid section [${t.section!.slice(0, 60)}]`);
  // The response names the section as BODY[...]<start> (RFC 3501 section 7.4.2).
  const label = `BODY[${t.section!}]${t.partial ? `<${t.partial.start}>` : ''}`;
  return { kind: 'section', name: of, spec, peek: of === 'BODY.PEEK', ...(t.partial ? { partial: t.partial } : {}), label };
}

/** The parsed form of one message, computed at most once per message per fetch. */
interface Loaded {
  /** As stored (LF line ends). */
  raw: Buffer;
  /** CRLF, as IMAP sees it. */
  data: Buffer;
  root: MimePart;
}

const CACHED_ITEMS = { ENVELOPE: FIELD_ENVELOPE, BODY: FIELD_BODY, BODYSTRUCTURE: FIELD_BODYSTRUCTURE } as const;

/**
 * What an item of a message that another session expunged says when its data is gone with the
 * file: RFC 2180 section 4.1 lets the server answer FETCH of such a message; these are Dovecot's
 * values for it (imap-fetch.c, the nil_reply of each item), so clients see what they see there.
 * Flags, UID, sizes and cached ENVELOPE/BODYSTRUCTURE still come from the last known record.
 */
const EXPUNGED_NIL = {
  ENVELOPE: '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
  BODY: '("text" "plain" NIL NIL NIL "7bit" 0 0)',
  BODYSTRUCTURE: '("text" "plain" NIL NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
  INTERNALDATE: '"01-Jan-1970 00:00:00 +0000"',
  'RFC822.SIZE': '0',
  section: 'NIL',
} as const;

/** The tagged OK of a FETCH that met expunged messages (Dovecot's words). */
const EXPUNGE_ISSUED: CommandResult = { code: 'EXPUNGEISSUED', text: 'Some messages were already expunged.' };

/** A message of the view of which nothing is known any more. */
function unknownRecord(uid: number, modseq: number): MessageRecord {
  return { uid, base: '', name: '', inNew: false, flags: 0, keywords: [], modseq, size: -1, vsize: -1, internalDate: -1 };
}

/** Bytes of FETCH responses gathered before they go to the writer. */
const BATCH_BYTES = 64 * 1024;

/**
 * FETCH responses encoded here and handed to the writer in batches: a listing of a large
 * mailbox is a hundred thousand short responses, and a socket write per response part would
 * cost more than the responses themselves. Responses with a streamed literal go on their own.
 */
class ResponseBatch {
  readonly #session: ImapSession;
  #buffers: Buffer[] = [];
  #text = '';
  #bytes = 0;

  constructor(session: ImapSession) {
    this.#session = session;
  }

  get full(): boolean {
    return this.#bytes >= BATCH_BYTES;
  }

  add(parts: ImapValue[]): void {
    const out: Array<string | Buffer> = [];
    for (const p of parts) encodeValue(p, out, this.#session.writer.utf8);
    for (const o of out) {
      if (typeof o === 'string') {
        this.#text += o;
      } else {
        if (this.#text) this.#buffers.push(Buffer.from(this.#text, 'utf8'));
        this.#text = '';
        this.#buffers.push(o);
      }
      this.#bytes += o.length;
    }
    this.#text += '\r\n';
    this.#bytes += 2;
  }

  async flush(): Promise<void> {
    if (this.#bytes === 0) return;
    if (this.#text) this.#buffers.push(Buffer.from(this.#text, 'utf8'));
    const data = Buffer.concat(this.#buffers);
    this.#buffers = [];
    this.#text = '';
    this.#bytes = 0;
    // The writer ends the line itself.
    await this.#session.writer.write([new Raw(data.subarray(0, data.length - 2))]);
  }
}

/** date-time as IMAP writes it: "22-Nov-2026 04:01:00 +0000" (RFC 3501 section 9). */
function imapDate(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const a = Math.abs(off);
  return `${pad(d.getDate())}-${MONTHS[d.getMonth()]}-${d.getFullYear()} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${sign}${pad(Math.floor(a / 60))}${pad(a % 60)}`;
}

/** A stored message (or a chunk of one) as IMAP presents it: LF -> CRLF, NUL -> 0x80. */
function imapBody(raw: Buffer): Buffer {
  let out = lfToCrlf(raw);
  if (out.indexOf(0) !== -1) {
    if (out === raw) out = Buffer.from(out);
    for (let i = out.indexOf(0); i !== -1; i = out.indexOf(0, i + 1)) out[i] = 0x80;
  }
  return out;
}

/**
 * A stored message as IMAP presents it: LF -> CRLF, and NUL -> 0x80, since a literal must not
 * contain NUL (RFC 3501 section 4.3; Dovecot does the same).
 */
class CrlfStream extends Transform {
  #lastCr = false;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const continuesCrlf = this.#lastCr && chunk[0] === 0x0a;
    let out = imapBody(continuesCrlf ? chunk.subarray(1) : chunk);
    if (continuesCrlf) out = Buffer.concat([Buffer.from('\n'), out]);
    this.#lastCr = chunk[chunk.length - 1] === 0x0d;
    done(null, out);
  }
}

async function runFetch(
  session: ImapSession,
  command: ParsedCommand,
  { mailbox: selected }: Selected,
  uid: boolean,
): Promise<CommandResult> {
  const mailbox = selected.mailbox;
  const args = command.args;
  if (args.length < 2) throw new ParseError('FETCH needs a sequence set and items');
  const ranges = parseSequenceSet(atom(args[0], 'sequence set'));
  const itemTokens = args[1]!.type === 'list' ? args[1]!.items : [args[1]!];
  let items: Item[] = [];
  if (itemTokens.length === 1 && itemTokens[0]!.type === 'atom' && MACROS[itemTokens[0]!.value.toUpperCase()]) {
    items = MACROS[itemTokens[0]!.value.toUpperCase()]!.map((k) => parseItem({ type: 'atom', value: k }));
  } else {
    if (itemTokens.length === 0) throw new ParseError('fetch attributes expected');
    items = itemTokens.map(parseItem);
  }
  let changedSince: number | undefined;
  let vanished = false;
  if (args[2]) {
    // RFC 7162 section 3.1.4: (CHANGEDSINCE modseq [VANISHED])
    const mods = list(args[2], 'fetch modifiers');
    for (let i = 0; i < mods.length; i++) {
      const name = atom(mods[i], 'fetch modifier').toUpperCase();
      if (name === 'CHANGEDSINCE') changedSince = Number(number64(mods[++i], 'CHANGEDSINCE'));
      else if (name === 'VANISHED') vanished = true;
      else throw new ParseError(`unknown fetch modifier ${name.slice(0, 30)}`);
    }
    if (vanished && (!uid || changedSince === undefined || !session.enabled.has('QRESYNC'))) {
      throw new ParseError('VANISHED needs UID FETCH, CHANGEDSINCE and an enabled QRESYNC');
    }
    session.enableCondstore();
  }
  if (args.length > 3) throw new ParseError('too many arguments');
  if (items.some((i) => i.kind === 'MODSEQ')) session.enableCondstore();
  if (session.condstore && !items.some((i) => i.kind === 'MODSEQ') && changedSince !== undefined) items.push({ kind: 'MODSEQ' });
  if ((uid || session.enabled.has('QRESYNC')) && !items.some((i) => i.kind === 'UID')) items.unshift({ kind: 'UID' });

  let indexes = selected.select(ranges, uid);
  if (vanished) {
    const gone = (mailbox.expungedSince(changedSince!) ?? []).filter((u) => ranges.some((r) => u >= r.from && u <= r.to));
    if (gone.length) session.writer.untagged(`VANISHED (EARLIER) ${formatSet(gone)}`);
  }
  if (changedSince !== undefined) indexes = indexes.filter((i) => (mailbox.record(selected.uids[i]!)?.modseq ?? 0) > changedSince!);

  // Reading a body part without PEEK sets \Seen (RFC 3501 section 6.4.5); those messages' FLAGS
  // go into the response.
  const seenNow = new Set<number>();
  const setsSeen = !selected.readOnly && items.some((i) => i.kind === 'section' && !i.peek);
  if (setsSeen) {
    const unseen = indexes
      .map((i) => selected.uids[i]!)
      .filter((u) => {
        const rec = mailbox.record(u);
        return rec && !(rec.flags & FLAG_SEEN);
      });
    if (unseen.length) {
      const r = await mailbox.store(unseen, 'add', FLAG_SEEN, []);
      selected.noteOwn(r.changed, r.modseq);
      for (const u of r.changed) seenNow.add(u);
    }
  }
  // Keywords another session just set are in FLAGS before a FETCH shows them (RFC 3501 section 7.2.6).
  if (setsSeen || items.some((i) => i.kind === 'FLAGS')) selected.announceKeywords(session.writer);
  const needDetails = items.some((i) => i.kind === 'INTERNALDATE' || i.kind === 'RFC822.SIZE' || i.kind === 'section');
  if (needDetails) await mailbox.ensureDetails(indexes.map((i) => selected.uids[i]!));

  const needCache = items.some((i) => i.kind === 'ENVELOPE' || i.kind === 'BODY' || i.kind === 'BODYSTRUCTURE');
  const needParse = needCache || items.some((i) => i.kind === 'section' && !isWholeMessage(i));
  if (needCache && indexes.length > 0) await mailbox.loadCache(CACHE_SCHEMA);
  const plan: FetchPlan = {
    mailbox,
    items,
    needParse,
    addModseq: session.condstore && !items.some((i) => i.kind === 'MODSEQ'),
    recent: (u) => selected.isRecent(u),
    expungeIssued: false,
  };
  // Messages another session expunged keep their place in this view until the expunge is
  // announced; they are answered from their last record (RFC 2180 section 4.1, as Dovecot does).
  const recordOf = (u: number): MessageRecord => {
    const rec = selected.record(u);
    if (rec) return rec;
    plan.expungeIssued = true;
    return unknownRecord(u, mailbox.highestModseq);
  };
  if (items.every((i) => INDEX_ITEMS.has(i.kind))) {
    // Only what the index knows (UID, FLAGS, sizes, dates, MODSEQ), the whole-mailbox listing
    // of every client: each response is one string, no object per message, 64 KB per write.
    let chunk = '';
    for (const ix of indexes) {
      const u = selected.uids[ix]!;
      const rec = recordOf(u);
      chunk += `${chunk ? '\r\n' : ''}* ${ix + 1} FETCH (${indexItems(plan, rec, seenNow.has(u))})`;
      if (chunk.length >= BATCH_BYTES) {
        await session.writer.write([new Atom(chunk)]);
        chunk = '';
      }
    }
    if (chunk) await session.writer.write([new Atom(chunk)]);
    return plan.expungeIssued ? EXPUNGE_ISSUED : {};
  }
  const batch = new ResponseBatch(session);
  const streams = !needParse && items.some(isWholeMessage);
  // Whole small messages are read ahead, READ_AHEAD files at once: one file at a time leaves
  // the loop waiting on the thread pool (open, read, close) for every message.
  const ahead = new Map<number, Promise<Buffer | undefined>>();
  let next = 0;
  try {
    for (let k = 0; k < indexes.length; k++) {
      const ix = indexes[k]!;
      const u = selected.uids[ix]!;
      if (streams) {
        for (; next < indexes.length && next <= k + READ_AHEAD; next++) {
          const nu = selected.uids[indexes[next]!]!;
          const r = mailbox.record(nu);
          if (r && r.size >= 0 && r.size <= SMALL_FILE)
            ahead.set(
              nu,
              mailbox.read(nu).catch(() => undefined),
            );
        }
      }
      const body = ahead.get(u);
      ahead.delete(u);
      const response = await fetchOne(plan, recordOf(u), ix + 1, seenNow.has(u), body);
      if (streams) {
        await batch.flush();
        await session.writer.write(response);
      } else {
        batch.add(response as ImapValue[]);
        if (batch.full) await batch.flush();
      }
    }
    await batch.flush();
  } catch (err) {
    // What was answered before the failure still goes out, ahead of the tagged reply.
    await batch.flush().catch(() => undefined);
    throw err;
  } finally {
    // What this command parsed goes to the cache in one write.
    if (needCache) await mailbox.flushCache();
  }
  return plan.expungeIssued ? EXPUNGE_ISSUED : {};
}

function isWholeMessage(item: Item): boolean {
  return item.kind === 'section' && item.spec.path.length === 0 && item.spec.text === undefined && item.partial === undefined;
}

/** What every message of one FETCH shares. */
interface FetchPlan {
  mailbox: Mailbox;
  items: Item[];
  needParse: boolean;
  /** MODSEQ goes into every response without being asked for (CONDSTORE, RFC 7162 3.1.4). */
  addModseq: boolean;
  /** Whether a message is \Recent for this session (its FLAGS say so). */
  recent: (uid: number) => boolean;
  /** Set when an expunged message's data was gone: the tagged OK says EXPUNGEISSUED. */
  expungeIssued: boolean;
}

/**
 * One message's FETCH response: plain items are gathered as text, what the message file or the
 * cache gives is read at most once. (A class rather than closures: this runs for every message
 * of a listing.)
 */
class MessageFetch {
  readonly #plan: FetchPlan;
  readonly #rec: MessageRecord;
  readonly #out: OutputPart[] = [];
  #text: string;
  #first = true;
  #loaded: Loaded | undefined;
  #fields: Map<number, Buffer> | undefined;

  constructor(plan: FetchPlan, rec: MessageRecord, seq: number) {
    this.#plan = plan;
    this.#rec = rec;
    this.#text = `* ${seq} FETCH (`;
  }

  /** `label text`, text in wire form. */
  addText(label: string, text: string): void {
    this.#text += this.#first ? `${label} ${text}` : ` ${label} ${text}`;
    this.#first = false;
  }

  addValue(label: string, value: OutputPart): void {
    this.addText(label, '');
    this.#out.push(new Atom(this.#text), value);
    this.#text = '';
  }

  finish(): OutputPart[] {
    this.#out.push(new Atom(`${this.#text})`));
    return this.#out;
  }

  /** The message, parsed (undefined when it is gone). */
  async load(): Promise<Loaded | undefined> {
    if (this.#loaded) return this.#loaded;
    let raw: Buffer;
    try {
      raw = await this.#plan.mailbox.read(this.#rec.uid);
    } catch {
      return undefined;
    }
    const data = lfToCrlf(raw);
    this.#loaded = { raw, data, root: parseStructure(data) };
    return this.#loaded;
  }

  /** A cached field; on a miss the message is parsed once and every field cached. */
  async cachedField(id: number): Promise<Buffer | undefined> {
    const mailbox = this.#plan.mailbox;
    const hit = this.#fields ? this.#fields.get(id) : mailbox.cached(this.#rec.uid)?.field(id);
    if (hit) return hit;
    const l = await this.load();
    if (!l) return undefined;
    const fields = cacheFields(l.raw, l.data, l.root);
    this.#fields = new Map(fields);
    if (mailbox.putCached(this.#rec.uid, fields)) await mailbox.flushCache();
    return this.#fields.get(id);
  }
}

const INDEX_ITEMS = new Set<Item['kind']>(['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'MODSEQ']);

/** INTERNALDATE's value; unknown only for an expunged message never looked at. */
function internalDate(plan: FetchPlan, rec: MessageRecord): string {
  if (rec.internalDate >= 0) return quote(imapDate(rec.internalDate));
  plan.expungeIssued = true;
  return EXPUNGED_NIL.INTERNALDATE;
}

function rfc822Size(plan: FetchPlan, rec: MessageRecord): string {
  if (rec.vsize >= 0) return String(rec.vsize);
  plan.expungeIssued = true;
  return EXPUNGED_NIL['RFC822.SIZE'];
}

/** The FETCH data of index-only items, as fetchOne writes them. */
function indexItems(plan: FetchPlan, rec: MessageRecord, flagsChanged: boolean): string {
  let out = '';
  let flagsDone = false;
  const flags = () => flagList(rec, plan.recent(rec.uid));
  for (const item of plan.items) {
    if (out) out += ' ';
    switch (item.kind) {
      case 'UID':
        out += `UID ${rec.uid}`;
        break;
      case 'FLAGS':
        out += `FLAGS ${flags()}`;
        flagsDone = true;
        break;
      case 'INTERNALDATE':
        out += `INTERNALDATE ${internalDate(plan, rec)}`;
        break;
      case 'RFC822.SIZE':
        out += `RFC822.SIZE ${rfc822Size(plan, rec)}`;
        break;
      case 'MODSEQ':
        out += `MODSEQ (${rec.modseq})`;
        break;
    }
  }
  if (flagsChanged && !flagsDone) out += `${out ? ' ' : ''}FLAGS ${flags()}`;
  if (plan.addModseq) out += `${out ? ' ' : ''}MODSEQ (${rec.modseq})`;
  return out;
}

const READ_AHEAD = 16;

async function fetchOne(
  plan: FetchPlan,
  rec: MessageRecord,
  seq: number,
  flagsChanged: boolean,
  body?: Promise<Buffer | undefined>,
): Promise<OutputPart[]> {
  const m = new MessageFetch(plan, rec, seq);
  let flagsDone = false;
  // The file is gone (expunged by another session or process): the item's nil value.
  const gone = (label: string, nil: string) => {
    plan.expungeIssued = true;
    m.addText(label, nil);
  };
  for (const item of plan.items) {
    switch (item.kind) {
      case 'UID':
        m.addText('UID', String(rec.uid));
        break;
      case 'FLAGS':
        m.addText('FLAGS', flagList(rec, plan.recent(rec.uid)));
        flagsDone = true;
        break;
      case 'INTERNALDATE':
        m.addText('INTERNALDATE', internalDate(plan, rec));
        break;
      case 'RFC822.SIZE':
        m.addText('RFC822.SIZE', rfc822Size(plan, rec));
        break;
      case 'MODSEQ':
        m.addText('MODSEQ', `(${rec.modseq})`);
        break;
      case 'ENVELOPE':
      case 'BODY':
      case 'BODYSTRUCTURE': {
        const value = await m.cachedField(CACHED_ITEMS[item.kind]);
        if (value) m.addValue(item.kind, new Raw(value));
        else gone(item.kind, EXPUNGED_NIL[item.kind]);
        break;
      }
      case 'section': {
        if (isWholeMessage(item) && !plan.needParse && body) {
          const raw = await body;
          if (raw) m.addValue(item.label, new Literal(imapBody(raw)));
          else gone(item.label, EXPUNGED_NIL.section);
          break;
        }
        if (isWholeMessage(item) && !plan.needParse) {
          const stream = rec.vsize >= 0 ? await plan.mailbox.openStream(rec.uid) : undefined;
          if (!stream) {
            gone(item.label, EXPUNGED_NIL.section);
            break;
          }
          m.addValue(item.label, new StreamLiteral(rec.vsize, () => pipeline(stream, new CrlfStream(), () => undefined)));
          break;
        }
        const l = await m.load();
        if (!l) {
          gone(item.label, EXPUNGED_NIL.section);
          break;
        }
        let data = extractSection(l.data, l.root, item.spec);
        if (item.partial && data) {
          const start = Math.min(item.partial.start, data.length);
          data = data.subarray(start, item.partial.length === undefined ? undefined : start + item.partial.length);
        }
        // A section that does not exist is an empty string, as Dovecot answers.
        m.addValue(item.label, new Literal(data ?? Buffer.alloc(0)));
        break;
      }
    }
  }
  if (flagsChanged && !flagsDone) m.addText('FLAGS', flagList(rec, plan.recent(rec.uid)));
  if (plan.addModseq) m.addText('MODSEQ', `(${rec.modseq})`);
  return m.finish();
}

export const fetch: ImapCommand<Selected> = { name: 'FETCH', states: SELECTED, run: (s, c, st) => runFetch(s, c, st, false) };
export const uidFetch: ImapCommand<Selected> = { name: 'UID FETCH', states: SELECTED, run: (s, c, st) => runFetch(s, c, st, true) };
