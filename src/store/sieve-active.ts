/**
 * The user's active Sieve script where Pigeonhole looks for it: `~/.dovecot.sieve`, a symlink to
 * `~/sieve/NAME.sieve` (or a plain file put there by hand), with ~ the user's home, here the
 * Maildir directory (Dovecot's home for mail_location = maildir:~ setups). The stamp (mtime, size,
 * inode) tells the compiled-script cache when to compile again.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { UserRecord } from '../directory/types.js';
import { maildirPath } from './maildir.js';

export interface ActiveSieveScripts {
  active(user: UserRecord): Promise<{ name: string; text: string; stamp: string } | undefined>;
  home(user: UserRecord): string;
  /**
   * RFC 6609's include: a personal script is ~/sieve/NAME.sieve, a global one NAME.sieve in the
   * global directory (Pigeonhole's sieve_global). Read while compiling (rarely: compiled scripts
   * are cached), so synchronously; undefined when there is none.
   */
  include(user: UserRecord, name: string, scope: 'personal' | 'global'): string | undefined;
}

export function activeSieveScripts(root: string, layout: string, maxBytes: number, globalDir: string): ActiveSieveScripts {
  const home = (user: UserRecord) => maildirPath(root, layout, user);
  return {
    home,
    include(user, name, scope) {
      // A name is a file name (RFC 6609 section 3.2 leaves the form to the implementation).
      if (!name || name.includes('/') || name.startsWith('.')) return undefined;
      const file = scope === 'personal' ? path.join(home(user), 'sieve', `${name}.sieve`) : path.join(globalDir, `${name}.sieve`);
      try {
        const text = readFileSync(file, 'utf8');
        return Buffer.byteLength(text) > maxBytes ? undefined : text;
      } catch {
        return undefined;
      }
    },
    async active(user) {
      const link = path.join(home(user), '.dovecot.sieve');
      const st = await fs.stat(link).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
        throw err;
      });
      if (!st?.isFile()) return undefined;
      if (st.size > maxBytes) throw new Error(`${link} is larger than sieve.max_script_size`);
      const target = await fs.readlink(link).catch(() => '.dovecot.sieve');
      return {
        name: path.basename(target).replace(/\.sieve$/, ''),
        text: await fs.readFile(link, 'utf8'),
        stamp: `${st.mtimeMs}:${st.size}:${st.ino}`,
      };
    },
  };
}
