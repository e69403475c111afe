import { FLAG_DELETED } from '../../store/mail/types.js';
import { SELECTED, type CommandResult, type ImapCommand, type Selected } from '../command.js';
import { ParseError, atom } from '../parser.js';
import type { ImapSession } from '../session.js';
import { parseSequenceSet } from '../sequence.js';

/** Expunges the \Deleted messages among `uids` (the store keeps the quota current). */
async function expungeDeleted({ mailbox: view }: Selected, uids: readonly number[]): Promise<number[]> {
  const mailbox = view.mailbox;
  const doomed = uids.filter((uid) => (mailbox.record(uid)?.flags ?? 0) & FLAG_DELETED);
  if (doomed.length === 0) return [];
  return mailbox.expunge(doomed);
}

/**
 * With QRESYNC enabled, the tagged OK carries the mailbox's new HIGHESTMODSEQ once something was
 * expunged (RFC 7162 section 3.2.7), so the client's next SELECT (QRESYNC ...) does not ask for
 * its own expunges again. The pending updates go out first: the value then covers only changes
 * this session has been told about.
 */
async function expungeResult(session: ImapSession, done: number[]): Promise<CommandResult | undefined> {
  if (done.length === 0 || !session.enabled.has('QRESYNC') || !session.selected) return undefined;
  await session.flushUpdates('EXPUNGE');
  if (!session.selected) return undefined;
  return { code: `HIGHESTMODSEQ ${session.selected.knownModseq}`, text: 'Expunge completed' };
}

/** EXPUNGE (RFC 3501 section 6.4.3): the EXPUNGE (or VANISHED) responses come from the flush. */
export const expunge: ImapCommand<Selected> = {
  name: 'EXPUNGE',
  states: SELECTED,
  async run(session, command, state) {
    if (command.args.length) throw new ParseError('EXPUNGE takes no arguments');
    if (state.mailbox.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
    return expungeResult(session, await expungeDeleted(state, state.mailbox.mailbox.uids));
  },
};

/** UID EXPUNGE (RFC 4315 section 2.1): only the \Deleted messages among the given UIDs. */
export const uidExpunge: ImapCommand<Selected> = {
  name: 'UID EXPUNGE',
  states: SELECTED,
  async run(session, command, state) {
    if (command.args.length !== 1) throw new ParseError('UID EXPUNGE needs a UID set');
    const selected = state.mailbox;
    if (selected.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
    const uids = selected.select(parseSequenceSet(atom(command.args[0], 'UID set')), true).map((i) => selected.uids[i]!);
    return expungeResult(session, await expungeDeleted(state, uids));
  },
};
