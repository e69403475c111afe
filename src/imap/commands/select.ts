import { FLAG_SEEN } from '../../store/mail/types.js';
import { AUTHENTICATED, type CommandResult, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError, atom, list, number, number64, type Token } from '../parser.js';
import { mailboxArg } from '../args.js';
import { SelectedMailbox, flagList } from '../selected.js';
import { formatSet, parseSequenceSet } from '../sequence.js';
import type { ImapSession } from '../session.js';

interface QresyncParams {
  uidValidity: number;
  modseq: number;
  knownUids?: string;
  seqMatch?: [string, string];
}

/** SELECT/EXAMINE parameters: (CONDSTORE) and (QRESYNC (uidvalidity modseq [uids [(seqs uids)]])). */
function parseParams(session: ImapSession, t: Token | undefined): { condstore: boolean; qresync?: QresyncParams } {
  const out: { condstore: boolean; qresync?: QresyncParams } = { condstore: false };
  if (!t) return out;
  const items = list(t, 'select parameters');
  for (let i = 0; i < items.length; i++) {
    const name = atom(items[i], 'select parameter').toUpperCase();
    if (name === 'CONDSTORE') out.condstore = true;
    else if (name === 'QRESYNC') {
      if (!session.enabled.has('QRESYNC')) throw new ParseError('QRESYNC must be enabled first (RFC 7162 section 3.2.5)');
      const q = list(items[++i], 'QRESYNC parameters');
      const params: QresyncParams = { uidValidity: number(q[0], 'uidvalidity'), modseq: Number(number64(q[1], 'modseq')) };
      if (q[2]) params.knownUids = atom(q[2], 'known UIDs');
      if (q[3]) {
        const m = list(q[3], 'sequence match data');
        params.seqMatch = [atom(m[0], 'sequence set'), atom(m[1], 'UID set')];
      }
      out.qresync = params;
      out.condstore = true;
    } else throw new ParseError(`unknown select parameter ${name}`);
  }
  return out;
}

async function selectMailbox(session: ImapSession, { account }: LoggedIn, args: Token[], readOnly: boolean): Promise<CommandResult> {
  const name = mailboxArg(session, args[0]);
  if (args.length > 2) throw new ParseError('too many arguments');
  const params = parseParams(session, args[1]);
  // A SELECT first closes the current mailbox, successful or not (RFC 3501 section 6.3.1).
  if (session.selected) {
    session.deselect();
    if (session.enabled.has('QRESYNC')) session.writer.untagged('OK [CLOSED] Previous mailbox closed.');
  }
  const mailbox = await account.open(name);
  const selected = new SelectedMailbox(mailbox, name, readOnly, () => account.close(mailbox));
  try {
    await mailbox.sync();
  } catch (err) {
    selected.close();
    throw err;
  }
  // SELECT claims the recent messages, EXAMINE only shows them (RFC 3501 sections 2.3.2, 6.3.2).
  selected.start();
  if (params.condstore) session.condstore = true;
  const w = session.writer;
  selected.writeFlags(w);
  w.untagged(`${selected.exists} EXISTS`);
  w.untagged(`${selected.recent} RECENT`);
  const firstUnseen = selected.uids.findIndex((uid) => !((mailbox.record(uid)?.flags ?? FLAG_SEEN) & FLAG_SEEN));
  if (firstUnseen >= 0) w.untagged(`OK [UNSEEN ${firstUnseen + 1}] First unseen.`);
  w.untagged(`OK [UIDVALIDITY ${mailbox.uidValidity}] UIDs valid`);
  w.untagged(`OK [UIDNEXT ${mailbox.uidNext}] Predicted next UID`);
  // RFC 7162 section 3.1.2.1: sent on every SELECT by a server that keeps MODSEQs.
  w.untagged(`OK [HIGHESTMODSEQ ${mailbox.highestModseq}] Highest`);
  session.select(selected);

  const q = params.qresync;
  if (q && q.uidValidity === mailbox.uidValidity) {
    // RFC 7162 section 3.2.5: what vanished and what changed since the client's MODSEQ, limited
    // to the UIDs the client says it knows.
    const known = q.knownUids ? parseSequenceSet(q.knownUids) : undefined;
    const isKnown = (uid: number) => !known || known.some((r) => uid >= r.from && uid <= r.to);
    let gone = mailbox.expungedSince(q.modseq);
    if (gone === undefined) {
      // The expunge history does not reach back that far: every known UID that is missing.
      gone = [];
      for (let uid = 1; uid < mailbox.uidNext; uid++) if (isKnown(uid) && !mailbox.record(uid)) gone.push(uid);
    }
    gone = gone.filter(isKnown);
    if (gone.length) w.untagged(`VANISHED (EARLIER) ${formatSet(gone)}`);
    for (const uid of selected.uids) {
      const rec = mailbox.record(uid)!;
      if (rec.modseq > q.modseq)
        w.untagged(`${selected.seqOf(uid)} FETCH (UID ${uid} FLAGS ${flagList(rec, selected.isRecent(uid))} MODSEQ (${rec.modseq}))`);
    }
  }
  return { code: readOnly ? 'READ-ONLY' : 'READ-WRITE', text: `${readOnly ? 'EXAMINE' : 'SELECT'} completed` };
}

/** SELECT (RFC 3501 section 6.3.1). */
export const select: ImapCommand<LoggedIn> = {
  name: 'SELECT',
  states: AUTHENTICATED,
  run: (session, command, state) => selectMailbox(session, state, command.args, false),
};

/** EXAMINE (RFC 3501 section 6.3.2): SELECT, read-only. */
export const examine: ImapCommand<LoggedIn> = {
  name: 'EXAMINE',
  states: AUTHENTICATED,
  run: (session, command, state) => selectMailbox(session, state, command.args, true),
};
