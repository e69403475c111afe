/**
 * The on-disk formats of a Maildir that Dovecot 2.3 serves (LAYOUT=maildir++), as small modules
 * for the IMAP/POP3 mailbox engine: read what Dovecot wrote, write what Dovecot reads.
 *
 * Per folder directory (INBOX is the Maildir root):
 *   cur/ new/ tmp/        messages; names and flags: filename.ts
 *   dovecot-uidlist       UIDs, UIDVALIDITY, next UID, GUID: uidlist.ts (locked: dotlock.ts)
 *   dovecot-keywords      names of the keyword letters a..z: keywords.ts
 *   maildirfolder         empty marker of a Maildir++ folder: folders.ts
 * In the Maildir root only:
 *   .<Folder>[.<Sub>]     the other folders, names in modified UTF-7: folders.ts, mutf7.ts
 *   subscriptions         subscribed mailboxes: subscriptions.ts
 *   dovecot-uidvalidity*  the UIDVALIDITY counter for new folders: uidvalidity.ts
 *   maildirsize           Maildir++ quota: ../quota.ts
 * Dovecot's dovecot.index*, dovecot.list.index* and dovecot.mailbox.log are caches it rebuilds
 * from the files above; this store neither reads nor needs them.
 *
 * Rules for writers, so that Dovecot and this server can share a Maildir:
 * - Change dovecot-uidlist and dovecot-keywords only while holding dovecot-uidlist.lock
 *   (acquireDotlock(uidlistPath, UIDLIST_LOCK)); give new messages UIDs from nextUid() and
 *   append them (appendUidlist) or rewrite the file (writeUidlist).
 * - Rename files to change flags (setMaildirFlags); a keyword needs its letter in
 *   dovecot-keywords first (addKeyword + writeKeywords).
 * - Change subscriptions only through setSubscribed (it takes subscriptions.lock).
 */
export * from './mutf7.js';
export * from './filename.js';
export * from './uidlist.js';
export * from './uidvalidity.js';
export * from './keywords.js';
export * from './subscriptions.js';
export * from './folders.js';
export * from './dotlock.js';
