import { isMailError } from '../../errors.js';
import { SELECTED, type CommandResult, type ImapCommand, type Selected } from '../command.js';
import { ParseError, atom, type ParsedCommand } from '../parser.js';
import { formatList, parseSequenceSet } from '../sequence.js';
import type { ImapSession } from '../session.js';
import { mailboxArg } from '../args.js';

async function runTransfer(
  session: ImapSession,
  command: ParsedCommand,
  { mailbox: selected, account }: Selected,
  uid: boolean,
  move: boolean,
): Promise<CommandResult> {
  if (command.args.length !== 2) throw new ParseError(`${move ? 'MOVE' : 'COPY'} needs a sequence set and a mailbox`);
  const ranges = parseSequenceSet(atom(command.args[0], 'sequence set'));
  const targetName = mailboxArg(session, command.args[1]);
  if (move && selected.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
  const uids = selected
    .select(ranges, uid)
    .map((i) => selected.uids[i]!)
    .filter((u) => !selected.isExpunged(u));
  if (!(await account.exists(targetName))) return { status: 'NO', code: 'TRYCREATE', text: 'Mailbox does not exist' };
  if (uids.length === 0) return { text: 'No messages to copy' };
  const source = selected.mailbox;
  let pairs: Array<[number, number]>;
  let uidValidity = 0;
  try {
    // The store refuses a copy over quota (QUOTA_EXCEEDED: NO [OVERQUOTA]).
    ({ pairs, uidValidity } = await account.with(targetName, async (target) => ({
      pairs: await source.transfer(target, uids, move),
      uidValidity: target.uidValidity,
    })));
  } catch (err) {
    if (isMailError(err, 'MAILBOX_NOT_FOUND')) return { status: 'NO', code: 'TRYCREATE', text: 'Mailbox does not exist' };
    throw err;
  }
  if (pairs.length === 0) return { status: 'NO', code: 'EXPUNGEISSUED', text: 'The messages no longer exist' };
  const code = `COPYUID ${uidValidity} ${formatList(pairs.map((p) => p[0]))} ${formatList(pairs.map((p) => p[1]))}`;
  if (move) {
    // RFC 6851 section 4.3: COPYUID in an untagged OK, then the expunges, then the tagged OK.
    session.writer.untagged(`OK [${code}] Moved UIDs.`);
    return { text: 'Move completed' };
  }
  return { code, text: 'Copy completed' };
}

/** COPY (RFC 3501 section 6.4.7; COPYUID, RFC 4315). Copying into the same mailbox is allowed. */
export const copy: ImapCommand<Selected> = { name: 'COPY', states: SELECTED, run: (s, c, st) => runTransfer(s, c, st, false, false) };
export const uidCopy: ImapCommand<Selected> = { name: 'UID COPY', states: SELECTED, run: (s, c, st) => runTransfer(s, c, st, true, false) };
/** MOVE (RFC 6851). */
export const move: ImapCommand<Selected> = { name: 'MOVE', states: SELECTED, run: (s, c, st) => runTransfer(s, c, st, false, true) };
export const uidMove: ImapCommand<Selected> = { name: 'UID MOVE', states: SELECTED, run: (s, c, st) => runTransfer(s, c, st, true, true) };
