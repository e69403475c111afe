import { SELECTED, type CommandResult, type ImapCommand, type Selected } from '../command.js';
import { ParseError, astring, atom, list, type ParsedCommand } from '../parser.js';
import { SearchParser, SearchRunner } from '../search.js';
import { formatSet } from '../sequence.js';
import type { ImapSession } from '../session.js';

const ESEARCH_OPTIONS = new Set(['MIN', 'MAX', 'ALL', 'COUNT']);

async function runSearch(
  session: ImapSession,
  command: ParsedCommand,
  { mailbox: selected }: Selected,
  uid: boolean,
): Promise<CommandResult> {
  const args = [...command.args];
  let returnOptions: string[] | undefined;
  // RFC 4731: SEARCH RETURN (MIN MAX ALL COUNT) criteria
  if (args[0]?.type === 'atom' && args[0].value.toUpperCase() === 'RETURN') {
    args.shift();
    returnOptions = list(args.shift(), 'RETURN options').map((t) => atom(t, 'return option').toUpperCase());
    for (const o of returnOptions) if (!ESEARCH_OPTIONS.has(o)) throw new ParseError(`unsupported RETURN option ${o.slice(0, 20)}`);
    if (returnOptions.length === 0) returnOptions = ['ALL'];
  }
  if (args[0]?.type === 'atom' && args[0].value.toUpperCase() === 'CHARSET') {
    args.shift();
    const charset = astring(args.shift(), 'charset').toUpperCase();
    // Strings are compared as UTF-8 (RFC 9051 section 6.4.4: UTF-8 must be supported).
    if (charset !== 'UTF-8' && charset !== 'US-ASCII')
      return { status: 'NO', code: 'BADCHARSET (UTF-8 US-ASCII)', text: 'Unsupported charset' };
  }
  const parser = new SearchParser(args);
  const criteria = parser.parseAll();
  if (parser.usesModseq) session.enableCondstore();
  const mailbox = selected.mailbox;
  // Sequence numbers are the session's (RFC 3501 section 7.4.1): messages expunged by another
  // session but not yet announced keep their numbers and match nothing.
  const view = selected.uids;
  const matches = await new SearchRunner(mailbox, criteria).run(view, (u) => selected.isRecent(u));
  const matchedUids = matches.map((i) => view[i]!).filter((u) => !selected.isExpunged(u));
  const ids = uid ? matchedUids : matchedUids.map((u) => selected.seqOf(u));
  // RFC 7162 section 3.1.5: with RETURN (MIN) and/or (MAX) alone, the MODSEQ of the messages
  // returned; otherwise the highest of all matches.
  const onlyMinMax = returnOptions !== undefined && !returnOptions.includes('ALL') && !returnOptions.includes('COUNT');
  const modseqOf = onlyMinMax
    ? [
        ...(returnOptions!.includes('MIN') ? [matchedUids[0]!] : []),
        ...(returnOptions!.includes('MAX') ? [matchedUids[matchedUids.length - 1]!] : []),
      ]
    : matchedUids;
  const highest = parser.usesModseq && matchedUids.length ? Math.max(...modseqOf.map((u) => mailbox.record(u)?.modseq ?? 0)) : undefined;
  if (returnOptions) {
    const parts = [`(TAG "${command.tag}")`];
    if (uid) parts.push('UID');
    if (ids.length > 0) {
      if (returnOptions.includes('MIN')) parts.push(`MIN ${Math.min(...ids)}`);
      if (returnOptions.includes('MAX')) parts.push(`MAX ${Math.max(...ids)}`);
      if (returnOptions.includes('ALL')) parts.push(`ALL ${formatSet(ids)}`);
    }
    if (returnOptions.includes('COUNT')) parts.push(`COUNT ${ids.length}`);
    if (highest !== undefined) parts.push(`MODSEQ ${highest}`);
    session.writer.untagged(`ESEARCH ${parts.join(' ')}`);
  } else {
    session.writer.untagged(`SEARCH${ids.length ? ` ${ids.join(' ')}` : ''}${highest !== undefined ? ` (MODSEQ ${highest})` : ''}`);
  }
  return {};
}

/** SEARCH (RFC 3501 section 6.4.4; ESEARCH RFC 4731; CONDSTORE MODSEQ RFC 7162). */
export const search: ImapCommand<Selected> = { name: 'SEARCH', states: SELECTED, run: (s, c, st) => runSearch(s, c, st, false) };
export const uidSearch: ImapCommand<Selected> = { name: 'UID SEARCH', states: SELECTED, run: (s, c, st) => runSearch(s, c, st, true) };
