/**
 * What every part of `maild import` reads: the parsed Postfix and Dovecot configuration, how to
 * label a setting for the "not carried over" list, and the list itself.
 */
import path from 'node:path';
import { parseDovecotConfig, setting, type DovecotSection, type FileSource } from './dovecot-conf.js';
import { parseMainCf, type MainCf } from './main-cf.js';
import { parseMasterCf, type MasterService } from './master-cf.js';

export interface ImportOptions {
  /** Postfix's configuration directory (main.cf, master.cf); undefined: no Postfix. */
  postfixDir?: string;
  /** Dovecot's configuration directory (dovecot.conf); undefined: no Dovecot. */
  dovecotDir?: string;
  files: FileSource;
  /** The environment variable the database password is read from. */
  passwordVariable?: string;
}

export class ImportError extends Error {}

export interface ImportContext {
  opts: ImportOptions;
  /** Files with absolute /etc/postfix and /etc/dovecot paths read from the directories given. */
  files: FileSource;
  /** Where an absolute path of the installation is read from. */
  locate(file: string): string;
  main?: MainCf;
  /** master.cf's services; undefined when there is no master.cf (Postfix's default smtp service then). */
  master?: MasterService[];
  dovecot?: DovecotSection;
  /** A top-level Dovecot setting. */
  dv(key: string): string | undefined;
  /** `key = value (file)` of a Dovecot setting, for comments and the not-carried list. */
  dvLabel(key: string, section?: DovecotSection): string;
  /** `name = value (main.cf)`. */
  mainLabel(name: string): string;
  /** A Dovecot file's name relative to its directory when it is inside it. */
  rel(file: string): string;
  /** Names a setting that is not carried over, with the reason. */
  skip(what: string, reason: string): void;
  notCarried: string[];
}

export function readInstallation(opts: ImportOptions): ImportContext {
  if (!opts.postfixDir && !opts.dovecotDir) throw new ImportError('give --postfix DIR, --dovecot DIR or both');
  const notCarried: string[] = [];
  // Absolute paths below /etc/postfix or /etc/dovecot are read from the directories given (a copy elsewhere works).
  const locate = (p: string): string => {
    for (const [standard, given] of [
      ['/etc/postfix', opts.postfixDir],
      ['/etc/dovecot', opts.dovecotDir],
    ] as const) {
      if (given && (p === standard || p.startsWith(`${standard}/`))) return path.join(path.resolve(given), p.slice(standard.length));
    }
    return p;
  };
  const files: FileSource = { read: (f) => opts.files.read(locate(f)), glob: (g) => opts.files.glob(locate(g)) };

  let main: MainCf | undefined;
  let master: MasterService[] | undefined;
  if (opts.postfixDir) {
    const mainPath = path.join(opts.postfixDir, 'main.cf');
    const mainText = opts.files.read(mainPath);
    if (mainText === undefined) throw new ImportError(`${mainPath}: cannot read`);
    main = parseMainCf(mainText);
    const masterText = opts.files.read(path.join(opts.postfixDir, 'master.cf'));
    master = masterText === undefined ? undefined : parseMasterCf(masterText);
  }
  const dovecot = opts.dovecotDir ? parseDovecotConfig(path.join(opts.dovecotDir, 'dovecot.conf'), files) : undefined;
  const rel = (file: string) => {
    const r = path.relative(path.resolve(opts.dovecotDir ?? '/'), file);
    return r && !r.startsWith('..') ? r : file;
  };
  return {
    opts,
    files,
    locate,
    ...(main ? { main } : {}),
    ...(master ? { master } : {}),
    ...(dovecot ? { dovecot } : {}),
    dv: (key) => (dovecot ? setting(dovecot, key) : undefined),
    dvLabel: (key, section = dovecot) => {
      const s = section?.settings.get(key);
      return s ? `${key} = ${s.value} (${rel(s.file)})` : key;
    },
    mainLabel: (name) => `${name} = ${main?.raw(name)} (main.cf)`,
    rel,
    skip: (what, reason) => notCarried.push(`${what}: ${reason}`),
    notCarried,
  };
}
