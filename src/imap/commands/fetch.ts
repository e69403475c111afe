/**
 * FETCH and UID FETCH (RFC 3501 section 6.4.5; CONDSTORE CHANGEDSINCE/MODSEQ and QRESYNC
 * VANISHED, RFC 7162). Items that need only the index (FLAGS, UID, sizes, dates) never open
 * a message file; a whole message (BODY[], RFC822) is streamed from its file; ENVELOPE,
 * BODYSTRUCTURE and sections parse the message once and cache the structure.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { lfToCrlf, type Mailbox } from '../../store/mail/mailbox.js';
import { FLAG_SEEN, type MessageRecord } from '../../store/mail/types.js';
import { SELECTED, type CommandResult, type ImapCommand } from '../command.js';
import { bodyStructure, envelope, extractSection, parseSectionSpec, parseStructure, type MimePart, type SectionSpec } from '../mime/index.js';
import { ParseError, atom, list, number64, type AtomToken, type ParsedCommand, type Token } from '../parser.js';
import { flagList } from '../selected.js';
import { formatSet, parseSequenceSet } from '../sequence.js';
import type { ImapSession } from '../session.js';
import { Atom, Literal, type ImapValue } from '../values.js';
import { StreamLiteral, type OutputPart } from '../writer.js';

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

/** The parsed form of one message, computed once per message per fetch (and cached). */
interface Loaded {
  data: Buffer;
  root: MimePart;
}

/** A small LRU of parsed structures: clients fetch ENVELOPE/BODYSTRUCTURE again and again. */
const structureCache = new Map<string, { envelope?: ImapValue; body?: ImapValue; bodystructure?: ImapValue }>();
const STRUCTURE_CACHE_MAX = 20_000;

function cached(mailbox: Mailbox, rec: MessageRecord) {
  const key = `${mailbox.dir}\u0000${rec.base}`;
  let entry = structureCache.get(key);
  if (entry) {
    structureCache.delete(key);
    structureCache.set(key, entry);
  } else {
    entry = {};
    structureCache.set(key, entry);
    if (structureCache.size > STRUCTURE_CACHE_MAX) structureCache.delete(structureCache.keys().next().value as string);
  }
  return entry;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** date-time as IMAP writes it: "22-Nov-2026 04:01:00 +0000" (RFC 3501 section 9). */
export function imapDate(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const a = Math.abs(off);
  return `${pad(d.getDate())}-${MONTHS[d.getMonth()]}-${d.getFullYear()} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${sign}${pad(Math.floor(a / 60))}${pad(a % 60)}`;
}

/**
 * A stored message as IMAP presents it: LF -> CRLF, and NUL -> 0x80, since a literal must not
 * contain NUL (RFC 3501 section 4.3; Dovecot does the same).
 */
class CrlfStream extends Transform {
  #lastCr = false;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const continuesCrlf = this.#lastCr && chunk[0] === 0x0a;
    let out = lfToCrlf(continuesCrlf ? chunk.subarray(1) : chunk);
    if (continuesCrlf) out = Buffer.concat([Buffer.from('\n'), out]);
    this.#lastCr = chunk[chunk.length - 1] === 0x0d;
    if (out.indexOf(0) !== -1) {
      if (out === chunk) out = Buffer.from(out);
      for (let i = out.indexOf(0); i !== -1; i = out.indexOf(0, i + 1)) out[i] = 0x80;
    }
    done(null, out);
  }
}

async function runFetch(session: ImapSession, command: ParsedCommand, uid: boolean): Promise<CommandResult> {
  const selected = session.selected!;
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
    session.condstore = true;
  }
  if (args.length > 3) throw new ParseError('too many arguments');
  if (items.some((i) => i.kind === 'MODSEQ')) session.condstore = true;
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
    const unseen = indexes.map((i) => selected.uids[i]!).filter((u) => {
      const rec = mailbox.record(u);
      return rec && !(rec.flags & FLAG_SEEN);
    });
    if (unseen.length) {
      const r = await mailbox.store(unseen, 'add', FLAG_SEEN, []);
      selected.noteOwn(r.changed, r.modseq);
      for (const u of r.changed) seenNow.add(u);
    }
  }
  const needDetails = items.some((i) => i.kind === 'INTERNALDATE' || i.kind === 'RFC822.SIZE' || i.kind === 'section');
  if (needDetails) await mailbox.ensureDetails(indexes.map((i) => selected.uids[i]!));

  const needParse = items.some((i) => i.kind === 'ENVELOPE' || i.kind === 'BODY' || i.kind === 'BODYSTRUCTURE' || (i.kind === 'section' && !isWholeMessage(i)));
  let missing = 0;
  for (const ix of indexes) {
    const u = selected.uids[ix]!;
    const rec = mailbox.record(u);
    if (!rec) {
      missing++;
      continue;
    }
    const parts = await fetchOne(session, mailbox, rec, items, needParse, seenNow.has(u));
    if (!parts) {
      missing++;
      continue;
    }
    await session.writer.write([new Atom(`* ${ix + 1} FETCH (`), ...parts, new Atom(')')]);
  }
  if (missing > 0 && missing === indexes.length && indexes.length > 0) {
    return { status: 'NO', code: 'EXPUNGEISSUED', text: 'Some messages were expunged' };
  }
  return {};
}

function isWholeMessage(item: Item): boolean {
  return item.kind === 'section' && item.spec.path.length === 0 && item.spec.text === undefined && item.partial === undefined;
}

async function fetchOne(session: ImapSession, mailbox: Mailbox, rec: MessageRecord, items: Item[], needParse: boolean, flagsChanged: boolean): Promise<OutputPart[] | undefined> {
  const out: OutputPart[] = [];
  let loaded: Loaded | undefined;
  const load = async (): Promise<Loaded | undefined> => {
    if (loaded) return loaded;
    let raw: Buffer;
    try {
      raw = await mailbox.read(rec.uid);
    } catch {
      return undefined;
    }
    const data = lfToCrlf(raw);
    loaded = { data, root: parseStructure(data) };
    return loaded;
  };
  const cache = cached(mailbox, rec);
  const add = (label: string, value: OutputPart) => {
    if (out.length) out.push(new Atom(' '));
    out.push(new Atom(`${label} `), value);
  };
  let flagsDone = false;
  for (const item of items) {
    switch (item.kind) {
      case 'UID':
        add('UID', rec.uid);
        break;
      case 'FLAGS':
        add('FLAGS', new Atom(flagList(rec)));
        flagsDone = true;
        break;
      case 'INTERNALDATE':
        add('INTERNALDATE', imapDate(rec.internalDate));
        break;
      case 'RFC822.SIZE':
        add('RFC822.SIZE', rec.vsize);
        break;
      case 'MODSEQ':
        add('MODSEQ', new Atom(`(${rec.modseq})`));
        break;
      case 'ENVELOPE':
      case 'BODY':
      case 'BODYSTRUCTURE': {
        const key = item.kind === 'ENVELOPE' ? 'envelope' : item.kind === 'BODY' ? 'body' : 'bodystructure';
        let value = cache[key];
        if (value === undefined) {
          const l = await load();
          if (!l) return undefined;
          value = item.kind === 'ENVELOPE' ? envelope(l.data, l.root) : bodyStructure(l.data, l.root, item.kind === 'BODYSTRUCTURE');
          cache[key] = value;
        }
        add(item.kind, value);
        break;
      }
      case 'section': {
        if (isWholeMessage(item) && !needParse) {
          const stream = await mailbox.openStream(rec.uid);
          if (!stream) return undefined;
          add(item.label, new StreamLiteral(rec.vsize, () => stream.pipe(new CrlfStream())));
          break;
        }
        const l = await load();
        if (!l) return undefined;
        let data = extractSection(l.data, l.root, item.spec);
        if (item.partial && data) {
          const start = Math.min(item.partial.start, data.length);
          data = data.subarray(start, item.partial.length === undefined ? undefined : start + item.partial.length);
        }
        // A section that does not exist is an empty string, as Dovecot answers.
        add(item.label, new Literal(data ?? Buffer.alloc(0)));
        break;
      }
    }
  }
  if (flagsChanged && !flagsDone) add('FLAGS', new Atom(flagList(rec)));
  if (session.condstore && !items.some((i) => i.kind === 'MODSEQ')) add('MODSEQ', new Atom(`(${rec.modseq})`));
  return out;
}

export const fetch: ImapCommand = { name: 'FETCH', states: SELECTED, run: (s, c) => runFetch(s, c, false) };
export const uidFetch: ImapCommand = { name: 'UID FETCH', states: SELECTED, run: (s, c) => runFetch(s, c, true) };
