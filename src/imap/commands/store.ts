import { SELECTED, type CommandResult, type ImapCommand, type Selected } from '../command.js';
import { ParseError, atom, list, number64, type ParsedCommand, type Token } from '../parser.js';
import { flagList } from '../selected.js';
import { formatSet, parseSequenceSet } from '../sequence.js';
import type { ImapSession } from '../session.js';
import { parseFlags } from '../args.js';

async function runStore(
  session: ImapSession,
  command: ParsedCommand,
  { mailbox: selected }: Selected,
  uid: boolean,
): Promise<CommandResult> {
  const args = command.args;
  const ranges = parseSequenceSet(atom(args[0], 'sequence set'));
  let i = 1;
  let unchangedSince: number | undefined;
  if (args[i]?.type === 'list') {
    // RFC 7162 section 3.1.3: STORE set (UNCHANGEDSINCE modseq) ...
    const mods = list(args[i], 'store modifiers');
    if (atom(mods[0], 'modifier').toUpperCase() !== 'UNCHANGEDSINCE' || mods.length !== 2) throw new ParseError('unknown STORE modifier');
    unchangedSince = Number(number64(mods[1], 'UNCHANGEDSINCE'));
    session.enableCondstore();
    i++;
  }
  const item = atom(args[i++], 'data item').toUpperCase();
  const m = /^([+-]?)FLAGS(\.SILENT)?$/.exec(item);
  if (!m) throw new ParseError(`unknown STORE data item ${item.slice(0, 30)}`);
  const rest = args.slice(i);
  const trailing = rest.length >= 2 ? rest[rest.length - 1]! : undefined;
  if (
    unchangedSince === undefined &&
    trailing?.type === 'list' &&
    trailing.items[0]?.type === 'atom' &&
    trailing.items[0].value.toUpperCase() === 'UNCHANGEDSINCE'
  ) {
    // imapflow (2.x) sends the modifier after the flags: `STORE 1 +FLAGS (\Seen) (UNCHANGEDSINCE 5)`.
    // RFC 7162 puts it before the data item, but a list after the flags has no other meaning
    // (flags are atoms), so it is taken as the modifier rather than refused or ignored.
    const mods = trailing.items;
    if (mods.length !== 2) throw new ParseError('unknown STORE modifier');
    unchangedSince = Number(number64(mods[1], 'UNCHANGEDSINCE'));
    session.enableCondstore();
    rest.pop();
  }
  const tokens: Token[] = rest.length === 1 && rest[0]!.type === 'list' ? rest[0]!.items : rest;
  if (rest.length === 0) throw new ParseError('flags expected');
  const { flags, keywords } = parseFlags(tokens);
  if (selected.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };

  const indexes = selected.select(ranges, uid);
  const uids = indexes.map((ix) => selected.uids[ix]!).filter((u) => !selected.isExpunged(u));
  const mode = m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'set';
  const result = await selected.mailbox.store(uids, mode, flags, keywords, unchangedSince);
  selected.noteOwn(result.changed, result.modseq);
  selected.announceKeywords(session.writer);
  if (!m[2] || session.condstore) {
    // Without .SILENT every message in the set reports its flags; with CONDSTORE the changed
    // ones report their new MODSEQ even when silent (RFC 7162 section 3.1.3).
    const report = m[2] ? result.changed : uids.filter((u) => !result.modified.includes(u));
    for (const u of report) {
      const rec = selected.mailbox.record(u);
      if (!rec) continue;
      const parts = [];
      if (uid || session.enabled.has('QRESYNC')) parts.push(`UID ${u}`);
      if (!m[2]) parts.push(`FLAGS ${flagList(rec, selected.isRecent(u))}`);
      if (session.condstore) parts.push(`MODSEQ (${rec.modseq})`);
      session.writer.untagged(`${selected.seqOf(u)} FETCH (${parts.join(' ')})`);
    }
  }
  if (result.modified.length > 0) {
    const ids = uid ? result.modified : result.modified.map((u) => selected.seqOf(u));
    return { code: `MODIFIED ${formatSet(ids)}`, text: 'Conditional STORE failed' };
  }
  return {};
}

/** STORE (RFC 3501 section 6.4.6; CONDSTORE UNCHANGEDSINCE, RFC 7162). */
export const store: ImapCommand<Selected> = { name: 'STORE', states: SELECTED, run: (s, c, st) => runStore(s, c, st, false) };
export const uidStore: ImapCommand<Selected> = { name: 'UID STORE', states: SELECTED, run: (s, c, st) => runStore(s, c, st, true) };
