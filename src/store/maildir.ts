/**
 * Maildir naming and layout, as D. J. Bernstein's maildir description and Dovecot's Maildir
 * format define them, so a mail root written here is read by Dovecot and the other way round.
 */
import os from 'node:os';
import path from 'node:path';
import { MailError } from '../errors.js';
import { isUnsafeDomain, isUnsafeLocalPart, splitAddress } from '../directory/address.js';
import type { UserRecord } from '../directory/types.js';

/**
 * The Maildir of a user below the mail root: the record's own maildir (PostfixAdmin) or the
 * layout with %d (domain), %n (local part), %u (whole address), %% (a percent sign), as in
 * Dovecot's mail_location = maildir:/var/mail/vhosts/%d/%n.
 */
export function maildirPath(root: string, layout: string, user: UserRecord): string {
  const split = splitAddress(user.email);
  if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain)) {
    throw new MailError('BAD_ADDRESS', `mailbox address ${JSON.stringify(user.email)} cannot be a path`);
  }
  let relative: string;
  if (user.maildir) {
    relative = user.maildir;
  } else {
    relative = layout.replace(/%([dnu%])/g, (_m, v: string) =>
      v === 'd' ? split.domain : v === 'n' ? split.local : v === 'u' ? user.email : '%',
    );
  }
  // PostfixAdmin stores maildir as 'example.com/bob/': the trailing slash is not part of the name.
  const normal = path.normalize(relative).replace(/\/+$/, '');
  if (path.isAbsolute(normal) || normal === '.' || normal.split(path.sep).includes('..')) {
    throw new MailError('BAD_ADDRESS', `maildir ${JSON.stringify(relative)} of ${user.email} is outside the mail root`);
  }
  return path.join(root, normal);
}

let sequence = 0;
const hostPart = os
  .hostname()
  // The maildir description: '/' and ':' in the host name are written as \057 and \072.
  .replace(/\//g, '\\057')
  .replace(/:/g, '\\072');

/**
 * A name unique to this delivery, in the form Dovecot writes: <sec>.M<usec>P<pid>Q<n>.<host>.
 * The Q counter keeps names unique within one microsecond of one process.
 */
export function uniqueBaseName(now = Date.now()): string {
  // Dovecot gives new files their UIDs ordered by the seconds, then the microseconds: the
  // microseconds belong to the same clock reading as the seconds (the milliseconds of `now` and
  // the sub-millisecond part of the monotonic clock), and never go back within one second, so
  // the names of one process sort in the order they were made.
  const seconds = Math.floor(now / 1000);
  let micros = (now % 1000) * 1000 + (Math.floor(performance.now() * 1000) % 1000);
  if (seconds === lastSeconds && micros <= lastMicros) micros = Math.min(lastMicros + 1, 999_999);
  if (seconds >= lastSeconds) {
    lastSeconds = seconds;
    lastMicros = micros;
  }
  sequence = (sequence + 1) % 1_000_000_000;
  return `${seconds}.M${micros}P${process.pid}Q${sequence}.${hostPart}`;
}
let lastSeconds = 0;
let lastMicros = -1;

/** Reads the S= size from a Maildir file name, as Dovecot and Maildir++ quota do. */
export function sizeFromName(name: string): number | undefined {
  const m = /,S=(\d+)/.exec(name.split(':')[0]!);
  return m ? Number(m[1]) : undefined;
}
