/**
 * The embedded directory: one YAML file of domains, users and aliases, for a quick start or a
 * small site. The daemon reloads it when it changes and refuses a broken edit (the last good
 * version stays in force); the CLI edits it atomically under a lock, keeping the comments.
 *
 *   domains:
 *     - example.com
 *     - name: example.net        # alias domain: bob@example.net is bob@example.com
 *       alias_for: example.com
 *   users:
 *     bob@example.com:
 *       password: "{ARGON2ID}$argon2id$v=19$..."
 *       quota: 2G                # optional, 0 = unlimited
 *       enabled: true            # optional
 *   aliases:
 *     all@example.com: [alice@example.com, bob@example.com]
 *     "@example.com": postmaster@example.com     # catch-all
 *   transports:                # optional, Postfix transport(5): where mail for a domain goes
 *     partner.example: "smtp:[mx.partner.example]:587"
 *     .partner.example: "[10.0.0.5]"              # its subdomains (not partner.example itself)
 */
import { constants as fsConstants, watch, type FSWatcher } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isMap, isScalar, isSeq, parseDocument, type Document, type YAMLMap, type YAMLSeq } from 'yaml';
import { z } from 'zod';
import { describeIssues } from '../config/load.js';
import { replaceDurably } from '../store/fsio.js';
import { size } from '../config/schema.js';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';
import { addressKey, isUnsafeDomain, isUnsafeLocalPart, splitAddress } from './address.js';
import { isUsableTransport } from './directory.js';
import type { AliasRecord, DirectoryAdmin, DirectorySource, DomainRecord, NewUser, UserRecord } from './types.js';

const domainEntry = z.union([z.string(), z.strictObject({ name: z.string(), alias_for: z.string().optional() })]);
const userEntry = z.strictObject({
  password: z.string(),
  quota: size().default(0),
  enabled: z.boolean().default(true),
  maildir: z.string().optional(),
});
const fileSchema = z
  .strictObject({
    domains: z.array(domainEntry).nullable().default([]),
    users: z.record(z.string(), userEntry).nullable().default({}),
    aliases: z
      .record(z.string(), z.union([z.string(), z.array(z.string())]))
      .nullable()
      .default({}),
    transports: z.record(z.string(), z.string()).nullable().default({}),
  })
  .nullable();

interface Snapshot {
  domains: Map<string, DomainRecord>;
  users: Map<string, UserRecord>;
  aliases: Map<string, string[]>;
  /** Domain or ".domain" (its subdomains), lower case, without a trailing dot -> transport. */
  transports: Map<string, string>;
}

/** Parses and checks directory text; throws MailError CONFIG_INVALID naming each problem. */
function parseDirectoryText(text: string, where: string): Snapshot {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new MailError('CONFIG_INVALID', `${where}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  }
  const parsed = fileSchema.safeParse(doc.toJS() ?? null);
  if (!parsed.success) {
    throw new MailError('CONFIG_INVALID', `${where}: ${describeIssues(parsed.error.issues).join('; ')}`);
  }
  const data = parsed.data ?? { domains: [], users: {}, aliases: {}, transports: {} };
  const problems: string[] = [];
  const snap: Snapshot = { domains: new Map(), users: new Map(), aliases: new Map(), transports: new Map() };

  for (const [i, entry] of (data.domains ?? []).entries()) {
    const rec: DomainRecord =
      typeof entry === 'string' ? { name: entry } : { name: entry.name, ...(entry.alias_for ? { aliasFor: entry.alias_for } : {}) };
    rec.name = rec.name.trim().toLowerCase();
    if (rec.aliasFor) rec.aliasFor = rec.aliasFor.trim().toLowerCase();
    if (isUnsafeDomain(rec.name) || rec.name.includes('@')) problems.push(`domains[${i}]: not a domain name: ${JSON.stringify(rec.name)}`);
    else if (snap.domains.has(rec.name)) problems.push(`domains[${i}]: ${rec.name} is listed twice`);
    else snap.domains.set(rec.name, rec);
  }
  for (const rec of snap.domains.values()) {
    if (!rec.aliasFor) continue;
    const target = snap.domains.get(rec.aliasFor);
    if (!target) problems.push(`domains: ${rec.name} is an alias of ${rec.aliasFor}, which is not listed`);
    else if (target.aliasFor) problems.push(`domains: ${rec.name} is an alias of ${rec.aliasFor}, which is an alias domain itself`);
  }

  for (const [email, entry] of Object.entries(data.users ?? {})) {
    const key = addressKey(email.trim());
    const split = splitAddress(key);
    if (!split || isUnsafeLocalPart(split.local)) {
      problems.push(`users.${email}: not a usable address`);
      continue;
    }
    const domain = snap.domains.get(split.domain);
    if (!domain) problems.push(`users.${email}: domain ${split.domain} is not in domains`);
    else if (domain.aliasFor) problems.push(`users.${email}: ${split.domain} is an alias domain; mailboxes belong to ${domain.aliasFor}`);
    if (snap.users.has(key)) problems.push(`users.${email}: listed twice (addresses are case-insensitive)`);
    if (entry.maildir !== undefined && (entry.maildir.startsWith('/') || entry.maildir.split('/').includes('..'))) {
      problems.push(`users.${email}.maildir: must be a path below the mail root`);
    }
    snap.users.set(key, {
      email: key,
      password: entry.password,
      quotaBytes: entry.quota,
      enabled: entry.enabled,
      ...(entry.maildir !== undefined ? { maildir: entry.maildir } : {}),
    });
  }

  for (const [source, dest] of Object.entries(data.aliases ?? {})) {
    const key = source.trim().startsWith('@') ? source.trim().toLowerCase() : addressKey(source.trim());
    const domainName = key.startsWith('@') ? key.slice(1) : splitAddress(key)?.domain;
    if (!domainName || !snap.domains.has(domainName)) problems.push(`aliases.${source}: domain ${domainName ?? '?'} is not in domains`);
    const list = (Array.isArray(dest) ? dest : [dest])
      .flatMap((d) => d.split(','))
      .map((d) => d.trim())
      .filter(Boolean);
    if (list.length === 0) problems.push(`aliases.${source}: no destination`);
    for (const d of list) {
      if (!d.startsWith('@') && !splitAddress(d)) problems.push(`aliases.${source}: ${JSON.stringify(d)} is not an address`);
    }
    if (snap.aliases.has(key)) problems.push(`aliases.${source}: listed twice (addresses are case-insensitive)`);
    snap.aliases.set(key, list);
  }

  // transport(5) keys: "domain" or ".domain"; they need not be hosted domains (relaying is their point).
  for (const [domain, transport] of Object.entries(data.transports ?? {})) {
    const key = domain.trim().toLowerCase().replace(/\.$/, '');
    const name = key.startsWith('.') ? key.slice(1) : key;
    if (key === '*') {
      // transport(5)'s catch-all default entry: the queue's relayhost setting is that here.
      problems.push(`transports.*: the "*" default entry is not supported (use queue.relayhost)`);
      continue;
    }
    if (isUnsafeDomain(name) || name.includes('@') || /\s/.test(name)) {
      problems.push(`transports.${domain}: not a domain name or .domain`);
      continue;
    }
    if (!isUsableTransport(transport))
      problems.push(`transports.${domain}: ${JSON.stringify(transport)} is not a transport (empty, or white space)`);
    if (snap.transports.has(key)) problems.push(`transports.${domain}: listed twice (domains are case-insensitive)`);
    snap.transports.set(key, transport);
  }

  if (problems.length > 0) throw new MailError('CONFIG_INVALID', `${where}: ${problems.join('; ')}`);
  return snap;
}

const POLL_INTERVAL_MS = 2000;
const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

export interface FileDirectoryOptions {
  logger: Logger;
  /** Watch the file and reload on change (the daemon); the CLI does not. */
  watch?: boolean;
  /** Copied to the path when the file does not exist yet (quick-start seed). */
  initial?: string;
  /** Create an empty directory file when it is missing (the CLI's first `domain add`). */
  createIfMissing?: boolean;
}

export class FileDirectory implements DirectorySource, DirectoryAdmin {
  readonly kind = 'file' as const;
  readonly path: string;
  #snap: Snapshot;
  #lastText: string;
  #listeners: Array<() => void> = [];
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #statKey = '';
  #reloading: Promise<void> | undefined;
  readonly #logger: Logger;

  private constructor(file: string, text: string, snap: Snapshot, logger: Logger) {
    this.path = file;
    this.#lastText = text;
    this.#snap = snap;
    this.#logger = logger;
  }

  /** Loads the file; a missing or invalid file is an error here (there is no last good version yet). */
  static async open(file: string, opts: FileDirectoryOptions): Promise<FileDirectory> {
    const abs = path.resolve(file);
    let text: string;
    try {
      text = await fs.readFile(abs, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new MailError('CONFIG_INVALID', `${abs}: cannot read: ${(err as Error).message}`);
      if (opts.initial) {
        await fs.mkdir(path.dirname(abs), { recursive: true });
        await fs.copyFile(opts.initial, abs, fsConstants.COPYFILE_EXCL).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
        opts.logger.info({ path: abs, from: opts.initial }, 'created the directory file from its initial version');
      } else if (opts.createIfMissing) {
        await writeFileAtomic(abs, 'domains: []\nusers: {}\naliases: {}\n');
      } else {
        throw new MailError('CONFIG_INVALID', `${abs}: directory file does not exist (directory.file.path)`);
      }
      text = await fs.readFile(abs, 'utf8');
    }
    const dir = new FileDirectory(abs, text, parseDirectoryText(text, abs), opts.logger);
    if (opts.watch) await dir.#startWatching();
    return dir;
  }

  // ---- lookups ------------------------------------------------------------------------------

  async lookupDomain(domain: string): Promise<DomainRecord | null> {
    return this.#snap.domains.get(domain) ?? null;
  }

  async lookupUser(email: string): Promise<UserRecord | null> {
    return this.#snap.users.get(email) ?? null;
  }

  async lookupAlias(address: string): Promise<string[] | null> {
    return this.#snap.aliases.get(address) ?? null;
  }

  async lookupTransport(domain: string): Promise<string | null> {
    return this.#snap.transports.get(domain) ?? null;
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#watcher?.close();
    if (this.#poll) clearInterval(this.#poll);
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#watcher = undefined;
    this.#poll = undefined;
  }

  // ---- reloading ----------------------------------------------------------------------------

  async #startWatching(): Promise<void> {
    this.#statKey = await this.#currentStatKey();
    const schedule = () => {
      if (this.#debounce) clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => void this.reload(), 50);
      this.#debounce.unref();
    };
    try {
      // Watch the directory, not the file: editors and our CLI replace the file by rename.
      this.#watcher = watch(path.dirname(this.path), { persistent: false }, (_event, name) => {
        if (name === null || name === path.basename(this.path)) schedule();
      });
      this.#watcher.on('error', () => undefined);
    } catch {
      // Some filesystems (network mounts) cannot be watched; the poll below still works.
    }
    this.#poll = setInterval(async () => {
      const key = await this.#currentStatKey();
      if (key !== this.#statKey) schedule();
    }, POLL_INTERVAL_MS);
    this.#poll.unref();
  }

  async #currentStatKey(): Promise<string> {
    try {
      const st = await fs.stat(this.path);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  /** Re-reads the file; a broken version is logged and ignored. Also used for SIGHUP. */
  reload(): Promise<void> {
    // One reload at a time; a change during a reload schedules another through the watcher.
    this.#reloading ??= this.#reloadOnce().finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  async #reloadOnce(): Promise<void> {
    this.#statKey = await this.#currentStatKey();
    let text: string;
    try {
      text = await fs.readFile(this.path, 'utf8');
    } catch (err) {
      this.#logger.error({ path: this.path, err: (err as Error).message }, 'directory file unreadable, keeping the last good version');
      return;
    }
    if (text === this.#lastText) return;
    try {
      this.#snap = parseDirectoryText(text, this.path);
      this.#lastText = text;
    } catch (err) {
      this.#logger.error({ path: this.path, err: (err as Error).message }, 'directory file invalid, keeping the last good version');
      return;
    }
    this.#logger.info(
      {
        path: this.path,
        domains: this.#snap.domains.size,
        users: this.#snap.users.size,
        aliases: this.#snap.aliases.size,
        transports: this.#snap.transports.size,
      },
      'directory file reloaded',
    );
    for (const listener of this.#listeners) listener();
  }

  // ---- administration -----------------------------------------------------------------------

  async listDomains(): Promise<DomainRecord[]> {
    return [...this.#snap.domains.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async listUsers(domain?: string): Promise<UserRecord[]> {
    const d = domain?.toLowerCase();
    return [...this.#snap.users.values()].filter((u) => !d || u.email.endsWith(`@${d}`)).sort((a, b) => a.email.localeCompare(b.email));
  }

  async listAliases(domain?: string): Promise<AliasRecord[]> {
    const d = domain?.toLowerCase();
    const out: AliasRecord[] = [];
    for (const [source, dests] of this.#snap.aliases) {
      if (d && !source.endsWith(`@${d}`)) continue;
      for (const destination of dests) out.push({ source, destination });
    }
    return out.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
  }

  async addDomain(name: string, aliasFor?: string): Promise<void> {
    const domain = name.trim().toLowerCase();
    await this.#edit((doc, snap) => {
      if (snap.domains.has(domain)) throw new MailError('ALREADY_EXISTS', `domain ${domain} exists`);
      const node = aliasFor ? doc.createNode({ name: domain, alias_for: aliasFor.toLowerCase() }) : domain;
      const seq = doc.get('domains');
      if (isSeq(seq)) seq.add(node);
      else doc.set('domains', doc.createNode([aliasFor ? { name: domain, alias_for: aliasFor.toLowerCase() } : domain]));
    });
  }

  async deleteDomain(name: string, force = false): Promise<void> {
    const domain = name.trim().toLowerCase();
    await this.#edit((doc, snap) => {
      if (!snap.domains.has(domain)) throw new MailError('NOT_FOUND', `no domain ${domain}`);
      const users = [...snap.users.keys()].filter((u) => u.endsWith(`@${domain}`));
      const aliases = [...snap.aliases.keys()].filter((a) => a.endsWith(`@${domain}`));
      const dependents = [...snap.domains.values()].filter((d) => d.aliasFor === domain).map((d) => d.name);
      if (!force && (users.length || aliases.length || dependents.length)) {
        throw new MailError(
          'ALREADY_EXISTS',
          `domain ${domain} still has ${users.length} users, ${aliases.length} aliases and ${dependents.length} alias domains (use --force to delete them too)`,
        );
      }
      for (const u of users) deleteKey(doc, 'users', u);
      for (const a of aliases) deleteKey(doc, 'aliases', a);
      const seq = doc.get('domains') as YAMLSeq;
      seq.items = seq.items.filter((item) => {
        const n = domainNameOf(item);
        return n !== domain && !dependents.includes(n ?? '');
      });
    });
  }

  async addUser(user: NewUser): Promise<void> {
    const email = addressKey(user.email);
    await this.#edit((doc, snap) => {
      if (snap.users.has(email)) throw new MailError('ALREADY_EXISTS', `user ${email} exists`);
      const entry: Record<string, unknown> = { password: user.password };
      if (user.quotaBytes) entry.quota = user.quotaBytes;
      if (!user.enabled) entry.enabled = false;
      const users = doc.get('users');
      if (isMap(users)) users.set(email, doc.createNode(entry));
      else doc.set('users', doc.createNode({ [email]: entry }));
    });
  }

  async updateUser(email: string, changes: Partial<Pick<UserRecord, 'password' | 'enabled' | 'quotaBytes'>>): Promise<void> {
    const key = addressKey(email);
    await this.#edit((doc, snap) => {
      if (!snap.users.has(key)) throw new MailError('NOT_FOUND', `no user ${key}`);
      const entry = (doc.get('users') as YAMLMap).get(findKey(doc.get('users') as YAMLMap, key)) as YAMLMap;
      if (changes.password !== undefined) entry.set('password', changes.password);
      if (changes.enabled !== undefined) entry.set('enabled', changes.enabled);
      if (changes.quotaBytes !== undefined) entry.set('quota', changes.quotaBytes);
    });
  }

  async updatePassword(email: string, expected: string, makeHash: () => Promise<string>): Promise<boolean> {
    const key = addressKey(email);
    const hash = await makeHash();
    let updated = false;
    await this.#edit((doc, snap) => {
      if (snap.users.get(key)?.password !== expected) return false;
      const entry = (doc.get('users') as YAMLMap).get(findKey(doc.get('users') as YAMLMap, key)) as YAMLMap;
      entry.set('password', hash);
      updated = true;
      return true;
    });
    return updated;
  }

  async deleteUser(email: string): Promise<void> {
    const key = addressKey(email);
    await this.#edit((doc, snap) => {
      if (!snap.users.has(key)) throw new MailError('NOT_FOUND', `no user ${key}`);
      deleteKey(doc, 'users', key);
    });
  }

  async addAlias(source: string, destination: string): Promise<void> {
    const src = source.startsWith('@') ? source.toLowerCase() : addressKey(source);
    const dest = destination.trim();
    await this.#edit((doc, snap) => {
      const existing = snap.aliases.get(src) ?? [];
      if (existing.some((d) => d.toLowerCase() === dest.toLowerCase()))
        throw new MailError('ALREADY_EXISTS', `alias ${src} -> ${dest} exists`);
      const aliases = doc.get('aliases');
      if (!isMap(aliases)) {
        doc.set('aliases', doc.createNode({ [src]: dest }));
        return;
      }
      const k = findKey(aliases, src);
      const cur = aliases.get(k);
      if (cur === undefined) aliases.set(src, dest);
      else aliases.set(k, doc.createNode([...existing, dest], { flow: true }));
    });
  }

  async deleteAlias(source: string, destination?: string): Promise<void> {
    const src = source.startsWith('@') ? source.toLowerCase() : addressKey(source);
    await this.#edit((doc, snap) => {
      const existing = snap.aliases.get(src);
      if (!existing) throw new MailError('NOT_FOUND', `no alias ${src}`);
      if (destination === undefined) {
        deleteKey(doc, 'aliases', src);
        return;
      }
      const rest = existing.filter((d) => d.toLowerCase() !== destination.trim().toLowerCase());
      if (rest.length === existing.length) throw new MailError('NOT_FOUND', `no alias ${src} -> ${destination}`);
      const aliases = doc.get('aliases') as YAMLMap;
      if (rest.length === 0) deleteKey(doc, 'aliases', src);
      else aliases.set(findKey(aliases, src), rest.length === 1 ? rest[0] : doc.createNode(rest, { flow: true }));
    });
  }

  /**
   * Read-modify-write under a lock file: re-reads the current file (another admin may have
   * changed it), applies the edit to the YAML document (comments survive), validates the result
   * as the daemon will, then replaces the file atomically. An edit returning false writes nothing.
   */
  async #edit(change: (doc: Document, snap: Snapshot) => void | boolean): Promise<void> {
    const release = await acquireLock(`${this.path}.lock`);
    try {
      const text = await fs.readFile(this.path, 'utf8');
      const snap = parseDirectoryText(text, this.path);
      const doc = parseDocument(text, { uniqueKeys: true });
      if (doc.contents === null) doc.contents = doc.createNode({}) as never;
      // false: nothing to change, the file is left alone.
      if (change(doc, snap) === false) return;
      // No folding: a hash stays on one line, as an operator greps for it.
      const next = doc.toString({ lineWidth: 0 });
      this.#snap = parseDirectoryText(next, this.path);
      await writeFileAtomic(this.path, next);
      this.#lastText = next;
      for (const listener of this.#listeners) listener();
    } finally {
      await release();
    }
  }
}

function domainNameOf(item: unknown): string | undefined {
  if (isScalar(item)) return String(item.value).toLowerCase();
  if (isMap(item)) return String(item.get('name')).toLowerCase();
  return undefined;
}

/** The key as written in the file (it may differ in case from the normalised one). */
function findKey(map: YAMLMap, key: string): unknown {
  for (const pair of map.items) {
    const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const normal = k.startsWith('@') ? k.toLowerCase() : addressKey(k);
    if (normal === key) return pair.key;
  }
  return key;
}

function deleteKey(doc: Document, section: string, key: string): void {
  const map = doc.get(section);
  if (isMap(map)) map.delete(findKey(map, key));
}

/** Writes a file so that readers see the old or the new version, never a mix (temp + fsync + rename). */
async function writeFileAtomic(file: string, text: string, mode = 0o640): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  let fileMode = mode;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = await fs.stat(file);
    fileMode = st.mode & 0o777;
    owner = st;
  } catch {
    // new file
  }
  await replaceDurably(file, text, {
    tmp,
    mode: fileMode,
    exclusive: true,
    // The CLI run as root keeps a file the daemon (dropped to its user) must still read and rewrite.
    before: async (fh) => {
      if (owner && process.getuid?.() === 0) await fh.chown(owner.uid, owner.gid);
    },
  });
}

async function acquireLock(lockPath: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await fs.open(lockPath, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => fs.unlink(lockPath).catch(() => undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fs.stat(lockPath).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) {
        await fs.unlink(lockPath).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw new MailError('TEMP_FAIL', `${lockPath} is held by another process`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
