/**
 * The mail store: Dovecot's mail_location as maild's mail.root and mail.layout (mail_nfs_storage
 * as mail.blocking_reads: false), the inbox namespace's separator and its special-use folders.
 */
import { findSections, setting } from './dovecot-conf.js';
import type { ImportContext } from './context.js';

const SPECIAL_USES = new Set(['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash']);

export interface MailStoreSettings {
  mailRoot?: { root: string; layout: string; from: string };
  /** Where Dovecot was told its mail is on NFS (mail_nfs_storage = yes): no blocking reads then. */
  nfs?: string;
  /** The owner of the Maildirs: Dovecot's mail_uid/mail_gid, or the static userdb's uid/gid. */
  account?: { user: string; group?: string; from: string };
  separator?: string;
  /** [folder, special use, Dovecot's auto setting] */
  specialFolders: Array<[string, string, string]>;
}

export function importMailStore(ctx: ImportContext): MailStoreSettings {
  const { dovecot, dv, dvLabel, rel, skip } = ctx;
  let mailRoot: { root: string; layout: string; from: string } | undefined;
  let account: MailStoreSettings['account'];
  let separator: string | undefined;
  if (dovecot) {
    const staticUserdb = findSections(dovecot, 'userdb').find((s) => (setting(s, 'driver') ?? s.name) === 'static');
    const staticArgs = new Map(
      (staticUserdb ? (setting(staticUserdb, 'args') ?? '') : '')
        .split(/\s+/)
        .filter((a) => a.includes('='))
        .map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] as const),
    );
    const uid = dv('mail_uid') || staticArgs.get('uid');
    const gid = dv('mail_gid') || staticArgs.get('gid');
    if (uid) {
      account = {
        user: uid,
        ...(gid ? { group: gid } : {}),
        from: dv('mail_uid') ? dvLabel('mail_uid') : `userdb static uid=${uid}${gid ? ` gid=${gid}` : ''}`,
      };
    }
    const location = dv('mail_location') || staticArgs.get('mail') || '';
    const label = dv('mail_location') ? dvLabel('mail_location') : `userdb static mail=${location}`;
    if (!location) skip('mail_location', 'not set (Dovecot guessed the mailbox format at run time); set mail.root and mail.layout by hand');
    else {
      const m = /^(\w+):(.*)$/.exec(location);
      const format = m?.[1] ?? '';
      const [rawPath = '', ...options] = (m?.[2] ?? '').split(':');
      if (format !== 'maildir')
        skip(
          label,
          `maild stores mail as Maildir only (${format || location} is not); convert the mailboxes first (doveadm sync -u USER maildir:...)`,
        );
      else {
        let mailPath = rawPath;
        if (mailPath.startsWith('~')) {
          const home = staticArgs.get('home');
          mailPath = home ? `${home.replace(/\/$/, '')}${mailPath.slice(1)}` : '';
        }
        const split = splitMailPath(mailPath);
        if (!split)
          skip(
            label,
            'the path has no per-user part maild can use (%d, %n or %u) or uses ~ without a static home; set mail.root and mail.layout by hand',
          );
        else mailRoot = { ...split, from: label };
        for (const option of options) {
          const [name] = option.split('=');
          if (name === 'INDEX') continue; // Dovecot's own index files; maild keeps its own.
          if (name === 'LAYOUT' && option === 'LAYOUT=maildir++') continue;
          skip(
            `${label} option ${option}`,
            name === 'CONTROL'
              ? 'dovecot-uidlist lives in that directory, maild reads it from the Maildir (clients would see new UIDs)'
              : name === 'LAYOUT'
                ? "maild keeps folders in Maildir++ layout (.Folder), not Dovecot's LAYOUT=fs"
                : 'maild has no such option',
          );
        }
      }
    }
    const inbox =
      findSections(dovecot, 'namespace').find((n) => setting(n, 'inbox') === 'yes') ?? findSections(dovecot, 'namespace', 'inbox')[0];
    const prefix = inbox && setting(inbox, 'prefix');
    if (prefix) skip(dvLabel('prefix', inbox), `maild's folders have no prefix: clients will see "${prefix}Sent" as "Sent"`);
    const sep = inbox && setting(inbox, 'separator');
    if (sep) {
      if (sep === '.' || sep === '/') separator = sep;
      else skip(dvLabel('separator', inbox), 'maild offers "." or "/" as the hierarchy separator');
    }
    for (const ns of findSections(dovecot, 'namespace')) {
      if (ns === inbox) continue;
      skip(`namespace ${ns.name} (${rel(ns.file)})`, 'maild has one private namespace; shared and public namespaces are not served');
    }
  }

  const specialFolders: Array<[string, string, string]> = [];
  if (dovecot) {
    const inbox = findSections(dovecot, 'namespace').find((n) => setting(n, 'inbox') === 'yes');
    for (const mailbox of inbox ? findSections(inbox, 'mailbox') : []) {
      const uses = (setting(mailbox, 'special_use') ?? '').split(/\s+/).filter(Boolean);
      const auto = setting(mailbox, 'auto') ?? 'no';
      if (uses.length === 0) {
        if (auto !== 'no')
          skip(`mailbox ${mailbox.name} { auto = ${auto} }`, 'maild creates only folders with a special use on first login');
        continue;
      }
      const use = uses.find((u) => SPECIAL_USES.has(u));
      if (!use) {
        skip(
          `mailbox ${mailbox.name} { special_use = ${uses.join(' ')} }`,
          'maild knows \\All, \\Archive, \\Drafts, \\Flagged, \\Junk, \\Sent, \\Trash',
        );
        continue;
      }
      if (uses.length > 1)
        skip(`mailbox ${mailbox.name} { special_use = ${uses.join(' ')} }`, `maild gives a folder one special use; ${use} was kept`);
      specialFolders.push([mailbox.name, use, auto]);
    }
  }

  const nfs = dovecot && dv('mail_nfs_storage') === 'yes' ? dvLabel('mail_nfs_storage') : undefined;
  return {
    ...(mailRoot ? { mailRoot } : {}),
    ...(nfs ? { nfs } : {}),
    ...(account ? { account } : {}),
    ...(separator ? { separator } : {}),
    specialFolders,
  };
}

/** Dovecot's `%d/%n` path variables as maild's layout has them (%d, %n, %u). */
const LAYOUT_VARS: Record<string, string> = { d: '%d', n: '%n', u: '%u', '{domain}': '%d', '{username}': '%n', '{user}': '%u' };

/** /var/mail/vhosts/%d/%n → root /var/mail/vhosts, layout %d/%n; undefined without a per-user part. */
export function splitMailPath(mailPath: string): { root: string; layout: string } | undefined {
  const parts = mailPath.replace(/\/+$/, '').split('/');
  const first = parts.findIndex((p) => p.includes('%'));
  if (first <= 0) return undefined;
  let ok = true;
  const layout = parts
    .slice(first)
    .map((p) =>
      p.replace(/%L?(\{[a-z]+\}|[a-zA-Z%])/g, (whole, v: string) => {
        const mapped = LAYOUT_VARS[v];
        if (!mapped) ok = false;
        return mapped ?? whole;
      }),
    )
    .join('/');
  if (!ok || !/%[dnu]/.test(layout) || /%(?![dnu])/.test(layout)) return undefined;
  return { root: parts.slice(0, first).join('/') || '/', layout };
}
