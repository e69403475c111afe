/**
 * The one place where errors become IMAP responses. Response codes follow RFC 5530; syntax
 * errors are BAD (RFC 3501 section 7.1.3); what the client sees is fixed text, the detail goes
 * to the log.
 */
import { isMailError, type ErrorCode } from '../errors.js';
import { ParseError } from './parser.js';

export interface ImapReply {
  status: 'NO' | 'BAD';
  code?: string;
  text: string;
}

const BY_ERROR: Partial<Record<ErrorCode, ImapReply>> = {
  TEMP_FAIL: { status: 'NO', code: 'UNAVAILABLE', text: 'Temporary failure, try again later' },
  STORAGE_ERROR: { status: 'NO', code: 'UNAVAILABLE', text: 'Could not write to the mail store, try again later' },
  MAILBOX_NOT_FOUND: { status: 'NO', code: 'NONEXISTENT', text: 'Mailbox does not exist' },
  ALREADY_EXISTS: { status: 'NO', code: 'ALREADYEXISTS', text: 'Mailbox already exists' },
  BAD_MAILBOX_NAME: { status: 'NO', code: 'CANNOT', text: 'Invalid mailbox name' },
  NOT_PERMITTED: { status: 'NO', code: 'CANNOT', text: 'Not allowed' },
  QUOTA_EXCEEDED: { status: 'NO', code: 'OVERQUOTA', text: 'Quota exceeded' },
  QUOTA_FULL: { status: 'NO', code: 'OVERQUOTA', text: 'Quota exceeded' },
  MESSAGE_TOO_BIG: { status: 'NO', code: 'TOOBIG', text: 'Message too large' },
  EXPUNGED: { status: 'NO', code: 'EXPUNGEISSUED', text: 'Some of the requested messages no longer exist' },
  LIMIT: { status: 'NO', code: 'LIMIT', text: 'Limit reached' },
  IN_USE: { status: 'NO', code: 'INUSE', text: 'Mailbox in use' },
  CONFIG_INVALID: { status: 'NO', code: 'SERVERBUG', text: 'Server configuration error' },
};

/** Maps a thrown error to a tagged reply; `unexpected` tells the session to log it as a bug. */
export function replyForError(err: unknown): ImapReply & { unexpected: boolean } {
  if (err instanceof ParseError) return { status: 'BAD', text: err.message, unexpected: false };
  if (isMailError(err)) {
    const mapped = BY_ERROR[err.code];
    if (mapped) {
      // Name-specific details help clients show something useful and reveal nothing.
      const text = err.code === 'BAD_MAILBOX_NAME' || err.code === 'NOT_PERMITTED' ? err.message : mapped.text;
      return { ...mapped, text, unexpected: false };
    }
  }
  return { status: 'NO', code: 'SERVERBUG', text: 'Internal error occurred. Refer to server log for more information.', unexpected: true };
}
