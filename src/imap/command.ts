/**
 * The contract of a command module (one file per command in commands/): the states it is
 * allowed in, checked by the session before it runs (RFC 3501 section 3), and its handler.
 * A handler writes untagged responses through the session and returns the tagged result;
 * errors it throws are mapped to NO/BAD in one place (errors.ts).
 */
import type { ParsedCommand } from './parser.js';
import type { ImapSession } from './session.js';

export type SessionState = 'not-authenticated' | 'authenticated' | 'selected';

export interface CommandResult {
  status?: 'OK' | 'NO' | 'BAD';
  code?: string;
  text?: string;
  /** The handler already sent the tagged reply (LOGOUT, STARTTLS). */
  answered?: boolean;
}

export interface ImapCommand {
  /** Upper case, as parsed: 'FETCH', 'UID FETCH'. */
  name: string;
  states: readonly SessionState[];
  run(session: ImapSession, command: ParsedCommand): Promise<CommandResult | void>;
}

export const ANY: readonly SessionState[] = ['not-authenticated', 'authenticated', 'selected'];
export const NOT_AUTHENTICATED: readonly SessionState[] = ['not-authenticated'];
export const AUTHENTICATED: readonly SessionState[] = ['authenticated', 'selected'];
export const SELECTED: readonly SessionState[] = ['selected'];
