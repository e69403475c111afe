/** The importer's FileSource on the real file system (the parsers themselves do no I/O). */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { FileSource } from './dovecot-conf.js';

export const diskFiles: FileSource = {
  read(file) {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw err;
    }
  },
  glob(pattern) {
    const dir = path.dirname(pattern);
    const re = new RegExp(
      `^${path
        .basename(pattern)
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    );
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => re.test(n))
      .sort()
      .map((n) => path.join(dir, n));
  },
};
