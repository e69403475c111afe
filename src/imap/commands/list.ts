import type { Account } from '../../store/mail/service.js';
import type { FolderInfo } from '../../store/mail/types.js';
import { AUTHENTICATED, type ImapCommand, type CommandResult, type LoggedIn } from '../command.js';
import { ParseError, astring, atom, list as listArg, type Token } from '../parser.js';
import type { ImapSession } from '../session.js';
import { encodeToBuffer } from '../values.js';
import { parseStatusItems, statusLine } from './status.js';

/**
 * A LIST pattern as a regular expression: '*' anything, '%' anything but the separator. INBOX
 * is case-insensitive (RFC 3501 section 5.1): a leading "inbox" in any case means INBOX, the
 * spelling folder names already have.
 */
function patternToRegExp(pattern: string, separator: string): RegExp {
  const canonical =
    /^inbox$/i.test(pattern.slice(0, 5)) && (pattern.length === 5 || pattern[5] === separator) ? `INBOX${pattern.slice(5)}` : pattern;
  const notSeparator = `[^${separator === '/' ? '/' : '.'}]*`;
  let re = '';
  for (const ch of canonical) {
    if (ch === '*') re += '.*';
    else if (ch === '%') re += notSeparator;
    else re += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function matches(name: string, re: RegExp): boolean {
  return re.test(name);
}

const quoteName = (name: string) => encodeToBuffer(name).toString('utf8');

interface ListOptions {
  subscribedOnly: boolean;
  recursiveMatch: boolean;
  specialUseOnly: boolean;
  returnSubscribed: boolean;
  returnChildren: boolean;
  returnSpecialUse: boolean;
  statusItems?: ReturnType<typeof parseStatusItems>;
}

async function runList(session: ImapSession, account: Account, args: Token[], lsub: boolean): Promise<CommandResult> {
  const opts: ListOptions = {
    subscribedOnly: lsub,
    recursiveMatch: false,
    specialUseOnly: false,
    returnSubscribed: false,
    returnChildren: true,
    returnSpecialUse: true,
  };
  let i = 0;
  let extended = false;
  if (!lsub && args[0]?.type === 'list') {
    extended = true;
    for (const o of args[0].items) {
      const name = atom(o, 'selection option').toUpperCase();
      if (name === 'SUBSCRIBED') opts.subscribedOnly = opts.returnSubscribed = true;
      else if (name === 'RECURSIVEMATCH') opts.recursiveMatch = true;
      else if (name === 'SPECIAL-USE') opts.specialUseOnly = true;
      else if (name === 'REMOTE') continue;
      else throw new ParseError(`unknown selection option ${name.slice(0, 30)}`);
    }
    if (opts.recursiveMatch && !opts.subscribedOnly)
      throw new ParseError('RECURSIVEMATCH needs another selection option (RFC 5258 section 3.1)');
    i++;
  }
  const reference = astring(args[i++], 'reference', false);
  const patternToken = args[i++];
  const patterns =
    patternToken?.type === 'list'
      ? ((extended = true), patternToken.items.map((p) => astring(p, 'pattern', false)))
      : [astring(patternToken, 'pattern', false)];
  if (args[i]) {
    if (lsub || atom(args[i], 'RETURN').toUpperCase() !== 'RETURN') throw new ParseError('unexpected argument');
    extended = true;
    const ret = listArg(args[i + 1], 'return options');
    for (let j = 0; j < ret.length; j++) {
      const name = atom(ret[j], 'return option').toUpperCase();
      if (name === 'SUBSCRIBED') opts.returnSubscribed = true;
      else if (name === 'CHILDREN') opts.returnChildren = true;
      else if (name === 'SPECIAL-USE') opts.returnSpecialUse = true;
      else if (name === 'STATUS') opts.statusItems = parseStatusItems(ret[++j]);
      else throw new ParseError(`unknown return option ${name.slice(0, 30)}`);
    }
    i += 2;
  }
  if (args.length > i) throw new ParseError('too many arguments');

  const w = session.writer;
  const verb = lsub ? 'LSUB' : 'LIST';
  const sep = account.separator;
  const isChild = (name: string, parent: string) => name.startsWith(parent + sep);
  if (patterns.length === 1 && patterns[0] === '' && !extended) {
    // RFC 3501 section 6.3.8: the hierarchy delimiter and root.
    w.untagged(`${verb} (\\Noselect) "${sep}" ""`);
    return {};
  }
  const folders = await account.list();
  const subscribed = new Set(await account.subscriptions());
  // Subscriptions to folders that no longer exist are listed too (RFC 5258 section 3.1).
  const known = new Set(folders.map((f) => f.name));
  for (const s of subscribed) if (!known.has(s)) folders.push({ name: s, subscribed: true, hasChildren: false, exists: false });
  for (const f of folders) f.subscribed = subscribed.has(f.name);

  const regexes = patterns.filter((p) => p !== '').map((p) => patternToRegExp(reference && !p.startsWith(sep) ? reference + p : p, sep));
  for (const f of folders) {
    // A subscription to a mailbox that is gone is listed only when subscriptions are what is
    // selected (LSUB, LIST (SUBSCRIBED)); RETURN (SUBSCRIBED) only reports the state of the
    // mailboxes LIST returns anyway (RFC 5258 section 3.2). Parents that exist only because
    // they have children stay (\NonExistent \HasChildren).
    if (!f.exists && !f.hasChildren && !opts.subscribedOnly) continue;
    let childInfo = false;
    let hit = regexes.some((re) => matches(f.name, re));
    // A subscribed descendant (`unlisted`: one the patterns do not list itself).
    const subscribedChild = (unlisted: boolean) =>
      folders.some((c) => c.subscribed && isChild(c.name, f.name) && !(unlisted && regexes.some((re) => matches(c.name, re))));
    if (opts.subscribedOnly && !f.subscribed) {
      // RECURSIVEMATCH: a parent whose subscribed descendant is not listed itself (RFC 5258
      // sections 3.1 and 3.5, CHILDINFO); when the descendant is listed, the parent is not.
      if (opts.recursiveMatch && hit && subscribedChild(true)) childInfo = true;
      else if (lsub && hit && folders.some((c) => c.subscribed && isChild(c.name, f.name)) && patterns.some((p) => p.endsWith('%')))
        childInfo = true;
      else hit = false;
    } else if (opts.recursiveMatch && !lsub && hit && subscribedChild(false)) {
      childInfo = true; // a subscribed parent says so too, as Dovecot does
    }
    if (!hit) continue;
    if (opts.specialUseOnly && !f.specialUse) continue;
    const attrs = attributes(f, opts, lsub, childInfo, extended);
    const extendedData = childInfo && !lsub ? ' ("CHILDINFO" ("SUBSCRIBED"))' : '';
    w.untagged(`${verb} (${attrs.join(' ')}) "${sep}" ${quoteName(f.name)}${extendedData}`);
    if (opts.statusItems && f.exists) {
      try {
        statusLine(session, f.name, opts.statusItems, await account.status(f.name));
      } catch {
        // A folder that vanished between LIST and STATUS is just not reported.
      }
    }
  }
  return {};
}

function attributes(f: FolderInfo, opts: ListOptions, lsub: boolean, childInfoOnly: boolean, extended: boolean): string[] {
  const attrs: string[] = [];
  // A folder that does not exist: \NonExistent (which implies \Noselect, RFC 5258 section 3.4)
  // only for the extended forms; IMAP4rev1 clients know \Noselect, which is what Dovecot sends them.
  if (!f.exists) attrs.push(lsub || !extended ? '\\Noselect' : '\\NonExistent');
  else if (childInfoOnly && lsub) attrs.push('\\Noselect');
  if (!lsub && opts.returnChildren) attrs.push(f.hasChildren ? '\\HasChildren' : '\\HasNoChildren');
  if (!lsub && (opts.returnSubscribed || opts.subscribedOnly) && f.subscribed) attrs.push('\\Subscribed');
  if (f.specialUse && (opts.returnSpecialUse || opts.specialUseOnly)) attrs.push(f.specialUse);
  return attrs;
}

/** LIST (RFC 3501 section 6.3.8; LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154). */
export const listCommand: ImapCommand<LoggedIn> = {
  name: 'LIST',
  states: AUTHENTICATED,
  run: (session, command, { account }) => runList(session, account, command.args, false),
};

/** LSUB (RFC 3501 section 6.3.9). */
export const lsub: ImapCommand<LoggedIn> = {
  name: 'LSUB',
  states: AUTHENTICATED,
  run: (session, command, { account }) => runList(session, account, command.args, true),
};
