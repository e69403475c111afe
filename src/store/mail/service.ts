/**
 * Accounts and folders over the Maildir store: the folder tree (Maildir++), subscriptions,
 * special-use folders, quota, and the registry that shares one Mailbox per folder between all
 * sessions of this process and tells them about deliveries at once.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { MailError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { UserRecord } from '../../directory/types.js';
import type { DirectorySyncer } from '../dir-sync.js';
import { replaceDurably } from '../fsio.js';
import { maildirPath } from '../maildir.js';
import { MaildirQuota } from '../quota.js';
import type { DeliveredEvent, MaildirStore } from '../delivery.js';
import { FolderNames, type Separator } from './formats.js';
import { Mailbox } from './mailbox.js';
import type { FolderInfo, MailboxStatus } from './types.js';

const SPECIAL_USE_FILE = 'maild-special-use';
export const SPECIAL_USES = ['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash'];
/** Idle mailboxes kept in memory (warm) after their last session left. */
const WARM_MAILBOXES = 64;
/** How often a mailbox with IDLE sessions is looked at for changes other processes made. */
const IDLE_POLL_MS = 5000;

/** A folder's special use, and whether a login creates (and subscribes) it when it is missing. */
export interface SpecialFolder {
  use: string;
  auto: 'create' | 'subscribe' | 'no';
}

export interface MailServiceOptions {
  root: string;
  layout: string;
  logger: Logger;
  syncer: DirectorySyncer;
  /** Folders with a special use (RFC 6154), and what a login does when one is missing. */
  specialFolders: Record<string, SpecialFolder>;
  /** When a login creates them: only in a Maildir without folders yet, or whenever missing. */
  autoSpecialFolders?: 'new_maildir' | 'always';
  /** The hierarchy separator clients see (default '.', Dovecot's for Maildir++). */
  separator?: Separator;
  store?: MaildirStore;
  /** Small message files and directory stats with blocking calls (mail.blocking_reads). */
  blockingReads?: boolean;
}

export class MailService {
  readonly #opts: MailServiceOptions;
  readonly #open = new Map<string, Mailbox>();
  readonly #opening = new Map<string, Promise<Mailbox>>();
  readonly #syncScheduled = new Set<Mailbox>();
  /** Work in flight per key (one maildir's special folders), shared by concurrent callers. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /** Maildirs whose cur/, new/ and tmp/ this process made sure of (Account.ensureRoot). */
  readonly rootsMade = new Set<string>();
  /** Mailboxes polled for other processes' changes, with how many sessions watch each. */
  readonly #watched = new Map<Mailbox, { watchers: number; timer: NodeJS.Timeout }>();

  /** Folder names with the configured hierarchy separator. */
  readonly names: FolderNames;

  constructor(opts: MailServiceOptions) {
    this.#opts = opts;
    this.names = new FolderNames(opts.separator ?? '.');
    opts.store?.events.on('delivered', (e) => this.#onDelivered(e));
  }

  get options(): MailServiceOptions {
    return this.#opts;
  }

  async account(user: UserRecord): Promise<Account> {
    const maildir = maildirPath(this.#opts.root, this.#opts.layout, user);
    return new Account(this, user, maildir);
  }

  /** A delivery to an INBOX that sessions have open: sync it now so IDLE sees it at once. */
  #onDelivered(e: DeliveredEvent): void {
    const mailbox = this.#open.get(e.maildir);
    if (!mailbox || mailbox.refs === 0) return;
    mailbox.markDirty();
    if (this.#syncScheduled.has(mailbox)) return;
    this.#syncScheduled.add(mailbox);
    // One sync for a burst of deliveries.
    setImmediate(() => {
      this.#syncScheduled.delete(mailbox);
      mailbox
        .sync()
        .catch((err: unknown) =>
          this.#opts.logger.warn({ err: (err as Error).message, mailbox: mailbox.dir }, 'sync after delivery failed'),
        );
    });
  }

  /**
   * The shared Mailbox of a folder directory (counted; release() when done). `quota` is the
   * limit of the Maildir as the opener's directory record has it; the latest opener's applies.
   */
  async acquire(dir: string, name: string, root: string, quota: MaildirQuota, create = false): Promise<Mailbox> {
    let mailbox = this.#open.get(dir);
    if (!mailbox) {
      let pending = this.#opening.get(dir);
      if (!pending) {
        pending = Mailbox.open(
          dir,
          name,
          { logger: this.#opts.logger, syncer: this.#opts.syncer, root, blockingReads: this.#opts.blockingReads },
          create,
        ).finally(() => this.#opening.delete(dir));
        this.#opening.set(dir, pending);
      }
      mailbox = await pending;
      this.#open.set(dir, mailbox);
    }
    mailbox.quota = quota;
    mailbox.refs++;
    return mailbox;
  }

  release(mailbox: Mailbox): void {
    mailbox.refs = Math.max(0, mailbox.refs - 1);
    if (mailbox.refs > 0) return;
    mailbox.compact().catch((err: unknown) => this.#opts.logger.warn({ err: (err as Error).message }, 'uidlist compaction failed'));
    // Keep recently used mailboxes warm; drop the least recently released beyond the limit.
    this.#open.delete(mailbox.dir);
    this.#open.set(mailbox.dir, mailbox);
    const idle = [...this.#open.values()].filter((m) => m.refs === 0);
    for (const m of idle.slice(0, Math.max(0, idle.length - WARM_MAILBOXES))) this.#open.delete(m.dir);
  }

  /**
   * Polls a mailbox for changes other processes make (Dovecot, a second maild) while sessions
   * IDLE on it: one timer per mailbox, not one per session, and no poll starts while the last
   * one runs. Changes reach the sessions as the mailbox's change events. Returns the unwatch.
   */
  watch(mailbox: Mailbox, intervalMs = IDLE_POLL_MS): () => void {
    let w = this.#watched.get(mailbox);
    if (!w) {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        mailbox
          .sync()
          .catch(() => undefined) // a removed mailbox: each session finds out at its next command
          .finally(() => (running = false));
      }, intervalMs);
      timer.unref();
      w = { watchers: 0, timer };
      this.#watched.set(mailbox, w);
    }
    const entry = w;
    entry.watchers++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--entry.watchers > 0) return;
      clearInterval(entry.timer);
      if (this.#watched.get(mailbox) === entry) this.#watched.delete(mailbox);
    };
  }

  /**
   * Runs fn once for concurrent callers with the same key: a burst of logins of one user does
   * the folder checks once, and never races itself creating the same folder.
   */
  coalesce(key: string, fn: () => Promise<void>): Promise<void> {
    let running = this.#inFlight.get(key);
    if (!running) {
      running = fn().finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, running);
    }
    return running;
  }

  /** Forgets a folder that was deleted or renamed (its sessions get errors on the next sync). */
  forget(dir: string): void {
    this.#open.delete(dir);
  }

  openMailboxes(): number {
    return this.#open.size;
  }
}

export class Account {
  readonly service: MailService;
  readonly user: UserRecord;
  readonly maildir: string;
  /** The Maildir's quota: the folders' appends, copies and expunges check and record it. */
  readonly maildirQuota: MaildirQuota;

  constructor(service: MailService, user: UserRecord, maildir: string) {
    this.service = service;
    this.user = user;
    this.maildir = maildir;
    this.maildirQuota = new MaildirQuota(maildir, user.quotaBytes, user.email);
  }

  /** The canonical spelling: INBOX (and an INBOX first level) in upper case. */
  canonical(name: string): string {
    return this.service.names.canonical(name);
  }

  /** The hierarchy separator of folder names. */
  get separator(): Separator {
    return this.service.names.separator;
  }

  /** Name and directory of a folder; BAD_MAILBOX_NAME for names that are not allowed. */
  #resolve(name: string, existing: boolean): { name: string; dir: string; levels: string[] } {
    return this.service.names.resolve(this.maildir, name, existing);
  }

  /** Opens a folder; INBOX is created on first use. Release with close(). */
  async open(name: string): Promise<Mailbox> {
    const folder = this.#resolve(name, true);
    return this.service.acquire(folder.dir, folder.name, this.maildir, this.maildirQuota, folder.dir === this.maildir);
  }

  close(mailbox: Mailbox): void {
    this.service.release(mailbox);
  }

  /** Runs fn on an opened folder and releases it. */
  async with<T>(name: string, fn: (m: Mailbox) => Promise<T>): Promise<T> {
    const mailbox = await this.open(name);
    try {
      return await fn(mailbox);
    } finally {
      this.close(mailbox);
    }
  }

  async exists(name: string): Promise<boolean> {
    const folder = this.#resolve(name, true);
    if (folder.dir === this.maildir) return true;
    return fs.stat(path.join(folder.dir, 'cur')).then(
      (s) => s.isDirectory(),
      () => false,
    );
  }

  async #specialUseOverrides(): Promise<Record<string, string>> {
    try {
      return JSON.parse(await fs.readFile(path.join(this.maildir, SPECIAL_USE_FILE), 'utf8')) as Record<string, string>;
    } catch {
      return {};
    }
  }

  async #writeSpecialUse(map: Record<string, string>): Promise<void> {
    const file = path.join(this.maildir, SPECIAL_USE_FILE);
    await replaceDurably(file, JSON.stringify(map, null, 1), { tmp: `${file}.tmp`, fsync: false });
  }

  /** Makes the Maildir's cur/, new/ and tmp/ once per process (and again after list() found it gone). */
  async #ensureRoot(): Promise<void> {
    if (this.service.rootsMade.has(this.maildir)) return;
    for (const sub of ['cur', 'new', 'tmp']) await fs.mkdir(path.join(this.maildir, sub), { recursive: true, mode: 0o700 });
    this.service.rootsMade.add(this.maildir);
  }

  /** Every folder with its attributes, INBOX first (parents that exist only as prefixes too). */
  async list(): Promise<FolderInfo[]> {
    await this.#ensureRoot();
    let folders = await this.service.names.list(this.maildir);
    if (folders.length === 1 && !(await fs.stat(path.join(this.maildir, 'cur')).catch(() => undefined))) {
      // The Maildir was removed while this process ran (a user deleted and made again): remake it.
      this.service.rootsMade.delete(this.maildir);
      await this.#ensureRoot();
      folders = await this.service.names.list(this.maildir);
    }
    const subscribed = new Set(await this.subscriptions());
    const special: Record<string, string> = {};
    for (const [name, f] of Object.entries(this.service.options.specialFolders)) special[name] = f.use;
    Object.assign(special, await this.#specialUseOverrides());
    return folders.map((f) => ({
      name: f.name,
      ...(special[f.name] && f.exists ? { specialUse: special[f.name] } : {}),
      subscribed: subscribed.has(f.name),
      hasChildren: f.hasChildren,
      exists: f.exists,
    }));
  }

  /**
   * Creates the special folders configured with auto create or subscribe that are missing (and
   * whose special use no other folder has), as Dovecot's auto = create/subscribe; by default
   * only in a Maildir that has no folder besides INBOX yet, so a migrated user's are kept as is.
   */
  ensureSpecialFolders(): Promise<void> {
    return this.service.coalesce(`special-folders\u0000${this.maildir}`, () => this.#ensureSpecialFolders());
  }

  async #ensureSpecialFolders(): Promise<void> {
    const existing = await this.list();
    const opts = this.service.options;
    if ((opts.autoSpecialFolders ?? 'new_maildir') === 'new_maildir' && existing.some((f) => f.name !== 'INBOX')) return;
    const uses = new Set(existing.filter((f) => f.exists && f.specialUse).map((f) => f.specialUse));
    for (const [name, { use, auto }] of Object.entries(opts.specialFolders)) {
      const folder = existing.find((f) => f.name === name);
      if (auto === 'no' || folder?.exists || uses.has(use)) continue;
      try {
        await this.service.names.make(this.maildir, name);
      } catch (err) {
        // Another process (or Dovecot) made it meanwhile: it exists, which is all we want.
        if (!(err instanceof MailError && err.code === 'ALREADY_EXISTS')) throw err;
      }
      uses.add(use);
      if (auto === 'subscribe' && !folder?.subscribed) await this.service.names.setSubscription(this.maildir, name, true);
    }
  }

  /**
   * The directory of a folder by name, for deliveries (Sieve's fileinto): undefined when it does
   * not exist, unless `create` (fileinto :create, RFC 5490) makes it.
   */
  async folderDir(name: string, create: boolean): Promise<{ name: string; dir: string } | undefined> {
    if (this.service.names.isInbox(name)) return { name: 'INBOX', dir: this.maildir };
    const folder = this.#resolve(name, false);
    if (await this.exists(folder.name)) return { name: folder.name, dir: folder.dir };
    if (!create) return undefined;
    await this.#ensureRoot();
    try {
      await this.service.names.make(this.maildir, folder.name);
    } catch (err) {
      if (!(err instanceof MailError && err.code === 'ALREADY_EXISTS')) throw err;
    }
    return { name: folder.name, dir: folder.dir };
  }

  /**
   * The directory of the folder with this special use, for deliveries (spam to \Junk): the
   * folder that has it (a migrated "Spam" is the \Junk folder), else the configured folder
   * for it that a login would create (Junk by default), created and subscribed now.
   */
  async specialFolderDir(use: string): Promise<{ name: string; dir: string }> {
    const found = (await this.list()).find((f) => f.exists && f.specialUse === use);
    if (found) return { name: found.name, dir: this.#resolve(found.name, true).dir };
    const configured = Object.entries(this.service.options.specialFolders);
    const name = (configured.find(([, f]) => f.use === use && f.auto !== 'no') ?? configured.find(([, f]) => f.use === use))?.[0];
    if (!name) throw new MailError('MAILBOX_NOT_FOUND', `no folder is configured with the special use ${use}`);
    await this.#ensureRoot();
    try {
      await this.service.names.make(this.maildir, name);
    } catch (err) {
      if (!(err instanceof MailError && err.code === 'ALREADY_EXISTS')) throw err;
    }
    await this.service.names.setSubscription(this.maildir, name, true);
    return { name, dir: this.#resolve(name, true).dir };
  }

  /** CREATE (RFC 3501 section 6.3.3; RFC 6154 CREATE-SPECIAL-USE). A trailing separator is dropped. */
  async create(name: string, specialUse?: string): Promise<void> {
    const trimmed = name.endsWith(this.separator) ? name.slice(0, -1) : name;
    if (this.service.names.isInbox(trimmed)) throw new MailError('ALREADY_EXISTS', 'INBOX exists');
    const folder = this.#resolve(trimmed, false);
    if (specialUse && !SPECIAL_USES.includes(specialUse)) throw new MailError('BAD_MAILBOX_NAME', `unknown special use ${specialUse}`);
    await this.#ensureRoot();
    await this.service.names.make(this.maildir, folder.name);
    if (specialUse) {
      const map = await this.#specialUseOverrides();
      map[folder.name] = specialUse;
      await this.#writeSpecialUse(map);
    }
  }

  /** DELETE (RFC 3501 section 6.3.4): never INBOX, never a folder that still has children. */
  async delete(name: string): Promise<void> {
    const folder = this.#resolve(name, true);
    if (folder.dir === this.maildir) throw new MailError('NOT_PERMITTED', 'INBOX cannot be deleted');
    if (!(await this.exists(folder.name))) throw new MailError('MAILBOX_NOT_FOUND', `no mailbox ${folder.name}`);
    const all = await this.service.names.list(this.maildir);
    if (all.some((f) => f.exists && this.service.names.isChildOf(f.name, folder.name)))
      throw new MailError('NOT_PERMITTED', 'Mailbox has children, delete them first');
    // Out of sight atomically under Dovecot's name for it, then removed.
    const trash = path.join(this.maildir, '..DOVECOT-TRASHED');
    for (let attempt = 0; ; attempt++) {
      await fs.rm(trash, { recursive: true, force: true });
      try {
        await fs.rename(folder.dir, trash);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // Deleted (or renamed) meanwhile by another session or process.
        if (code === 'ENOENT') throw new MailError('MAILBOX_NOT_FOUND', `no mailbox ${folder.name}`);
        // Another DELETE's trash is in the way: remove it and try again, as Dovecot does.
        if ((code === 'ENOTEMPTY' || code === 'EEXIST') && attempt < 5) continue;
        throw err;
      }
    }
    this.service.forget(folder.dir);
    await fs.rm(trash, { recursive: true, force: true });
    const map = await this.#specialUseOverrides();
    if (map[folder.name]) {
      delete map[folder.name];
      await this.#writeSpecialUse(map);
    }
  }

  /** RENAME (RFC 3501 section 6.3.5): children move along; INBOX's messages move into a new folder. */
  async rename(from: string, to: string): Promise<void> {
    const source = this.#resolve(from, true);
    if (this.service.names.isInbox(to)) throw new MailError('ALREADY_EXISTS', 'INBOX exists');
    const target = this.#resolve(to, false);
    if (!(await this.exists(source.name))) throw new MailError('MAILBOX_NOT_FOUND', `no mailbox ${source.name}`);
    if (await this.exists(target.name)) throw new MailError('ALREADY_EXISTS', `${target.name} exists`);
    if (this.service.names.isChildOf(target.name, source.name)) throw new MailError('NOT_PERMITTED', 'cannot rename a mailbox into itself');
    if (source.dir === this.maildir) {
      await this.create(target.name);
      const [inbox, dest] = [await this.open('INBOX'), await this.open(target.name)];
      try {
        await inbox.transfer(dest, [...inbox.uids], true);
      } finally {
        this.close(inbox);
        this.close(dest);
      }
      return;
    }
    const children = (await this.service.names.list(this.maildir)).filter(
      (f) => f.exists && this.service.names.isChildOf(f.name, source.name),
    );
    try {
      await fs.rename(source.dir, target.dir);
    } catch (err) {
      // Another session or process got there first: the source went, or the target came.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new MailError('MAILBOX_NOT_FOUND', `no mailbox ${source.name}`);
      if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new MailError('ALREADY_EXISTS', `${target.name} exists`);
      throw err;
    }
    this.service.forget(source.dir);
    for (const child of children) {
      const renamed = this.#resolve(target.name + child.name.slice(source.name.length), false);
      // A child removed meanwhile has nothing left to move.
      await fs.rename(this.#resolve(child.name, true).dir, renamed.dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      this.service.forget(this.#resolve(child.name, true).dir);
    }
    // Subscriptions follow the rename, as Dovecot does.
    for (const sub of await this.subscriptions()) {
      if (sub !== source.name && !this.service.names.isChildOf(sub, source.name)) continue;
      await this.service.names.setSubscription(this.maildir, sub, false);
      await this.service.names.setSubscription(this.maildir, target.name + sub.slice(source.name.length), true);
    }
    const map = await this.#specialUseOverrides();
    if (map[source.name]) {
      map[target.name] = map[source.name]!;
      delete map[source.name];
      await this.#writeSpecialUse(map);
    }
  }

  async subscriptions(): Promise<string[]> {
    return this.service.names.subscriptions(this.maildir);
  }

  /** SUBSCRIBE/UNSUBSCRIBE: any valid name, existing or not (RFC 3501 section 6.3.6). */
  async subscribe(name: string, on: boolean): Promise<void> {
    const folder = this.#resolve(name, true);
    await this.#ensureRoot();
    await this.service.names.setSubscription(this.maildir, folder.name, on);
  }

  async status(name: string): Promise<MailboxStatus> {
    return this.with(name, async (m) => {
      await m.sync();
      return m.status();
    });
  }

  /** Storage quota; unlimited accounts report no limit. STORAGE_ERROR when it cannot be read. */
  async quota(): Promise<{ usedBytes: number; limitBytes: number }> {
    return { usedBytes: (await this.maildirQuota.usage()).bytes, limitBytes: this.maildirQuota.limitBytes };
  }
}
