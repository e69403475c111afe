import type { Account } from '../../store/mail/service.js';
import { AUTHENTICATED, type ImapCommand, type LoggedIn } from '../command.js';
import { ParseError, astring } from '../parser.js';
import type { ImapSession } from '../session.js';
import { encodeToBuffer } from '../values.js';
import { mailboxArg } from '../args.js';

/** `* QUOTA "" (STORAGE used limit)` in KiB (RFC 9208 section 5.1). */
async function quotaLine(session: ImapSession, account: Account): Promise<boolean> {
  const q = await account.quota();
  if (!q.limitBytes) return false;
  session.writer.untagged(`QUOTA "" (STORAGE ${Math.ceil(q.usedBytes / 1024)} ${Math.floor(q.limitBytes / 1024)})`);
  return true;
}

/** GETQUOTAROOT (RFC 9208 section 4.3): the one quota root "" of the user, if any. */
export const getQuotaRoot: ImapCommand<LoggedIn> = {
  name: 'GETQUOTAROOT',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 1) throw new ParseError('GETQUOTAROOT needs a mailbox name');
    const name = mailboxArg(session, command.args[0]);
    if (!(await account.exists(name))) return { status: 'NO', code: 'NONEXISTENT', text: 'Mailbox does not exist' };
    const q = await account.quota();
    const quoted = encodeToBuffer(name).toString('utf8');
    session.writer.untagged(q.limitBytes ? `QUOTAROOT ${quoted} ""` : `QUOTAROOT ${quoted}`);
    await quotaLine(session, account);
  },
};

/** GETQUOTA (RFC 9208 section 4.2). */
export const getQuota: ImapCommand<LoggedIn> = {
  name: 'GETQUOTA',
  states: AUTHENTICATED,
  async run(session, command, { account }) {
    if (command.args.length !== 1) throw new ParseError('GETQUOTA needs a quota root');
    if (astring(command.args[0], 'quota root') !== '' || !(await quotaLine(session, account))) {
      return { status: 'NO', code: 'NONEXISTENT', text: 'No such quota root' };
    }
  },
};

/** SETQUOTA: quotas come from the directory; clients cannot change them. */
export const setQuota: ImapCommand = {
  name: 'SETQUOTA',
  states: AUTHENTICATED,
  async run() {
    return { status: 'NO', code: 'NOPERM', text: 'Quotas are set by the administrator' };
  },
};
