/**
 * The user's active Sieve script where Pigeonhole looks for it: `~/.dovecot.sieve`, a symlink to
 * `~/sieve/NAME.sieve` (or a plain file put there by hand), with ~ the user's home, here the
 * Maildir directory (Dovecot's home for mail_location = maildir:~ setups). The stamp (mtime, size,
 * inode) tells the compiled-script cache when to compile again.
 */
import { readFileSync, statSync, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { UserRecord } from '../directory/types.js';
import { maildirPath } from './maildir.js';
import { DEFAULT_SIEVE_LOCATION, resolveSieveLocation } from './sieve-scripts.js';

/** A script file as found: its version (mtime, size, inode) and how to read it. */
export interface ScriptFile {
  stamp: string;
  read(): Promise<string>;
}

export type IncludeScope = 'personal' | 'global';

export interface ActiveSieveScripts {
  /** The active script, stat'ed only: it is read when its stamp is not the compiled one's. */
  active(user: UserRecord): Promise<ScriptFile | undefined>;
  home(user: UserRecord): string;
  /**
   * RFC 6609's include: a personal script is ~/sieve/NAME.sieve, a global one NAME.sieve in the
   * global directory (Pigeonhole's sieve_global). Read while compiling (rarely: compiled scripts
   * are cached), so synchronously; undefined when there is none.
   */
  include(user: UserRecord, name: string, scope: IncludeScope): { text: string; stamp: string } | undefined;
  /** The stamp of an included script now ('' when there is none): a change means compiling again. */
  includeStamp(user: UserRecord, name: string, scope: IncludeScope): Promise<string>;
}

/** What tells one version of a file from another. */
export const fileStamp = (st: Stats) => `${st.mtimeMs}:${st.size}:${st.ino}`;

/** A global script file (sieve_before / sieve_after), or undefined when there is none. */
export async function scriptFile(file: string): Promise<ScriptFile | undefined> {
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  return { stamp: fileStamp(st), read: () => fs.readFile(file, 'utf8') };
}

export function activeSieveScripts(
  root: string,
  layout: string,
  maxBytes: number,
  globalDir: string,
  /** Pigeonhole's `sieve` setting (sieve.location), read at each use so that a reload applies. */
  location: () => string = () => DEFAULT_SIEVE_LOCATION,
): ActiveSieveScripts {
  const home = (user: UserRecord) => maildirPath(root, layout, user);
  const where = (user: UserRecord) => resolveSieveLocation(location(), home(user), user);
  // A name is a file name (RFC 6609 section 3.2 leaves the form to the implementation).
  const includeFile = (user: UserRecord, name: string, scope: IncludeScope) =>
    !name || name.includes('/') || name.startsWith('.')
      ? undefined
      : scope === 'personal'
        ? path.join(where(user).dir, `${name}.sieve`)
        : path.join(globalDir, `${name}.sieve`);
  return {
    home,
    include(user, name, scope) {
      const file = includeFile(user, name, scope);
      if (!file) return undefined;
      try {
        const stamp = fileStamp(statSync(file));
        const text = readFileSync(file, 'utf8');
        return Buffer.byteLength(text) > maxBytes ? undefined : { text, stamp };
      } catch {
        return undefined;
      }
    },
    async includeStamp(user, name, scope) {
      const file = includeFile(user, name, scope);
      const st = file ? await fs.stat(file).catch(() => undefined) : undefined;
      return st ? fileStamp(st) : '';
    },
    async active(user) {
      const link = where(user).active;
      const st = await fs.stat(link).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
        throw err;
      });
      if (!st?.isFile()) return undefined;
      if (st.size > maxBytes) throw new Error(`${link} is larger than sieve.max_script_size`);
      return { stamp: fileStamp(st), read: () => fs.readFile(link, 'utf8') };
    },
  };
}
