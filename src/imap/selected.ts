/**
 * The selected mailbox as one session sees it: its own sequence numbering (a UID list), and
 * the changes other sessions made that it still has to announce. Changes are announced only
 * where RFC 3501 section 7.4.1 allows (no EXPUNGE during FETCH, STORE or SEARCH; VANISHED under
 * QRESYNC, RFC 7162 section 3.2.10), and never twice for the session's own STOREs.
 */
import type { Mailbox } from '../store/mail/mailbox.js';
import type { MailboxChange, MessageRecord } from '../store/mail/types.js';
import { SYSTEM_FLAGS } from '../store/mail/types.js';
import { formatSet, selectIndexes, type SeqRange } from './sequence.js';
import type { ImapSession } from './session.js';
import type { ImapWriter } from './writer.js';

/** The FLAGS text of each set of system flags alone (the common case: no keyword, not \Recent). */
const systemFlagLists = new Map<number, string>();

/** FLAGS (...) text for a message. */
export function flagList(rec: MessageRecord, recent = false): string {
  if (!recent && rec.keywords.length === 0) {
    let text = systemFlagLists.get(rec.flags);
    if (text === undefined) {
      text = `(${SYSTEM_FLAGS.filter(([bit]) => rec.flags & bit)
        .map(([, name]) => name)
        .join(' ')})`;
      systemFlagLists.set(rec.flags, text);
    }
    return text;
  }
  const out: string[] = [];
  for (const [bit, name] of SYSTEM_FLAGS) if (rec.flags & bit) out.push(name);
  if (recent) out.push('\\Recent');
  out.push(...rec.keywords);
  return `(${out.join(' ')})`;
}

export class SelectedMailbox {
  readonly mailbox: Mailbox;
  readonly name: string;
  readonly readOnly: boolean;
  /** This session's view: UIDs in sequence order. */
  uids: number[];
  #knownModseq: number;
  readonly #pendingExpunged = new Set<number>();
  readonly #pendingFlagged = new Set<number>();
  /** UID -> MODSEQ of changes this session already answered with FETCH. */
  readonly #own = new Map<number, number>();
  readonly #listener: (change: MailboxChange) => void;
  readonly #release: () => void;
  /** The keywords this session was told of in FLAGS (RFC 3501 section 7.2.6). */
  #announcedKeywords = new Set<string>();
  /**
   * The messages of the view that are \Recent for this session (RFC 3501 section 2.3.2): those
   * it claimed from the mailbox when it selected it or saw them arrive. A read-only view (EXAMINE,
   * section 6.3.2) shows the unclaimed ones as recent without claiming them.
   */
  readonly #recent = new Set<number>();
  #announcedRecent = 0;
  /** Set while IDLE runs: changes are pushed at once. */
  onChange: (() => void) | undefined;

  constructor(mailbox: Mailbox, name: string, readOnly: boolean, release: () => void) {
    this.mailbox = mailbox;
    this.name = name;
    this.readOnly = readOnly;
    this.#release = release;
    this.uids = mailbox.uids.slice();
    this.#knownModseq = mailbox.highestModseq;
    // Every session on the mailbox runs this for every change: a lookup per changed UID (the
    // view is sorted), never a copy of the view (10k idle sessions on a large mailbox).
    this.#listener = (change) => {
      for (const uid of change.expunged) if (this.seqOf(uid) > 0) this.#pendingExpunged.add(uid);
      for (const uid of change.flagged) if (this.#own.get(uid) !== change.modseq && this.seqOf(uid) > 0) this.#pendingFlagged.add(uid);
      this.onChange?.();
    };
    mailbox.on('change', this.#listener);
  }

  get exists(): number {
    return this.uids.length;
  }

  /** How many messages of the view are \Recent for this session. */
  get recent(): number {
    return this.#recent.size;
  }

  isRecent(uid: number): boolean {
    return this.#recent.has(uid);
  }

  /** The view as SELECT/EXAMINE reports it: every message of the mailbox, the recent ones taken. */
  start(): void {
    this.uids = [...this.mailbox.uids];
    this.#takeRecent(this.uids);
    this.#announcedRecent = this.#recent.size;
  }

  /** Messages that joined the view (ascending): the recent ones among them become this session's. */
  #takeRecent(added: readonly number[]): void {
    const last = added[added.length - 1];
    if (last === undefined) return;
    const from = this.readOnly ? this.mailbox.firstRecentUid : this.mailbox.claimRecent(last);
    for (let i = added.length - 1; i >= 0 && added[i]! >= from; i--) this.#recent.add(added[i]!);
  }

  /**
   * A message of the view: its record, or the last one known when another session expunged it
   * and this one has not announced that yet (RFC 2180 section 4.1); undefined when neither is left.
   */
  record(uid: number): MessageRecord | undefined {
    return this.mailbox.record(uid) ?? this.mailbox.expungedRecord(uid);
  }

  /** Indexes into `uids` selected by a sequence set (UIDs with `uid`). */
  select(ranges: SeqRange[], uid: boolean): number[] {
    return selectIndexes(ranges, this.uids, uid);
  }

  seqOf(uid: number): number {
    let lo = 0;
    let hi = this.uids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.uids[mid]!;
      if (v === uid) return mid + 1;
      if (v < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  /** FLAGS and PERMANENTFLAGS (RFC 3501 sections 7.2.6 and 7.1): the system flags and every keyword. */
  writeFlags(w: ImapWriter): void {
    const keywords = this.mailbox.keywordNames();
    this.#announcedKeywords = new Set(keywords);
    const systemFlags = '\\Answered \\Flagged \\Deleted \\Seen \\Draft';
    w.untagged(`FLAGS (${[systemFlags, ...keywords].join(' ')})`);
    w.untagged(
      this.readOnly
        ? 'OK [PERMANENTFLAGS ()] Read-only mailbox.'
        : `OK [PERMANENTFLAGS (${[systemFlags, ...keywords, '\\*'].join(' ')})] Flags permitted.`,
    );
  }

  /**
   * FLAGS and PERMANENTFLAGS again when the mailbox has keywords this session was not told of:
   * a keyword must be in FLAGS before a FETCH shows it (RFC 3501 section 7.2.6), whether this
   * session's STORE, another session's or an APPEND or COPY brought it.
   */
  announceKeywords(w: ImapWriter): void {
    const keywords = this.mailbox.keywordNames();
    if (keywords.length !== this.#announcedKeywords.size || keywords.some((k) => !this.#announcedKeywords.has(k))) this.writeFlags(w);
  }

  /** Notes changes this session made and answered itself, so they are not announced again. */
  noteOwn(uids: number[], modseq: number): void {
    for (const uid of uids) {
      this.#own.set(uid, modseq);
      this.#pendingFlagged.delete(uid);
    }
    if (this.#own.size > 10_000) this.#own.clear();
  }

  /** Whether a UID in the view was expunged but not announced yet. */
  isExpunged(uid: number): boolean {
    return this.#pendingExpunged.has(uid) || !this.mailbox.record(uid);
  }

  /**
   * Writes the pending updates, syncing with the disk first unless `sync` is false: a push
   * caused by a change event needs no sync, the change came from one (or from an operation of
   * this process), and ten thousand IDLE sessions would each rescan the directory.
   */
  async flush(session: ImapSession, expungeAllowed: boolean, sync = true): Promise<void> {
    if (!sync) {
      if (!session.closed) this.#write(session, expungeAllowed);
      return;
    }
    await this.mailbox.sync().catch((err: unknown) => {
      if ((err as { code?: string }).code === 'MAILBOX_NOT_FOUND') {
        session.writer.untagged('BYE Selected mailbox was deleted, have to disconnect.');
        session.close();
        return;
      }
      throw err;
    });
    if (session.closed) return;
    this.#write(session, expungeAllowed);
  }

  #write(session: ImapSession, expungeAllowed: boolean): void {
    const w = session.writer;
    const condstore = session.condstore;
    const qresync = session.enabled.has('QRESYNC');
    if (expungeAllowed && this.#pendingExpunged.size > 0) {
      const gone = [...this.#pendingExpunged].filter((uid) => this.seqOf(uid) > 0);
      if (qresync) {
        if (gone.length) w.untagged(`VANISHED ${formatSet(gone)}`);
      } else {
        // Highest first: every number stays valid while the earlier ones are announced.
        for (const seq of gone.map((uid) => this.seqOf(uid)).sort((a, b) => b - a)) w.untagged(`${seq} EXPUNGE`);
      }
      const goneSet = new Set(gone);
      this.uids = this.uids.filter((uid) => !goneSet.has(uid));
      this.#pendingExpunged.clear();
      for (const uid of gone) {
        this.#pendingFlagged.delete(uid);
        this.#recent.delete(uid);
      }
    }
    this.announceKeywords(w);
    // New messages: those beyond the view's last UID that still exist.
    const last = this.uids[this.uids.length - 1] ?? 0;
    const all = this.mailbox.uids;
    let added = 0;
    for (let i = all.length - 1; i >= 0 && all[i]! > last; i--) added++;
    if (added > 0) {
      const fresh = all.slice(all.length - added);
      this.uids.push(...fresh);
      this.#takeRecent(fresh);
      w.untagged(`${this.uids.length} EXISTS`);
    }
    // RECENT counts the view's recent messages still present: it never exceeds EXISTS, and an
    // announced expunge of a recent message lowers it (as Dovecot reports it).
    if (this.#recent.size !== this.#announcedRecent) {
      w.untagged(`${this.#recent.size} RECENT`);
      this.#announcedRecent = this.#recent.size;
    }
    if (this.#pendingFlagged.size > 0) {
      for (const uid of [...this.#pendingFlagged].sort((a, b) => a - b)) {
        const rec = this.mailbox.record(uid);
        const seq = this.seqOf(uid);
        if (!rec || seq === 0) continue;
        w.untagged(
          `${seq} FETCH (${qresync ? `UID ${uid} ` : ''}FLAGS ${flagList(rec, this.#recent.has(uid))}${condstore ? ` MODSEQ (${rec.modseq})` : ''})`,
        );
      }
      this.#pendingFlagged.clear();
    }
    this.#knownModseq = this.mailbox.highestModseq;
  }

  get knownModseq(): number {
    return this.#knownModseq;
  }

  close(): void {
    this.mailbox.off('change', this.#listener);
    this.onChange = undefined;
    this.#release();
  }
}
