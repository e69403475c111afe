import type { MailboxStatus } from '../../store/mail/types.js';
import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError, atom, list, type Token } from '../parser.js';
import type { ImapSession } from '../session.js';
import { encodeToBuffer } from '../values.js';
import { mailboxArg } from '../args.js';

const ITEMS = ['MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'HIGHESTMODSEQ', 'SIZE', 'DELETED'] as const;
type StatusItem = (typeof ITEMS)[number];

export function parseStatusItems(t: Token | undefined): StatusItem[] {
  const items = list(t, 'status items').map((i) => atom(i, 'status item').toUpperCase());
  if (items.length === 0) throw new ParseError('status items expected');
  for (const i of items) if (!(ITEMS as readonly string[]).includes(i)) throw new ParseError(`unknown status item ${i.slice(0, 30)}`);
  return items as StatusItem[];
}

/** `* STATUS name (ITEM n ...)`. RFC 3501 section 7.2.4; SIZE and DELETED from RFC 9051/8438. */
export function statusLine(session: ImapSession, name: string, items: StatusItem[], st: MailboxStatus): void {
  const values: Record<StatusItem, number> = {
    MESSAGES: st.messages,
    RECENT: st.recent,
    UIDNEXT: st.uidNext,
    UIDVALIDITY: st.uidValidity,
    UNSEEN: st.unseen,
    HIGHESTMODSEQ: st.highestModseq,
    SIZE: st.size,
    DELETED: st.deleted,
  };
  if (items.includes('HIGHESTMODSEQ')) session.enableCondstore();
  session.writer.untagged(`STATUS ${encodeToBuffer(name).toString('utf8')} (${items.map((i) => `${i} ${values[i]}`).join(' ')})`);
}

/** STATUS (RFC 3501 section 6.3.10). */
export const status: ImapCommand<LoggedIn> = {
  name: 'STATUS',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 2) throw new ParseError('STATUS needs a mailbox name and items');
    const name = mailboxArg(session, command.args[0]);
    const items = parseStatusItems(command.args[1]);
    const st = await account.status(name);
    statusLine(session, name, items, st);
  },
};
