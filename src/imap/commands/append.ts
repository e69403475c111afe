import { isMailError } from '../../errors.js';
import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError, type ListToken, type Token } from '../parser.js';
import { mailboxArg, monthIndex, parseFlags } from '../args.js';

/** date-time (RFC 3501 section 9): "dd-Mon-yyyy hh:mm:ss +zzzz", day may be space-padded. */
function parseDateTime(text: string): Date {
  const m = /^([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$/.exec(text);
  const month = m ? monthIndex(m[2]!) : -1;
  if (!m || month < 0) throw new ParseError('invalid date-time');
  const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
  const ms = Date.UTC(Number(m[3]), month, Number(m[1]!.trim()), Number(m[4]), Number(m[5]), Number(m[6])) - offset * 60_000;
  if (!Number.isFinite(ms)) throw new ParseError('invalid date-time');
  return new Date(ms);
}

/** APPEND (RFC 3501 section 6.3.11; UIDPLUS APPENDUID, RFC 4315; APPENDLIMIT, RFC 7889). */
export const append: ImapCommand<LoggedIn> = {
  name: 'APPEND',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    const args = [...command.args];
    const name = mailboxArg(session, args.shift());
    let flagTokens: Token[] = [];
    let date: Date | undefined;
    if (args[0]?.type === 'list') flagTokens = (args.shift() as ListToken).items;
    if (args.length === 2) {
      const d = args.shift()!;
      if (d.type !== 'string' || d.literal) throw new ParseError('date-time must be a quoted string');
      date = parseDateTime(d.value.toString('latin1'));
    }
    const message = args.shift();
    if (!message || message.type !== 'string' || args.length > 0) throw new ParseError('APPEND needs a message literal');
    if (message.value.length === 0) throw new ParseError('empty message');
    const { flags, keywords } = parseFlags(flagTokens);
    if (!(await account.exists(name))) return { status: 'NO', code: 'TRYCREATE', text: 'Mailbox does not exist' };
    try {
      // The store refuses a message over quota (QUOTA_EXCEEDED: NO [OVERQUOTA]).
      const { uid, uidValidity } = await account.with(name, async (mailbox) => ({
        uid: await mailbox.append(message.value, flags, keywords, date),
        uidValidity: mailbox.uidValidity,
      }));
      return { code: `APPENDUID ${uidValidity} ${uid}`, text: 'Append completed' };
    } catch (err) {
      if (isMailError(err, 'MAILBOX_NOT_FOUND')) return { status: 'NO', code: 'TRYCREATE', text: 'Mailbox does not exist' };
      throw err;
    }
  },
};
