/**
 * The "subscriptions" file in the Maildir root (src/lib-storage/list/subscription-file.c).
 *
 * Version 2 (what 2.3 writes for a new file): the header "V\t2\n\n", then
 * one subscribed mailbox per line, its hierarchy levels separated by TAB, so the file does not
 * depend on the hierarchy separator. Each level is tab-escaped (\001 -> \0011, TAB -> \001t,
 * CR -> \001r, LF -> \001n). Levels are storage names: modified UTF-7 on Maildir++, e.g.
 *   V<TAB>2 / (empty) / INBOX / Sent / Work<TAB>Projects / Entw&APw-rfe
 * Version 1 (older Dovecot; no header): one storage name per line, levels joined with the
 * storage's separator ('.' on Maildir++).
 * Reading keeps a last line without '\n'; empty lines are ignored.
 * Changing (subsfile_set_subscribed): under the dotlock "subscriptions.lock" (stale after 30 s,
 * give up after 120 s) the old lines are copied into the lock file, the name added at the end
 * or all its copies removed, and the lock renamed over the file. A file's version is kept: an
 * existing version-1 file stays version 1, a new file is version 2. "INBOX" in any case is
 * written "INBOX". Nothing is written when nothing changes.
 */
import { acquireDotlock, SUBSCRIPTIONS_LOCK, type DotlockOptions } from './dotlock.js';
import { readIfExists } from './fsutil.js';

const V2_HEADER = 'V\t2\n\n';

export interface Subscriptions {
  version: 1 | 2;
  /** Subscribed mailboxes as hierarchy levels (storage names, modified UTF-7), in file order. */
  names: string[][];
}

export interface SubscriptionOptions {
  /** How version-1 lines join levels: the storage's separator, '.' for Maildir++. */
  v1Separator?: string;
}

function tabEscape(s: string): string {
  return s.replace(/[\x01\t\r\n]/g, (c) => '\x01' + ({ '\x01': '1', '\t': 't', '\r': 'r', '\n': 'n' } as Record<string, string>)[c]);
}

function tabUnescape(s: string): string {
  return s.replace(/\x01([\s\S]?)/g, (_m, c: string) => (({ '1': '\x01', t: '\t', r: '\r', n: '\n' }) as Record<string, string>)[c] ?? c);
}

function lineToName(line: string, version: 1 | 2, v1Sep: string): string[] {
  return version === 2 ? line.split('\t').map(tabUnescape) : line.split(v1Sep);
}

function nameToLine(levels: readonly string[], version: 1 | 2, v1Sep: string): string {
  if (levels.length === 0 || levels.some((l) => l === '')) throw new RangeError('empty mailbox name or level');
  if (levels.length === 1 && levels[0]!.toUpperCase() === 'INBOX') levels = ['INBOX'];
  if (version === 2) return levels.map(tabEscape).join('\t');
  if (levels.some((l) => l.includes(v1Sep) || /[\r\n]/.test(l))) {
    throw new RangeError(`mailbox level cannot be stored in a version 1 subscriptions file: ${levels.join(v1Sep)}`);
  }
  return levels.join(v1Sep);
}

function splitLines(text: string): { version: 1 | 2; lines: string[] } {
  const version = text.startsWith(V2_HEADER) ? 2 : 1;
  const body = version === 2 ? text.slice(V2_HEADER.length) : text;
  const lines = body.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines[lines.length - 1] === '') lines.pop();
  return { version, lines };
}

export function parseSubscriptions(text: string, opts: SubscriptionOptions = {}): Subscriptions {
  const { version, lines } = splitLines(text);
  return {
    version,
    names: lines.filter((l) => l !== '').map((l) => lineToName(l, version, opts.v1Separator ?? '.')),
  };
}

export function formatSubscriptions(subs: Subscriptions, opts: SubscriptionOptions = {}): string {
  const lines = subs.names.map((n) => nameToLine(n, subs.version, opts.v1Separator ?? '.') + '\n').join('');
  return (subs.version === 2 ? V2_HEADER : '') + lines;
}

/** Reads the file; a missing file is an empty version-2 list. */
export async function readSubscriptions(file: string, opts: SubscriptionOptions = {}): Promise<Subscriptions> {
  const text = await readIfExists(file);
  return text === undefined ? { version: 2, names: [] } : parseSubscriptions(text, opts);
}

/**
 * Subscribes or unsubscribes one mailbox (its hierarchy levels as storage names), exactly as
 * Dovecot changes the file. Resolves true when the file changed.
 */
export async function setSubscribed(
  file: string,
  levels: readonly string[],
  subscribed: boolean,
  opts: SubscriptionOptions & { lock?: DotlockOptions } = {},
): Promise<boolean> {
  const v1Sep = opts.v1Separator ?? '.';
  const lock = await acquireDotlock(file, { ...SUBSCRIPTIONS_LOCK, ...opts.lock, writePid: false });
  try {
    const text = await readIfExists(file);
    const { version, lines } = text === undefined ? { version: 2 as const, lines: [] } : splitLines(text);
    const wanted = nameToLine(levels, version, v1Sep);
    let found = false;
    let changed = false;
    const out: string[] = [];
    for (const line of lines) {
      if (line === wanted) {
        found = true;
        if (!subscribed) {
          changed = true;
          continue;
        }
      }
      out.push(line);
    }
    if (subscribed && !found) {
      out.push(wanted);
      changed = true;
    }
    if (!changed) {
      await lock.release();
      return false;
    }
    await lock.replace((version === 2 ? V2_HEADER : '') + out.map((l) => l + '\n').join(''));
    return true;
  } catch (err) {
    await lock.release().catch(() => {});
    throw err;
  }
}
