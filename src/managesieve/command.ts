/**
 * The contract of a ManageSieve command module (one file per command in commands/): the states
 * it is allowed in (RFC 5804 section 1.6 ... 2: non-authenticated, authenticated), checked by the
 * session, and its handler. A handler writes its own OK response; what it throws becomes NO in
 * errors.ts.
 */
import type { Token } from './parser.js';
import type { ManageSieveSession } from './session.js';

export type ManageSieveState = 'unauthenticated' | 'authenticated';

export interface ManageSieveCommand {
  /** Upper case: 'PUTSCRIPT'. */
  name: string;
  states: readonly ManageSieveState[];
  run(session: ManageSieveSession, args: Token[]): Promise<void>;
}

export const UNAUTHENTICATED: readonly ManageSieveState[] = ['unauthenticated'];
export const AUTHENTICATED: readonly ManageSieveState[] = ['authenticated'];
export const ANY: readonly ManageSieveState[] = ['unauthenticated', 'authenticated'];
