/**
 * The Maildir store's delivery path. A delivery is a transaction (maddy's model, mapped onto
 * Maildir's tmp -> new):
 *   1. stream the message into tmp/ (small messages stay in memory until the end),
 *   2. at the end, check each mailbox's quota and write one file per mailbox, each with its own
 *      Return-Path and Delivered-To (as Postfix's virtual(8) does), fsync every file,
 *   3. rename each file into new/ and fsync each new/ directory (group-committed),
 *   4. only then report success, so the caller may answer 250.
 * A crash at any point leaves at most a file in tmp/ (removed after 36 hours), never a partial
 * message in new/. Files are written with LF line ends as Dovecot and Postfix do; the name
 * carries S= (bytes on disk) and W= (bytes with CRLF) for Dovecot and Maildir++ quota.
 */
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { MailError, isMailError, storageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { UserRecord } from '../directory/types.js';
import { DirectorySyncer } from './dir-sync.js';
import { FolderKeywords } from './mail/folder-keywords.js';
import { baseWithSizes } from './dovecot/filename.js';
import { maildirPath, uniqueBaseName } from './maildir.js';
import { MaildirQuota } from './quota.js';
import { createDurably, writeAll } from './fsio.js';
import { LineEndConverter, countLineFeeds } from './line-ends.js';

/** Bodies up to this size are kept in memory until the end of DATA (one write per file). */
const MEMORY_BODY_LIMIT = 128 * 1024;
/** Files in tmp/ older than this are leftovers of a crash (the maildir description: 36 hours). */
const TMP_MAX_AGE_MS = 36 * 3600 * 1000;
/** How often one Maildir's tmp/ is checked for leftovers. */
const TMP_SCAN_INTERVAL_MS = 8 * 3600 * 1000;
/** Files written at once for a message with many recipients. */
const WRITE_CONCURRENCY = 16;

export interface DeliveryRequest {
  /** The id that ties log lines about this message together. */
  queueId: string;
  /** Envelope sender; '' for the null sender (bounces). */
  sender: string;
  /** The complete Received: header field this hop adds, without the final newline. */
  received: string;
  /** Distinct mailboxes to deliver to. */
  mailboxes: UserRecord[];
  /** Largest message accepted, in bytes as received. */
  maxBytes: number;
  /**
   * All or nothing: when any mailbox fails before the files are moved into new/, none is
   * delivered and that failure is thrown. SMTP has one reply for all recipients and, until
   * there is a queue to bounce from, this is what keeps a partial delivery from being
   * acknowledged for everybody or refused for everybody. LMTP answers per recipient instead.
   */
  atomic?: boolean;
  /**
   * Deliver into the folder with this special use instead of INBOX (the inbound checks' '\\Junk'),
   * created if missing (MaildirStoreOptions.specialFolder).
   */
  folder?: string;
  /** The inbound scanners' RFC 5235 scores, passed to the filters (Sieve spamtest/virustest). */
  scores?: { spam?: number; virus?: number };
}

/** `file` is the (first) file delivered; '' when the mailbox's filter discarded the message. */
export type MailboxResult = { mailbox: UserRecord; ok: true; file: string } | { mailbox: UserRecord; ok: false; error: MailError };

/**
 * What a mailbox's filter (its Sieve script) decided: copies into folders (by name; none given:
 * the delivery's own folder), each with Maildir flag letters (RFC 5232 system flags as "FS"), no
 * copy at all (discard), or a refusal for this mailbox (reject). Undefined: deliver as usual.
 */
export type FilterDecision =
  | {
      placements: Array<{
        folder?: string;
        create?: boolean;
        flags?: string;
        keywords?: string[];
        /** The message for this copy when the filter changed it (Sieve editheader), trace fields of ours left out. */
        message?: Buffer;
      }>;
      /** Called once every copy of the mailbox is durable (or after a discard): state the filter keeps per delivery. */
      delivered?: () => Promise<void>;
    }
  | { refuse: MailError };

export interface FilterRequest {
  mailbox: UserRecord;
  sender: string;
  /** The message as it will be stored for this mailbox (our trace fields on top), read once for all mailboxes. */
  message: () => Promise<Buffer>;
  /** The inbound scanners' RFC 5235 scores, when the message was scanned. */
  scores?: { spam?: number; virus?: number };
  /** The delivery's queue id (log lines, notices). */
  queueId: string;
  /**
   * Whether a refusal can be answered for this mailbox alone: LMTP and the queue answer per
   * recipient, SMTP with one mailbox too; SMTP with several has one reply for all, so a filter
   * that refuses one of them has to tell the sender itself.
   */
  mayRefuse: boolean;
}

export interface DeliveryOutcome {
  /** Bytes received from the client. */
  inputBytes: number;
  /** Size of the message body as stored (LF line ends), without the added headers. */
  bodyBytes: number;
  results: MailboxResult[];
}

export interface DeliveredEvent {
  mailbox: string;
  /** The folder's directory (the Maildir itself for INBOX). */
  maildir: string;
  folder: string;
  file: string;
  size: number;
}

export interface MaildirStoreOptions {
  root: string;
  layout: string;
  logger: Logger;
  /** Finds (or creates) a mailbox's folder with a special use; without it everything goes to INBOX. */
  specialFolder?: (user: UserRecord, use: string) => Promise<{ name: string; dir: string }>;
  /** A mailbox's folder by name: its directory, created when `create`; undefined when it does not exist. */
  folderByName?: (user: UserRecord, name: string, create: boolean) => Promise<{ name: string; dir: string } | undefined>;
  /** The mailbox's own filter (Sieve), run once the message has arrived, before anything is written. */
  filter?: (req: FilterRequest) => Promise<FilterDecision | undefined>;
}

/** One file to write: a mailbox's copy in one folder, with its flags. */
interface Copy {
  mailbox: UserRecord;
  maildir: string;
  folder: string;
  quota: MaildirQuota;
  /** Return-Path and Delivered-To, then our Received. */
  header: string;
  /** Return-Path and Delivered-To alone: what goes on top of a filter's own version (content). */
  trace: string;
  base: string;
  /** Maildir info flag letters ("FS"); '' for none (delivered to new/). */
  flags: string;
  /** The spool file already holds this copy (the primary's, large messages). */
  usesSpool: boolean;
  /** The message as the filter changed it (after our Return-Path and Delivered-To), instead of the received one. */
  content?: Buffer;
}

export class MaildirStore {
  readonly events = new EventEmitter<{ delivered: [DeliveredEvent] }>();
  readonly syncer = new DirectorySyncer();
  readonly #opts: MaildirStoreOptions;
  readonly #ensured = new Set<string>();
  readonly #tmpScanned = new Map<string, number>();
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(opts: MaildirStoreOptions) {
    this.#opts = opts;
    this.events.setMaxListeners(0);
  }

  get root(): string {
    return this.#opts.root;
  }

  maildirOf(user: UserRecord): string {
    return maildirPath(this.#opts.root, this.#opts.layout, user);
  }

  /** The quota of a mailbox's Maildir, with the limit the directory gives it. */
  quotaOf(user: UserRecord): MaildirQuota {
    return new MaildirQuota(this.maildirOf(user), user.quotaBytes, user.email);
  }

  /**
   * For RCPT time: refuses a mailbox that is already full (QUOTA_FULL) or, when the client
   * declared the message size, one this message would overfill (QUOTA_EXCEEDED).
   */
  async checkQuota(user: UserRecord, declaredSize = 0): Promise<void> {
    await this.quotaOf(user).checkRoom(declaredSize);
  }

  /** Creates tmp/, new/ and cur/ of a Maildir (mode 0700, as Dovecot does). */
  async ensureMaildir(maildir: string): Promise<void> {
    if (this.#ensured.has(maildir)) return;
    for (const sub of ['tmp', 'new', 'cur']) await fs.mkdir(path.join(maildir, sub), { recursive: true, mode: 0o700 });
    if (this.#ensured.size > 100_000) this.#ensured.clear();
    this.#ensured.add(maildir);
  }

  /**
   * Delivers one message to every mailbox of the request. Consumes `input` to its end whatever
   * happens, so the protocol can answer afterwards. Throws MESSAGE_TOO_BIG when the input
   * exceeds maxBytes and STORAGE_ERROR when the message could not be written at all; failures
   * of single mailboxes (quota, a broken Maildir) are reported per mailbox.
   */
  deliver(input: Readable, req: DeliveryRequest): Promise<DeliveryOutcome> {
    const running = this.#deliver(input, req);
    this.#inFlight.add(running);
    void running.then(
      () => this.#inFlight.delete(running),
      () => this.#inFlight.delete(running),
    );
    return running;
  }

  /** Resolves once every delivery in progress has finished (graceful shutdown). */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Finishes the deliveries in progress and releases open directory handles. */
  async close(): Promise<void> {
    await this.drain();
    await this.syncer.close();
  }

  /**
   * Forgets what is cached about a Maildir after a failure, so the next delivery creates it
   * again if it was removed (an admin deleting a mailbox while the server runs).
   */
  async #forget(maildir: string): Promise<void> {
    this.#ensured.delete(maildir);
    await this.syncer.invalidate(path.join(maildir, 'new'));
  }

  async #deliver(input: Readable, req: DeliveryRequest): Promise<DeliveryOutcome> {
    const results = new Map<string, MailboxResult>();
    const targets: Array<Omit<Copy, 'flags' | 'usesSpool' | 'content'>> = [];
    for (const mailbox of req.mailboxes) {
      try {
        const quota = this.quotaOf(mailbox);
        const { name: folder, dir: maildir } = await this.#folderOf(mailbox, quota.maildir, req.folder);
        await this.ensureMaildir(maildir);
        const trace = `Return-Path: <${req.sender}>\nDelivered-To: ${mailbox.email}\n`;
        const header = `${trace}${req.received ? `${req.received}\n` : ''}`;
        targets.push({ mailbox, maildir, folder, quota, header, trace, base: uniqueBaseName() });
      } catch (err) {
        results.set(mailbox.email, { mailbox, ok: false, error: storageError(err, `preparing ${mailbox.email}`) });
      }
    }

    // --- 1. receive the body -------------------------------------------------------------------
    const primary = targets[0];
    const converter = new LineEndConverter();
    let inputBytes = 0;
    let chunks: Buffer[] = [];
    let spool: FileHandle | undefined;
    let spoolPath: string | undefined;
    let failure: MailError | undefined;
    let tooBig = false;

    const discard = async () => {
      chunks = [];
      if (spool) await spool.close().catch(() => undefined);
      if (spoolPath) await fs.unlink(spoolPath).catch(() => undefined);
      spool = undefined;
      spoolPath = undefined;
    };

    try {
      for await (const chunk of input as AsyncIterable<Buffer>) {
        inputBytes += chunk.length;
        if (failure || tooBig || !primary) continue; // keep reading to the end of DATA
        if (inputBytes > req.maxBytes) {
          tooBig = true;
          await discard();
          continue;
        }
        converter.push(chunk, chunks);
        if (!spool && converter.bytes > MEMORY_BODY_LIMIT) {
          try {
            spoolPath = path.join(primary.maildir, 'tmp', primary.base);
            spool = await fs.open(spoolPath, 'wx', 0o600);
            await writeAll(spool, [Buffer.from(primary.header), ...chunks]);
            chunks = [];
          } catch (err) {
            failure = storageError(err, 'writing to tmp/');
            await discard();
            await this.#forget(primary.maildir);
          }
        } else if (spool && chunks.length > 64) {
          try {
            await writeAll(spool, chunks);
            chunks = [];
          } catch (err) {
            failure = storageError(err, 'writing to tmp/');
            await discard();
          }
        }
      }
    } catch (err) {
      // The client went away in the middle of DATA: nothing was acknowledged, keep nothing.
      await discard();
      throw err;
    }
    converter.end(chunks);
    if (tooBig) throw new MailError('MESSAGE_TOO_BIG', `message of more than ${req.maxBytes} bytes`);
    if (!primary) return { inputBytes, bodyBytes: 0, results: req.mailboxes.map((m) => results.get(m.email)!) };
    if (spool && !failure && chunks.length > 0) {
      try {
        await writeAll(spool, chunks);
        chunks = [];
      } catch (err) {
        failure = storageError(err, 'writing to tmp/');
      }
    }
    if (failure) {
      await discard();
      throw failure;
    }
    const bodyBytes = converter.bytes;
    const bodyVirtual = converter.bytes + converter.lineFeeds;

    // --- 1b. each mailbox's filter: which folders, which flags, or no copy ---------------------------
    let copies: Copy[] = targets.map((t) => ({ ...t, flags: '', usesSpool: t === primary && Boolean(spool) }));
    const onDelivered = new Map<string, () => Promise<void>>();
    if (this.#opts.filter) {
      let message: Promise<Buffer> | undefined;
      const source = spoolPath;
      const inMemory = [Buffer.from(primary.header), ...chunks];
      const read = () => (message ??= source ? fs.readFile(source) : Promise.resolve(Buffer.concat(inMemory)));
      copies = await this.#filtered(
        copies,
        {
          sender: req.sender,
          message: read,
          queueId: req.queueId,
          mayRefuse: !req.atomic || req.mailboxes.length === 1,
          ...(req.scores ? { scores: req.scores } : {}),
        },
        results,
        onDelivered,
      );
    }

    // --- 2. quota and one durable file per copy --------------------------------------------------
    const written: Array<{ target: Copy; tmp: string; size: number; vsize: number }> = [];
    const writeOne = async (target: Copy) => {
      const headerBytes = Buffer.byteLength(target.header);
      let size = headerBytes + bodyBytes;
      let vsize = headerBytes + countLineFeeds(target.header) + bodyVirtual;
      if (target.content) {
        // The filter's own version of the message (our Received included): only Return-Path and Delivered-To go on top.
        size = Buffer.byteLength(target.trace) + target.content.length;
        vsize = size + countLineFeeds(target.trace) + countLineFeeds(target.content);
      }
      try {
        await target.quota.check(size);
        const tmp = path.join(target.maildir, 'tmp', target.base);
        if (target.content) {
          await createDurably(tmp, [Buffer.from(target.trace), target.content]);
        } else if (target.usesSpool && spool) {
          await spool.sync();
        } else {
          await this.#writeFile(tmp, target.header, chunks, spoolPath, Buffer.byteLength(primary.header));
        }
        written.push({ target, tmp, size, vsize });
      } catch (err) {
        // A Maildir removed meanwhile is created again by the next delivery.
        if (!isMailError(err) || err.code === 'STORAGE_ERROR') await this.#forget(target.maildir);
        results.set(target.mailbox.email, {
          mailbox: target.mailbox,
          ok: false,
          error: storageError(err, `writing for ${target.mailbox.email}`),
        });
      }
    };
    try {
      await mapLimit(copies, WRITE_CONCURRENCY, writeOne);
    } finally {
      if (spool) await spool.close().catch(() => undefined);
    }
    // The spool doubles as the primary's file; if the primary failed (quota) or its filter put the
    // message elsewhere, it goes now.
    if (spoolPath && !written.some((w) => w.target.usesSpool)) await fs.unlink(spoolPath).catch(() => undefined);

    if (req.atomic && req.mailboxes.some((m) => results.get(m.email)?.ok === false)) {
      await Promise.all(written.map((w) => fs.unlink(w.tmp).catch(() => undefined)));
      const failed = [...results.values()].find((r): r is Extract<MailboxResult, { ok: false }> => !r.ok);
      throw failed ? failed.error : new MailError('STORAGE_ERROR', 'delivery failed');
    }

    // --- 3. rename into new/ and make the directory entries durable --------------------------------
    await mapLimit(written, WRITE_CONCURRENCY, async ({ target, tmp, size, vsize }) => {
      // With flags the file goes to cur/ with its info (Maildir ":2,"), as Dovecot's LDA does.
      const sub = target.flags ? 'cur' : 'new';
      const name = baseWithSizes(target.base, size, vsize) + (target.flags ? `:2,${target.flags}` : '');
      const final = path.join(target.maildir, sub, name);
      try {
        await fs.rename(tmp, final);
      } catch (err) {
        await fs.unlink(tmp).catch(() => undefined);
        await this.#forget(target.maildir);
        results.set(target.mailbox.email, { mailbox: target.mailbox, ok: false, error: storageError(err, 'moving into new/') });
        return;
      }
      try {
        await this.syncer.sync(path.join(target.maildir, sub));
      } catch (err) {
        // Not durable, so not acknowledged: remove it rather than risk a duplicate on retry.
        await fs.unlink(final).catch(() => undefined);
        results.set(target.mailbox.email, { mailbox: target.mailbox, ok: false, error: storageError(err, 'syncing new/') });
        return;
      }
      // A mailbox with several copies is ok only when every copy is.
      const before = results.get(target.mailbox.email);
      if (!before || (before.ok && before.file === ''))
        results.set(target.mailbox.email, { mailbox: target.mailbox, ok: true, file: final });
      await this.#afterDelivery(target, name, size);
    });

    for (const [email, delivered] of onDelivered) {
      if (results.get(email)?.ok !== true) continue;
      await delivered().catch((err: unknown) =>
        this.#opts.logger.warn({ mailbox: email, err: (err as Error).message }, 'filter state after delivery not saved'),
      );
    }
    return { inputBytes, bodyBytes, results: req.mailboxes.map((m) => results.get(m.email)!) };
  }

  /**
   * Runs each mailbox's filter: the copy becomes one copy per placement (a folder that does not
   * exist and may not be created means INBOX, as Pigeonhole's fileinto without :create), none for
   * a discard (the mailbox's result is ok with no file), or a refusal recorded as its result.
   */
  async #filtered(
    copies: Copy[],
    request: Omit<FilterRequest, 'mailbox'>,
    results: Map<string, MailboxResult>,
    onDelivered: Map<string, () => Promise<void>>,
  ): Promise<Copy[]> {
    const out: Copy[] = [];
    for (const copy of copies) {
      let decision: FilterDecision | undefined;
      try {
        decision = await this.#opts.filter!({ ...request, mailbox: copy.mailbox });
      } catch (err) {
        // The filter itself failed: the message is kept where it would have gone (RFC 5228 section 2.10.6).
        this.#opts.logger.warn({ mailbox: copy.mailbox.email, err: (err as Error).message }, 'filter failed; delivering as usual');
        decision = undefined;
      }
      if (!decision) {
        out.push(copy);
        continue;
      }
      if ('refuse' in decision) {
        results.set(copy.mailbox.email, { mailbox: copy.mailbox, ok: false, error: decision.refuse });
        continue;
      }
      if (decision.delivered) onDelivered.set(copy.mailbox.email, decision.delivered);
      if (decision.placements.length === 0) {
        results.set(copy.mailbox.email, { mailbox: copy.mailbox, ok: true, file: '' });
        continue;
      }
      let spoolTaken = false;
      for (const placement of decision.placements) {
        let folder = { name: copy.folder, dir: copy.maildir };
        if (placement.folder !== undefined && this.#opts.folderByName) {
          const found = await this.#opts.folderByName(copy.mailbox, placement.folder, placement.create ?? false).catch((err: unknown) => {
            this.#opts.logger.warn(
              { mailbox: copy.mailbox.email, folder: placement.folder, err: (err as Error).message },
              'fileinto failed',
            );
            return undefined;
          });
          folder = found ?? { name: 'INBOX', dir: copy.quota.maildir };
        }
        await this.ensureMaildir(folder.dir);
        // The spool file may stay the file of one copy: the first one in the spool's own folder.
        const usesSpool = copy.usesSpool && !spoolTaken && folder.dir === copy.maildir && !placement.message;
        if (usesSpool) spoolTaken = true;
        const keywordLetters = placement.keywords?.length ? await this.#keywordLetters(copy.mailbox, folder.dir, placement.keywords) : '';
        out.push({
          ...copy,
          maildir: folder.dir,
          folder: folder.name,
          // Maildir info letters in ASCII order: system flags, then the keywords' a..z.
          flags: [...new Set((placement.flags ?? '') + keywordLetters)].sort().join(''),
          ...(placement.message ? { content: placement.message } : {}),
          base: usesSpool ? copy.base : uniqueBaseName(),
          usesSpool,
        });
      }
    }
    return out;
  }

  /**
   * The Maildir letters of IMAP keywords in a folder (its dovecot-keywords, which gets the new
   * names). A folder with all 26 letters taken gets none of them, as the message still must be
   * delivered.
   */
  async #keywordLetters(mailbox: UserRecord, dir: string, keywords: string[]): Promise<string> {
    try {
      const indexes = await new FolderKeywords(dir).indexesOf(keywords);
      return indexes.map((i) => String.fromCharCode(0x61 + i)).join('');
    } catch (err) {
      this.#opts.logger.warn({ mailbox: mailbox.email, keywords, err: (err as Error).message }, 'keywords not stored');
      return '';
    }
  }

  /**
   * Writes header + body into a new tmp file, durably. A body in memory goes out in one write
   * (fsio's createDurably, O_DSYNC); a spooled body is copied from the spool and the file fsynced.
   */
  async #writeFile(tmp: string, header: string, chunks: Buffer[], spoolPath: string | undefined, spoolHeaderBytes: number): Promise<void> {
    if (!spoolPath) {
      await createDurably(tmp, [Buffer.from(header), ...chunks]);
      return;
    }
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
      await writeAll(fh, [Buffer.from(header)]);
      for await (const piece of createReadStream(spoolPath, {
        start: spoolHeaderBytes,
        highWaterMark: 256 * 1024,
      }) as AsyncIterable<Buffer>) {
        await writeAll(fh, [piece]);
      }
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fh.close();
  }

  /** The directory a message for this mailbox goes to: INBOX, or the folder with the requested special use. */
  async #folderOf(mailbox: UserRecord, maildir: string, use: string | undefined): Promise<{ name: string; dir: string }> {
    if (!use || !this.#opts.specialFolder) return { name: 'INBOX', dir: maildir };
    try {
      return await this.#opts.specialFolder(mailbox, use);
    } catch (err) {
      // No folder is configured with that use: INBOX, as Dovecot's lda_mailbox_autocreate = no would.
      if (isMailError(err) && err.code === 'MAILBOX_NOT_FOUND') {
        this.#opts.logger.warn({ mailbox: mailbox.email, use }, 'no folder with this special use; delivering to INBOX');
        return { name: 'INBOX', dir: maildir };
      }
      throw err;
    }
  }

  async #afterDelivery(
    target: { mailbox: UserRecord; maildir: string; folder: string; quota: MaildirQuota },
    file: string,
    size: number,
  ): Promise<void> {
    const { mailbox, maildir, folder } = target;
    // Maildir++ usage is kept for mailboxes with a quota; for the others nothing reads it, and
    // a stale file is rebuilt the moment a quota is set (its first line no longer matches).
    await target.quota.recordDone(size, 1, this.#opts.logger);
    this.events.emit('delivered', { mailbox: mailbox.email, maildir, folder, file, size });
    this.#maybeCleanTmp(maildir);
  }

  /** Removes crash leftovers from tmp/, at most every few hours per Maildir, in the background. */
  #maybeCleanTmp(maildir: string): void {
    const now = Date.now();
    const last = this.#tmpScanned.get(maildir);
    if (last !== undefined && now - last < TMP_SCAN_INTERVAL_MS) return;
    if (this.#tmpScanned.size > 100_000) this.#tmpScanned.clear();
    this.#tmpScanned.set(maildir, now);
    void this.cleanTmp(maildir, now).catch((err: unknown) =>
      this.#opts.logger.debug({ maildir, err: (err as Error).message }, 'tmp/ cleanup failed'),
    );
  }

  /** Deletes files in tmp/ not modified for 36 hours. Returns how many were removed. */
  async cleanTmp(maildir: string, now = Date.now()): Promise<number> {
    const dir = path.join(maildir, 'tmp');
    let removed = 0;
    for (const name of await fs.readdir(dir)) {
      const file = path.join(dir, name);
      const st = await fs.stat(file).catch(() => undefined);
      if (st?.isFile() && now - st.mtimeMs > TMP_MAX_AGE_MS) {
        await fs.unlink(file).catch(() => undefined);
        removed++;
      }
    }
    if (removed) this.#opts.logger.info({ maildir, removed }, 'removed stale files from tmp/');
    return removed;
  }
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
