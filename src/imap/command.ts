/**
 * The contract of a command module (one file per command in commands/): the states it is
 * allowed in, checked by the session before it runs (RFC 3501 section 3), and its handler.
 * A handler writes untagged responses through the session and returns the tagged result;
 * errors it throws are mapped to NO/BAD in one place (errors.ts).
 */
import type { UserRecord } from '../directory/types.js';
import type { Account } from '../store/mail/service.js';
import type { ParsedCommand } from './parser.js';
import type { SelectedMailbox } from './selected.js';
import type { ImapSession } from './session.js';

/**
 * The session's state (RFC 3501 section 3) with what each state holds: the logged-in user's
 * account, and in the selected state the mailbox view. The session changes it only through
 * login(), select() and deselect().
 */
export type ImapState =
  | { readonly name: 'not-authenticated' }
  | { readonly name: 'authenticated'; readonly user: UserRecord; readonly account: Account }
  | { readonly name: 'selected'; readonly user: UserRecord; readonly account: Account; readonly mailbox: SelectedMailbox };

export type SessionState = ImapState['name'];

/** The states after login: the account is there. */
export type LoggedIn = Extract<ImapState, { name: 'authenticated' | 'selected' }>;
export type Selected = Extract<ImapState, { name: 'selected' }>;

export interface CommandResult {
  status?: 'OK' | 'NO' | 'BAD';
  code?: string;
  text?: string;
  /** The handler already sent the tagged reply (LOGOUT, STARTTLS). */
  answered?: boolean;
}

/**
 * A command allowed in the states S. Its handler gets the state it runs in, so a command of the
 * authenticated states has the account, one of the selected state the mailbox, without a check.
 */
export interface ImapCommand<S extends ImapState = ImapState> {
  /** Upper case, as parsed: 'FETCH', 'UID FETCH'. */
  name: string;
  states: readonly S['name'][];
  run(session: ImapSession, command: ParsedCommand, state: S): Promise<CommandResult | void>;
}

export const ANY: readonly SessionState[] = ['not-authenticated', 'authenticated', 'selected'];
export const NOT_AUTHENTICATED: readonly 'not-authenticated'[] = ['not-authenticated'];
export const AUTHENTICATED: readonly LoggedIn['name'][] = ['authenticated', 'selected'];
export const SELECTED: readonly Selected['name'][] = ['selected'];
