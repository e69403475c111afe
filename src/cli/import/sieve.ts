/**
 * Pigeonhole's settings (the `plugin { sieve_* }` of 90-sieve.conf) as maild's `sieve:` section:
 * where the users' scripts live, the global scripts run before and after the user's, the global
 * include directory, the limits, the vacation periods and the envelope sender of redirects. The
 * users' scripts themselves stay where Pigeonhole kept them.
 */
import path from 'node:path';
import type { ImportContext } from './context.js';
import { findSections, setting, type DovecotSection } from './dovecot-conf.js';

export interface ImportedSieve {
  /** YAML lines of the sieve: section (without the section line), each setting with its source. */
  lines: string[];
}

/** Pigeonhole's default script location, the one maild reads (the home is the Maildir). */
const DEFAULT_LOCATIONS = new Set(['file:~/sieve;active=~/.dovecot.sieve', '~/.dovecot.sieve']);

/** Pigeonhole size values ("1M", "64k", bytes) as maild writes them. */
function size(value: string): string | undefined {
  const m = /^(\d+)\s*([kmg])?b?$/i.exec(value.trim());
  return m ? `${m[1]}${(m[2] ?? '').toUpperCase()}` : undefined;
}

/** Pigeonhole time values ("7d", "1h", "30 days") as maild writes them. */
function period(value: string): string | undefined {
  const m = /^(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)?$/i.exec(value.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? 's')[0]!.toLowerCase();
  return `${m[1]}${unit}`;
}

export function importSieve(ctx: ImportContext): ImportedSieve | undefined {
  const { dovecot, skip, files, rel } = ctx;
  if (!dovecot) return undefined;
  // The last value of each sieve_* setting over every plugin section, with its section.
  const found = new Map<string, { value: string; section: DovecotSection }>();
  for (const section of findSections(dovecot, 'plugin'))
    for (const key of section.settings.keys())
      if (key === 'sieve' || key.startsWith('sieve_')) found.set(key, { value: setting(section, key)!, section });
  if (found.size === 0) return undefined;
  const label = (key: string) => {
    const s = found.get(key)!.section.settings.get(key)!;
    return `plugin { ${key} = ${s.value} } (${rel(s.file)})`;
  };
  const lines: string[] = [];
  const add = (key: string, yaml: string) => {
    lines.push(`  # ${label(key)}`, `  ${yaml}`);
  };
  const taken = new Set<string>();
  const take = (key: string) => {
    taken.add(key);
    return found.get(key)?.value;
  };

  // Pigeonhole 0.4+: sieve = file:DIR;active=PATH; the older form: sieve = PATH (the active
  // script) with sieve_dir = DIR.
  const location = take('sieve');
  const oldDir = take('sieve_dir');
  if (location !== undefined) {
    const value = location.includes(';') || location.startsWith('file:') ? location : `file:${oldDir ?? '~/sieve'};active=${location}`;
    if (!DEFAULT_LOCATIONS.has(value.replace(/\s+/g, ''))) {
      if (/^(file:)?[^;]+;(.*;)?active=/.test(value) && !/%[^und%]/.test(value)) add('sieve', `location: ${JSON.stringify(value)}`);
      else skip(label('sieve'), "maild takes file:DIR;active=PATH with ~, %u, %n and %d (the scripts' home is the Maildir)");
    }
  }

  // sieve_before, sieve_before2, ... in order; a directory stands for its *.sieve files, sorted.
  for (const kind of ['before', 'after'] as const) {
    const keys = [...found.keys()]
      .filter((k) => k === `sieve_${kind}` || new RegExp(`^sieve_${kind}\\d+$`).test(k))
      .sort((a, b) => Number(a.slice(`sieve_${kind}`.length) || 1) - Number(b.slice(`sieve_${kind}`.length) || 1));
    const scripts: string[] = [];
    for (const key of keys) {
      const value = take(key)!
        .replace(/^file:/, '')
        .replace(/;.*$/, '');
      if (value.endsWith('.sieve')) scripts.push(value);
      else {
        const inDir = files.glob(path.join(value, '*.sieve')).map((f) => path.join(value, path.basename(f)));
        if (inDir.length) scripts.push(...inDir);
        else skip(label(key), 'no *.sieve file found there to list in sieve.' + kind);
      }
    }
    if (scripts.length) {
      lines.push(`  # ${keys.map(label).join(', ')}`, `  ${kind}: [${scripts.map((s) => JSON.stringify(s)).join(', ')}]`);
    }
  }

  const globalDir = take('sieve_global') ?? take('sieve_global_dir');
  if (globalDir !== undefined) {
    const dir = globalDir.replace(/^file:/, '').replace(/;.*$/, '');
    add(found.has('sieve_global') ? 'sieve_global' : 'sieve_global_dir', `global_dir: ${JSON.stringify(dir)}`);
  }
  take('sieve_global_dir');

  for (const [key, name] of [
    ['sieve_max_script_size', 'max_script_size'],
    ['sieve_max_actions', 'max_actions'],
    ['sieve_max_redirects', 'max_redirects'],
  ] as const) {
    const value = take(key);
    if (value === undefined) continue;
    const converted = key === 'sieve_max_script_size' ? size(value) : /^\d+$/.test(value) ? value : undefined;
    if (converted === undefined || converted === '0') skip(label(key), 'not a value maild takes (unlimited is not offered)');
    else add(key, `${name}: ${converted}`);
  }
  const redirectFrom = take('sieve_redirect_envelope_from');
  if (redirectFrom !== undefined) {
    if (['sender', 'recipient', 'orig_recipient'].includes(redirectFrom))
      add('sieve_redirect_envelope_from', `redirect_envelope_from: ${redirectFrom}`);
    else if (redirectFrom === '<>') add('sieve_redirect_envelope_from', 'redirect_envelope_from: "<>"');
    else skip(label('sieve_redirect_envelope_from'), 'maild takes sender, recipient, orig_recipient or <>');
  }
  const vacation: string[] = [];
  for (const [key, name] of [
    ['sieve_vacation_default_period', 'default_period'],
    ['sieve_vacation_min_period', 'min_period'],
    ['sieve_vacation_max_period', 'max_period'],
  ] as const) {
    const value = take(key);
    if (value === undefined) continue;
    const converted = period(value);
    // Pigeonhole's 0 means "no limit" for max and "no minimum" for min.
    if (converted === undefined || /^0\D*$/.test(converted)) {
      skip(label(key), 'not a period maild takes');
      continue;
    }
    vacation.push(`${name}: ${converted}`);
    lines.push(`  # ${label(key)}`);
  }
  if (vacation.length) lines.push(`  vacation: { ${vacation.join(', ')} }`);

  for (const key of found.keys()) {
    if (taken.has(key)) continue;
    if (key === 'sieve_extensions' || key === 'sieve_global_extensions')
      skip(label(key), "maild's Sieve has its own fixed set of extensions (README: Filtering at delivery)");
    else if (key.startsWith('sieve_spamtest') || key.startsWith('sieve_virustest'))
      skip(label(key), "spamtest and virustest take the inbound scanners' verdicts, not a header");
    else if (key.startsWith('sieve_pipe') || key.startsWith('sieve_filter') || key.startsWith('sieve_execute') || key === 'sieve_plugins')
      skip(label(key), 'maild has no Sieve plugins (extprograms)');
    else skip(label(key), 'no counterpart');
  }
  return lines.length ? { lines } : undefined;
}
