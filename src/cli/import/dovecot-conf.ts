/**
 * Dovecot 2.x configuration (dovecot.conf and what it includes): `key = value`, sections
 * `type [name] { ... }` nested to any depth, `!include PATH` and `!include_try PATH` (globs,
 * relative to the including file), `key = <file` (the value is read from the file; the importer
 * keeps the path), `\` at the end of a line continues it, `#` outside quotes starts a comment,
 * and `$name` in a value is the value the setting had so far (`protocols = $protocols imap`).
 * The parser reads files through a FileSource so that it stays free of I/O.
 */
import path from 'node:path';

export interface FileSource {
  /** The text of a file, or undefined when it does not exist. */
  read(file: string): string | undefined;
  /** The files a glob pattern (only `*` and `?` in the last component) matches, sorted. */
  glob(pattern: string): string[];
}

export interface DovecotSetting {
  value: string;
  file: string;
  line: number;
}

export interface DovecotSection {
  /** `service`, `inet_listener`, `passdb`, `namespace`, ... ('' for the top level). */
  type: string;
  /** The name after the type: `imap-login`, `/var/spool/postfix/private/auth`, `inbox` ('' when none). */
  name: string;
  settings: Map<string, DovecotSetting>;
  sections: DovecotSection[];
  file: string;
  line: number;
}

export class DovecotConfigError extends Error {}

const MAX_INCLUDE_DEPTH = 10;

/** Splits a physical line into its meaningful text: comments removed, quotes kept. */
function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return line.slice(0, i);
  }
  return line;
}

/** Removes one pair of surrounding double quotes, undoing \" and \\ inside. */
function unquote(value: string): string {
  const m = /^"(.*)"$/s.exec(value);
  return m ? m[1]!.replace(/\\(["\\])/g, '$1') : value;
}

/** Logical lines of a Dovecot-style file: comments removed, `\` continuations joined. */
function logicalLines(text: string): Array<{ text: string; line: number }> {
  const out: Array<{ text: string; line: number }> = [];
  let pending: { text: string; line: number } | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    let line = stripComment(raw).trim();
    const continued = line.endsWith('\\');
    if (continued) line = line.slice(0, -1).trim();
    if (pending) pending.text += ` ${line}`;
    else pending = { text: line, line: index + 1 };
    if (!continued) {
      if (pending.text.trim()) out.push({ text: pending.text.trim(), line: pending.line });
      pending = undefined;
    }
  });
  if (pending?.text.trim()) out.push({ text: pending.text.trim(), line: pending.line });
  return out;
}

/** Parses dovecot.conf and everything it includes. */
export function parseDovecotConfig(file: string, files: FileSource): DovecotSection {
  const root: DovecotSection = { type: '', name: '', settings: new Map(), sections: [], file, line: 0 };
  const stack: DovecotSection[] = [root];
  const visit = (current: string, depth: number) => {
    const text = files.read(current);
    if (text === undefined) throw new DovecotConfigError(`${current}: cannot read`);
    for (const { text: line, line: lineNo } of logicalLines(text)) {
      const where = `${current}:${lineNo}`;
      const include = /^!(include|include_try)\s+(.+)$/.exec(line);
      if (include) {
        if (depth >= MAX_INCLUDE_DEPTH) throw new DovecotConfigError(`${where}: includes nested too deep`);
        const target = path.resolve(path.dirname(current), unquote(include[2]!.trim()));
        const matches = /[*?]/.test(target) ? files.glob(target) : files.read(target) === undefined ? [] : [target];
        if (matches.length === 0 && include[1] === 'include' && !/[*?]/.test(target))
          throw new DovecotConfigError(`${where}: included file ${target} does not exist`);
        for (const m of matches) visit(m, depth + 1);
        continue;
      }
      const top = stack[stack.length - 1]!;
      if (line === '}') {
        if (stack.length === 1) throw new DovecotConfigError(`${where}: } without a section`);
        stack.pop();
        continue;
      }
      const open = /^([A-Za-z0-9_!.-]+)(?:\s+(.+?))?\s*\{$/.exec(line);
      if (open) {
        const section: DovecotSection = {
          type: open[1]!,
          name: unquote(open[2]?.trim() ?? ''),
          settings: new Map(),
          sections: [],
          file: current,
          line: lineNo,
        };
        top.sections.push(section);
        stack.push(section);
        continue;
      }
      const setting = /^([A-Za-z0-9_.!/-]+)\s*=\s*(.*)$/.exec(line);
      if (!setting) throw new DovecotConfigError(`${where}: cannot parse ${JSON.stringify(line.slice(0, 80))}`);
      const key = setting[1]!;
      let value = setting[2]!.trim();
      // `$name`: the value the setting had so far, in this section or the ones around it (Dovecot
      // 2.3 expands these while reading: `protocol imap { mail_plugins = $mail_plugins imap_quota }`).
      value = value.replace(/\$([a-z_][a-z0-9_]*)/g, (whole, name: string) => {
        const prior = [...stack]
          .reverse()
          .find((s) => s.settings.has(name))
          ?.settings.get(name);
        return prior ? prior.value : name === key ? '' : whole;
      });
      top.settings.set(key, { value: unquote(value.trim()), file: current, line: lineNo });
    }
  };
  visit(file, 0);
  if (stack.length > 1) {
    const open = stack[stack.length - 1]!;
    throw new DovecotConfigError(`${open.file}:${open.line}: section ${open.type} ${open.name} is not closed`);
  }
  return root;
}

/** A `<file` value's path, or undefined when the value is given inline. */
export function fileValue(value: string): string | undefined {
  const m = /^<\s*(.+)$/.exec(value.trim());
  return m ? m[1]!.trim() : undefined;
}

/** Every section of a type at any depth below `section` (Dovecot 1.x nests passdb in `auth default`). */
export function findSections(section: DovecotSection, type: string, name?: string): DovecotSection[] {
  const out: DovecotSection[] = [];
  for (const s of section.sections) {
    if (s.type === type && (name === undefined || s.name === name)) out.push(s);
    out.push(...findSections(s, type, name));
  }
  return out;
}

/** A setting's value, or undefined. */
export function setting(section: DovecotSection, key: string): string | undefined {
  return section.settings.get(key)?.value;
}

/** dovecot-sql.conf.ext and similar: flat `key = value` lines with `\` continuations. */
export function parseKeyValueFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const { text: line } of logicalLines(text)) {
    const m = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (m) out.set(m[1]!, unquote(m[2]!.trim()));
  }
  return out;
}

/** The `connect = host=... dbname=... user=... password=...` string of a Dovecot SQL driver. */
export function parseConnectString(value: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  for (const m of value.matchAll(re)) {
    const raw = m[2]!;
    out.set(m[1]!, raw.startsWith("'") ? raw.slice(1, -1) : unquote(raw));
  }
  return out;
}

/** Every value of a setting anywhere in the configuration (mail_plugins is set per protocol). */
export function allSettingValues(section: DovecotSection, key: string): string {
  const values = [setting(section, key) ?? ''];
  for (const s of section.sections) values.push(allSettingValues(s, key));
  return values.filter(Boolean).join(' ');
}
