/**
 * Where a user's Sieve scripts live, in Pigeonhole's layout so that Dovecot's LDA/LMTP and
 * managesieved read what maild wrote and the other way round (Pigeonhole's "file" storage with
 * sieve = file:~/sieve;active=~/.dovecot.sieve):
 *
 *   HOME/sieve/NAME.sieve     one file per script
 *   HOME/sieve/tmp/           where a new script is written before it is renamed into place
 *   HOME/.dovecot.sieve       the active script: a symlink to "sieve/NAME.sieve" (absent: none)
 *
 * HOME is the user's Maildir directory (sieveHome): with mail_location = maildir:~/Maildir that
 * is not Dovecot's home, with the usual virtual setup (home = /var/mail/vhosts/%d/%n,
 * mail_location = maildir:~) it is. This is the only module that touches the script files; the
 * protocol uses the SieveScriptStore interface.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { UserRecord } from '../directory/types.js';
import { maildirPath } from './maildir.js';

/** Why a script operation was refused; the protocol maps these to RFC 5804 response codes. */
export type SieveStoreErrorCode =
  'NONEXISTENT' | 'ALREADYEXISTS' | 'ACTIVE' | 'BADNAME' | 'QUOTA/MAXSCRIPTS' | 'QUOTA/MAXSIZE' | 'QUOTA/MAXSTORAGE';

export class SieveStoreError extends Error {
  readonly code: SieveStoreErrorCode;
  constructor(code: SieveStoreErrorCode, message: string) {
    super(message);
    this.name = 'SieveStoreError';
    this.code = code;
  }
}

export interface SieveQuota {
  /** Scripts per user, 0 for no limit (Pigeonhole's sieve_quota_max_scripts). */
  maxScripts: number;
  /** Octets of one script (Pigeonhole's sieve_max_script_size). */
  maxScriptSize: number;
  /** Octets of all scripts of a user, 0 for no limit (sieve_quota_max_storage). */
  maxStorage: number;
}

export interface SieveScriptInfo {
  name: string;
  active: boolean;
}

/** What ManageSieve needs of a user's scripts (no file system in the protocol code). */
export interface SieveScriptStore {
  list(): Promise<SieveScriptInfo[]>;
  /** The script's bytes; SieveStoreError NONEXISTENT when there is none. */
  get(name: string): Promise<Buffer>;
  /** Creates or replaces a script, durably (temporary file, fsync, rename). */
  put(name: string, text: Buffer): Promise<void>;
  /** Refused for the active script (RFC 5804 section 2.10: ACTIVE). */
  delete(name: string): Promise<void>;
  /** The active script stays active under its new name (RFC 5804 section 2.11.1). */
  rename(oldName: string, newName: string): Promise<void>;
  /** '' deactivates (RFC 5804 section 2.8). */
  setActive(name: string): Promise<void>;
  /** Throws SieveStoreError QUOTA/* when a script of this size could not be stored under this name. */
  haveSpace(name: string, size: number): Promise<void>;
}

const SUFFIX = '.sieve';
/** Longest script name in UTF-8 octets: with ".sieve" it must fit a file name (255 octets on Linux). */
export const MAX_SCRIPT_NAME = 240;

/** The directory the scripts live below: the user's Maildir (see the module comment). */
export function sieveHome(mailRoot: string, layout: string, user: UserRecord): string {
  return maildirPath(mailRoot, layout, user);
}

/** Pigeonhole's default `sieve` setting (Debian's 90-sieve.conf). */
export const DEFAULT_SIEVE_LOCATION = 'file:~/sieve;active=~/.dovecot.sieve';

/** A user's script directory and active-script path, resolved. */
export interface SieveLocation {
  dir: string;
  active: string;
}

/**
 * Pigeonhole's `sieve = [file:]DIR;active=PATH` for one user: `~` is the home (the Maildir), `%u`
 * the address, `%n` its local part, `%d` its domain, `%%` a percent sign. Other parameters
 * (`;index=`, ...) are Pigeonhole's own and ignored. Without `;active=` the active script is
 * ~/.dovecot.sieve. Throws on a value that names no directory.
 */
export function resolveSieveLocation(value: string, home: string, user: Pick<UserRecord, 'email'>): SieveLocation {
  const [main = '', ...params] = value.split(';');
  const dirTemplate = main.replace(/^file:/, '').trim();
  const activeTemplate =
    params.map((p) => /^\s*active\s*=\s*(.*)$/.exec(p)?.[1]?.trim()).find((a) => a !== undefined) ?? '~/.dovecot.sieve';
  if (!dirTemplate || !activeTemplate) throw new Error(`sieve.location ${JSON.stringify(value)}: give file:DIR;active=PATH`);
  const at = user.email.lastIndexOf('@');
  const vars: Record<string, string> = {
    u: user.email,
    n: at < 0 ? user.email : user.email.slice(0, at),
    d: at < 0 ? '' : user.email.slice(at + 1),
    '%': '%',
  };
  const expand = (t: string) => {
    const withVars = t.replace(/%([und%])/g, (_, v: string) => vars[v]!);
    return path.resolve(home, withVars === '~' ? '.' : withVars.replace(/^~\//, ''));
  };
  return { dir: expand(dirTemplate), active: expand(activeTemplate) };
}

/**
 * RFC 5804 section 1.6: a script name is UTF-8 without control characters (U+0000-U+001F,
 * U+007F-U+009F) or line/paragraph separators (U+2028, U+2029); as a file name it may not
 * contain '/' either, nor be empty or longer than MAX_SCRIPT_NAME octets.
 */
export function scriptNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'Script name is empty';
  if (Buffer.byteLength(name) > MAX_SCRIPT_NAME) return 'Script name is too long';
  // Lone surrogates come from bytes that were not UTF-8.
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(name)) return 'Script name is not valid UTF-8';
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(name)) return 'Script name contains control characters';
  if (name.includes('/')) return "Script name contains '/'";
  return undefined;
}

function checkName(name: string): void {
  const problem = scriptNameProblem(name);
  if (problem) throw new SieveStoreError('BADNAME', problem);
}

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** The scripts of one user in Pigeonhole's layout below `home`. */
export class SieveScripts implements SieveScriptStore {
  readonly home: string;
  readonly #quota: SieveQuota;
  readonly #dir: string;
  /** The active script's symlink. */
  readonly #active: string;

  constructor(
    home: string,
    quota: SieveQuota,
    location: SieveLocation = { dir: path.join(home, 'sieve'), active: path.join(home, '.dovecot.sieve') },
  ) {
    this.home = home;
    this.#quota = quota;
    this.#dir = location.dir;
    this.#active = location.active;
  }

  #file(name: string): string {
    return path.join(this.#dir, name + SUFFIX);
  }

  /** The name of the active script: the target of the .dovecot.sieve symlink, if it is one of ours. */
  async activeName(): Promise<string | undefined> {
    let target: string;
    try {
      target = await fs.readlink(this.#active);
    } catch (err) {
      // Absent, or a regular file (a script placed by hand): no script of ours is active.
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return undefined;
      throw err;
    }
    const resolved = path.resolve(path.dirname(this.#active), target);
    if (path.dirname(resolved) !== this.#dir || !resolved.endsWith(SUFFIX)) return undefined;
    return path.basename(resolved).slice(0, -SUFFIX.length);
  }

  /** Every script with its size. */
  async #scripts(): Promise<Map<string, number>> {
    let entries: string[];
    try {
      entries = await fs.readdir(this.#dir);
    } catch (err) {
      if (isMissing(err)) return new Map();
      throw err;
    }
    const out = new Map<string, number>();
    for (const entry of entries) {
      if (!entry.endsWith(SUFFIX) || entry.length === SUFFIX.length) continue;
      const st = await fs.stat(path.join(this.#dir, entry)).catch(() => undefined);
      if (st?.isFile()) out.set(entry.slice(0, -SUFFIX.length), st.size);
    }
    return out;
  }

  async list(): Promise<SieveScriptInfo[]> {
    const [scripts, active] = await Promise.all([this.#scripts(), this.activeName()]);
    return [...scripts.keys()].sort().map((name) => ({ name, active: name === active }));
  }

  async get(name: string): Promise<Buffer> {
    checkName(name);
    try {
      return await fs.readFile(this.#file(name));
    } catch (err) {
      if (isMissing(err)) throw new SieveStoreError('NONEXISTENT', 'Script does not exist');
      throw err;
    }
  }

  async haveSpace(name: string, size: number): Promise<void> {
    checkName(name);
    const q = this.#quota;
    if (size > q.maxScriptSize) throw new SieveStoreError('QUOTA/MAXSIZE', `Script is larger than ${q.maxScriptSize} octets`);
    if (q.maxScripts === 0 && q.maxStorage === 0) return;
    const scripts = await this.#scripts();
    if (q.maxScripts > 0 && !scripts.has(name) && scripts.size >= q.maxScripts)
      throw new SieveStoreError('QUOTA/MAXSCRIPTS', `No more than ${q.maxScripts} scripts allowed`);
    if (q.maxStorage > 0) {
      let used = 0;
      for (const [other, bytes] of scripts) if (other !== name) used += bytes;
      if (used + size > q.maxStorage)
        throw new SieveStoreError('QUOTA/MAXSTORAGE', `Script storage quota exceeded (max ${q.maxStorage} octets)`);
    }
  }

  async put(name: string, text: Buffer): Promise<void> {
    await this.haveSpace(name, text.length);
    const tmpDir = path.join(this.#dir, 'tmp');
    await fs.mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const tmp = path.join(tmpDir, `${name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)}.${process.pid}.${randomBytes(6).toString('hex')}`);
    const handle = await fs.open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } catch (err) {
      await handle.close().catch(() => undefined);
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
    await handle.close();
    try {
      await fs.rename(tmp, this.#file(name));
    } catch (err) {
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.#dir);
  }

  async delete(name: string): Promise<void> {
    checkName(name);
    if ((await this.activeName()) === name) throw new SieveStoreError('ACTIVE', 'Active script cannot be deleted');
    try {
      await fs.unlink(this.#file(name));
    } catch (err) {
      if (isMissing(err)) throw new SieveStoreError('NONEXISTENT', 'Script does not exist');
      throw err;
    }
    await syncDir(this.#dir);
  }

  async rename(oldName: string, newName: string): Promise<void> {
    checkName(oldName);
    checkName(newName);
    const scripts = await this.#scripts();
    if (!scripts.has(oldName)) throw new SieveStoreError('NONEXISTENT', 'Script does not exist');
    if (oldName === newName) return;
    if (scripts.has(newName)) throw new SieveStoreError('ALREADYEXISTS', 'A script with that name already exists');
    const wasActive = (await this.activeName()) === oldName;
    // link + unlink rather than rename: a script created meanwhile under the new name is not replaced.
    try {
      await fs.link(this.#file(oldName), this.#file(newName));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw new SieveStoreError('ALREADYEXISTS', 'A script with that name already exists');
      throw err;
    }
    if (wasActive) await this.#pointActiveLink(newName);
    await fs.unlink(this.#file(oldName));
    await syncDir(this.#dir);
  }

  async setActive(name: string): Promise<void> {
    const link = this.#active;
    if (name === '') {
      // Only our symlink is removed; a regular file placed by hand is not ours to delete.
      if ((await this.activeName()) !== undefined) await fs.unlink(link);
      return;
    }
    checkName(name);
    const exists = await fs.stat(this.#file(name)).then(
      (st) => st.isFile(),
      () => false,
    );
    if (!exists) throw new SieveStoreError('NONEXISTENT', 'Script does not exist');
    await this.#pointActiveLink(name);
  }

  /** A new symlink renamed over .dovecot.sieve: readers see the old or the new target, never none. */
  async #pointActiveLink(name: string): Promise<void> {
    const link = this.#active;
    await this.#adoptHandPlacedScript(link);
    await fs.mkdir(path.dirname(link), { recursive: true, mode: 0o700 });
    const tmp = `${link}.${process.pid}.${randomBytes(6).toString('hex')}`;
    // Relative, as Pigeonhole writes it ("sieve/NAME.sieve"): the tree may move.
    await fs.symlink(path.relative(path.dirname(link), this.#file(name)), tmp);
    try {
      await fs.rename(tmp, link);
    } catch (err) {
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
    await syncDir(path.dirname(link));
  }

  /**
   * A regular file at .dovecot.sieve (a script placed by hand before ManageSieve) is not
   * replaced but moved among the scripts as "dovecot.orig" (or "dovecot.orig-N"), as Pigeonhole does.
   */
  async #adoptHandPlacedScript(link: string): Promise<void> {
    const st = await fs.lstat(link).catch(() => undefined);
    if (!st || st.isSymbolicLink()) return;
    await fs.mkdir(this.#dir, { recursive: true, mode: 0o700 });
    for (let n = 0; n < 100; n++) {
      const name = n === 0 ? 'dovecot.orig' : `dovecot.orig-${n}`;
      try {
        // link + unlink: an existing script of that name is never replaced.
        await fs.link(link, this.#file(name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      await fs.unlink(link);
      return;
    }
    throw new SieveStoreError('ALREADYEXISTS', 'Cannot move the existing .dovecot.sieve file aside');
  }
}

/** Makes a rename or unlink in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
