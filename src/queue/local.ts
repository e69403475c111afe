/**
 * Local delivery from the queue (Postfix's virtual(8) behind qmgr): recipients in hosted
 * domains are resolved through the directory (aliases, catch-alls, extensions) and written to
 * their Maildirs by the store. Remote destinations that an alias leads to come back as
 * forwards, which the queue adds as new recipients of the same message.
 */
import type { Readable } from 'node:stream';
import type { Directory } from '../directory/directory.js';
import type { UserRecord } from '../directory/types.js';
import { MailError, isMailError } from '../errors.js';
import type { MaildirStore } from '../store/delivery.js';
import { statusFor } from '../status.js';
import type { RecipientResult } from './types.js';

/**
 * The result for an error of the directory or store: its status (src/status.ts, the same one
 * the SMTP listener answers with), with the detail added for the sender's report. Anything
 * unexpected counts as a storage error: retried.
 */
export function resultForError(address: string, err: unknown): RecipientResult {
  const e = isMailError(err) ? err : new MailError('STORAGE_ERROR', String((err as Error)?.message ?? err));
  const status = statusFor(e);
  return {
    address,
    status: status.code >= 500 ? 'failed' : 'deferred',
    code: status.code,
    enhanced: status.enhanced,
    text: `${status.text} (${e.message.replace(/[\r\n]/g, ' ')})`,
  };
}

export class LocalDelivery {
  readonly #directory: Directory;
  readonly #store: MaildirStore;

  constructor(directory: Directory, store: MaildirStore) {
    this.#directory = directory;
    this.#store = store;
  }

  /**
   * What a local address stands for: its mailboxes and the remote addresses its aliases lead
   * to. The queue replaces the recipient by these (Postfix expands virtual aliases before
   * queueing), so a mailbox that fails is retried alone and one reached twice gets one copy.
   */
  async expand(address: string): Promise<{ mailboxes: string[]; remote: string[] }> {
    const resolution = await this.#directory.resolve(address);
    return { mailboxes: resolution.mailboxes.map((m) => m.email), remote: resolution.remote };
  }

  /**
   * Delivers one message to mailboxes (addresses expand() returned); one result per mailbox, in
   * order. `prepend` is the header block this server adds (Received etc.), written after
   * Return-Path and Delivered-To.
   */
  async deliver(
    req: { queueId: string; sender: string; prepend: string; size: number; folder?: string; scores?: { spam?: number; virus?: number } },
    mailboxes: string[],
    openMessage: () => Readable,
  ): Promise<RecipientResult[]> {
    const results = new Map<string, RecipientResult>();
    const users: UserRecord[] = [];
    for (const address of mailboxes) {
      try {
        const user = await this.#directory.findUser(address);
        if (!user) throw new MailError('RECIPIENT_NOT_FOUND', `mailbox ${address} no longer exists`);
        if (!user.enabled) throw new MailError('MAILBOX_DISABLED', `mailbox ${address} is disabled`);
        users.push(user);
      } catch (err) {
        results.set(address, resultForError(address, err));
      }
    }
    if (users.length > 0) {
      const received = req.prepend.replace(/\r\n/g, '\n').replace(/\n$/, '');
      try {
        const outcome = await this.#store.deliver(openMessage(), {
          queueId: req.queueId,
          sender: req.sender,
          received,
          mailboxes: users,
          maxBytes: req.size + 1,
          atomic: false,
          ...(req.folder ? { folder: req.folder } : {}),
          ...(req.scores ? { scores: req.scores } : {}),
        });
        for (const r of outcome.results) {
          results.set(
            r.mailbox.email,
            r.ok
              ? { address: r.mailbox.email, status: 'sent', code: 250, enhanced: '2.0.0', text: 'delivered to maildir' }
              : resultForError(r.mailbox.email, r.error),
          );
        }
      } catch (err) {
        for (const u of users) results.set(u.email, resultForError(u.email, err));
      }
    }
    return mailboxes.map((a) => results.get(a) ?? resultForError(a, new MailError('STORAGE_ERROR', 'no result')));
  }
}
