/**
 * The contract of a POP3 command module (one file per command in commands/): the states it is
 * allowed in, checked by the session before it runs (RFC 1939 section 3: AUTHORIZATION,
 * TRANSACTION; UPDATE is entered by QUIT and takes no commands), and its handler. A handler
 * writes its own +OK response through the session's writer; what it throws becomes -ERR in
 * errors.ts.
 */
import { Pop3Error } from './errors.js';
import type { Pop3Session } from './session.js';

export type Pop3State = 'authorization' | 'transaction';

export interface Pop3Command {
  /** Upper case: 'RETR'. */
  name: string;
  states: readonly Pop3State[];
  /**
   * `args` is the rest of the line after the command name and one space (PASS keeps spaces:
   * RFC 1939 section 7 lets a password contain them).
   */
  run(session: Pop3Session, args: string): Promise<void>;
}

export const AUTHORIZATION: readonly Pop3State[] = ['authorization'];
export const TRANSACTION: readonly Pop3State[] = ['transaction'];
export const ANY: readonly Pop3State[] = ['authorization', 'transaction'];

/** Splits arguments (separated by single spaces; RFC 1939 section 3 allows up to 40 characters each). */
export function splitArgs(args: string): string[] {
  const trimmed = args.trim();
  return trimmed === '' ? [] : trimmed.split(/ +/);
}

/** Refuses arguments for a command that takes none. */
export function noArgs(name: string, args: string): void {
  if (args.trim() !== '') throw new Pop3Error(`${name} takes no arguments.`);
}

/** A message number or line count: decimal digits only (no sign, no spaces). */
export function parseNumber(text: string | undefined, what: string): number {
  if (text === undefined || !/^\d{1,15}$/.test(text)) {
    throw new Pop3Error(text === undefined ? `Missing ${what}.` : `Invalid ${what}: ${text.slice(0, 40)}`);
  }
  return Number(text);
}
