/**
 * The maildrop of one POP3 session (RFC 1939 section 8): the user's INBOX, locked for the
 * session, as it was at login. Message numbers and sizes are fixed until the session ends;
 * mail that arrives meanwhile is not shown (the next session sees it), and messages marked with
 * DELE are removed only in the UPDATE state after QUIT, through the store's expunge, so IMAP
 * sessions on the same INBOX see them as EXPUNGE.
 *
 * Sizes are the sizes with CRLF line ends (the virtual size, W= in the Maildir file name, that
 * IMAP reports as RFC822.SIZE and Dovecot's POP3 reports too): exactly the bytes RETR sends,
 * without the dot-stuffing. UIDLs are Dovecot's default pop3_uidl_format %08Xu%08Xv: the UID
 * and the UIDVALIDITY of dovecot-uidlist, each as 8 hex digits, so that a client that
 * downloaded from Dovecot (or over IMAP) downloads nothing again. Dovecot's var_expand writes
 * %X in lower case (Dovecot 2.3's pop3 answers "1 000000016b0bb218"), and so does this:
 * test/interop/pop3-dovecot.test.ts compares the two servers' answers on the same Maildir.
 */
import { MailError, isMailError } from '../errors.js';
import { SMALL_FILE, type Mailbox } from '../store/mail/mailbox.js';
import { lockPop3Session, type Pop3SessionLock } from '../store/mail/pop3-lock.js';
import type { Account } from '../store/mail/service.js';
import { FLAG_SEEN } from '../store/mail/types.js';
import { MessageEncoder } from './encoder.js';
import { BrokenResponseError, Pop3Error } from './errors.js';
import { StalledClientError, type Pop3Writer } from './writer.js';

export interface DropMessage {
  /** 1-based message number of the session. */
  readonly number: number;
  readonly uid: number;
  /** Octets with CRLF line ends (RFC 1939 section 5, LIST). */
  readonly size: number;
  deleted: boolean;
  /** RETR'd in full and not \Seen yet: gets \Seen when the session ends. */
  retrieved: boolean;
}

/** Dovecot's %08X: 8 hex digits, lower case as var_expand writes them. */
function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

export class Maildrop {
  readonly account: Account;
  readonly uidValidity: number;
  readonly messages: readonly DropMessage[];
  readonly #mailbox: Mailbox;
  readonly #lock: Pop3SessionLock | undefined;
  #closed = false;

  private constructor(account: Account, mailbox: Mailbox, lock: Pop3SessionLock | undefined, messages: DropMessage[]) {
    this.account = account;
    this.#mailbox = mailbox;
    this.#lock = lock;
    this.messages = messages;
    this.uidValidity = mailbox.uidValidity;
  }

  /**
   * Takes the snapshot of the INBOX, with `lock` after locking it for this session (IN_USE when
   * another session has it). Store failures become STORAGE_ERROR (-ERR [SYS/TEMP]).
   */
  static async open(account: Account, opts: { lock: boolean; onLockLost?: () => void }): Promise<Maildrop> {
    const lock = opts.lock ? await lockPop3Session(account.maildir, opts.onLockLost ? { onLost: opts.onLockLost } : {}) : undefined;
    let mailbox: Mailbox | undefined;
    try {
      mailbox = await account.open('INBOX');
      await mailbox.sync();
      const uids = [...mailbox.uids];
      await mailbox.ensureDetails(uids);
      const messages: DropMessage[] = [];
      for (const uid of uids) {
        const rec = mailbox.record(uid);
        if (!rec) continue;
        messages.push({ number: messages.length + 1, uid, size: Math.max(0, rec.vsize), deleted: false, retrieved: false });
      }
      return new Maildrop(account, mailbox, lock, messages);
    } catch (err) {
      if (mailbox) account.close(mailbox);
      await lock?.release().catch(() => undefined);
      if (isMailError(err)) throw err;
      throw new MailError('STORAGE_ERROR', `opening INBOX of ${account.user.email}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Messages not marked deleted, and their total size (STAT). */
  totals(): { count: number; size: number } {
    let count = 0;
    let size = 0;
    for (const m of this.messages) {
      if (m.deleted) continue;
      count++;
      size += m.size;
    }
    return { count, size };
  }

  /** The message of a number the client gave; -ERR for a number that does not exist or was deleted. */
  message(n: number): DropMessage {
    const m = n >= 1 ? this.messages[n - 1] : undefined;
    if (!m) throw new Pop3Error(`There's no message ${n}.`);
    if (m.deleted) throw new Pop3Error('Message is deleted.');
    return m;
  }

  uidl(m: DropMessage): string {
    return hex8(m.uid) + hex8(this.uidValidity);
  }

  /**
   * Sends a message as a RETR (or, with bodyLines, TOP) response: the status line `begin` gives
   * once the file is open, then the converted content and the final ".". A small message is
   * read whole and sent in one write; a larger one streams, one file chunk at a time, waiting
   * for the client whenever the output backs up, so memory stays flat.
   * EXPUNGED when the message was removed by another session; BrokenResponseError when the
   * file failed after the response had begun (the connection must close).
   */
  async retrieve(m: DropMessage, writer: Pop3Writer, begin: () => string, bodyLines?: number): Promise<void> {
    // A small message: one read, and the status line, the message and the end in one write.
    const whole = await this.#mailbox.readSmall(m.uid, SMALL_FILE);
    if (whole) {
      const encoder = new MessageEncoder(bodyLines === undefined ? {} : { bodyLines });
      const body = encoder.push(whole);
      writer.raw(Buffer.concat([Buffer.from(begin(), 'latin1'), body, encoder.finish()]));
      if (writer.destroyed) return; // the client went away: not retrieved
      this.#noteRetrieved(m, bodyLines);
      await writer.flowControl();
      return;
    }
    let stream = await this.#mailbox.openStream(m.uid);
    if (!stream && this.#mailbox.record(m.uid)) {
      // Renamed by another process (a flag change): find its current name.
      await this.#mailbox.sync(true);
      stream = await this.#mailbox.openStream(m.uid);
    }
    if (!stream) throw new MailError('EXPUNGED', `message ${m.uid} no longer exists`);
    const encoder = new MessageEncoder(bodyLines === undefined ? {} : { bodyLines });
    writer.raw(begin());
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (writer.destroyed) break;
        const out = encoder.push(chunk);
        if (out.length) writer.raw(out);
        if (encoder.done) break;
        await writer.flowControl();
      }
    } catch (err) {
      if (err instanceof StalledClientError) throw err;
      throw new BrokenResponseError(`reading message ${m.uid}`, err);
    } finally {
      stream.destroy();
    }
    if (writer.destroyed) return; // the client went away in the middle: not retrieved
    writer.raw(encoder.finish());
    this.#noteRetrieved(m, bodyLines);
  }

  #noteRetrieved(m: DropMessage, bodyLines: number | undefined): void {
    // As Dovecot's pop3 does (pop3-commands.c: fetch() sets seen_bitmask for RETR, not TOP;
    // client_update_mails() stores \Seen at QUIT, and at a disconnect too): a message
    // retrieved with RETR gets \Seen when the session ends, unless RSET forgets it first.
    if (bodyLines === undefined && !((this.#mailbox.record(m.uid)?.flags ?? FLAG_SEEN) & FLAG_SEEN)) m.retrieved = true;
  }

  /** RSET (RFC 1939 section 5): unmarks every deleted message (and, as Dovecot, forgets the \Seen to come). */
  reset(): void {
    for (const m of this.messages) {
      m.deleted = false;
      m.retrieved = false;
    }
  }

  /**
   * The UPDATE state (RFC 1939 section 6): removes the messages marked deleted, through the
   * store's expunge (IMAP sessions get EXPUNGE; the store keeps the quota current), and sets \Seen on
   * the retrieved ones. Returns how many messages were removed. A message another session
   * (POP3 or IMAP) removed meanwhile is skipped, as Dovecot skips already expunged ones.
   */
  async update(): Promise<number> {
    const mailbox = this.#mailbox;
    const doomed = this.messages.filter((m) => m.deleted && mailbox.record(m.uid)).map((m) => m.uid);
    let removed = 0;
    // Only what this expunge removed counts: another session may have taken some meanwhile.
    if (doomed.length) removed = (await mailbox.expunge(doomed)).length;
    await this.#markSeen();
    return removed;
  }

  async #markSeen(): Promise<void> {
    const seen = this.messages.filter((m) => m.retrieved && !m.deleted).map((m) => m.uid);
    for (const m of this.messages) m.retrieved = false;
    if (seen.length) await this.#mailbox.store(seen, 'add', FLAG_SEEN, []);
  }

  /**
   * Ends the session without UPDATE (a dropped connection, a timeout, or after update()):
   * nothing is deleted; retrieved messages still get \Seen, as with Dovecot. Releases the
   * mailbox and the session lock.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#markSeen();
    } finally {
      this.account.close(this.#mailbox);
      await this.#lock?.release();
    }
  }
}
