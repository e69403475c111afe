/**
 * The user's active Sieve script where Pigeonhole looks for it: `~/.dovecot.sieve`, a symlink to
 * `~/sieve/NAME.sieve` (or a plain file put there by hand), with ~ the user's home, here the
 * Maildir directory (Dovecot's home for mail_location = maildir:~ setups). The stamp (mtime, size,
 * inode) tells the compiled-script cache when to compile again.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { UserRecord } from '../directory/types.js';
import { maildirPath } from './maildir.js';

export interface ActiveSieveScripts {
  active(user: UserRecord): Promise<{ name: string; text: string; stamp: string } | undefined>;
  home(user: UserRecord): string;
}

export function activeSieveScripts(root: string, layout: string, maxBytes: number): ActiveSieveScripts {
  const home = (user: UserRecord) => maildirPath(root, layout, user);
  return {
    home,
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
