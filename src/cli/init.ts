/**
 * `maild init`: the first-run setup. Writes a configuration and the file directory with one
 * domain and one user whose password is random and printed once, so no installation ever
 * starts with a password someone else knows. It never overwrites: an existing configuration or
 * directory file is left as it is (exit 1).
 *
 * Listeners: everything on loopback unless --listen (or --container) names an address; then the
 * MX and the TLS listeners (submission, IMAP, POP3) listen there. Those take passwords only
 * inside TLS (auth.cleartext: never, the default), so nothing on the outside accepts a password
 * in the clear, and no listener that needs no login (LMTP) is written at all.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { lookupAccount } from '../privileges/account.js';
import { PasswordService } from '../directory/passwords/index.js';
import type { CliIo } from './commands.js';

export interface InitOptions {
  configPath: string;
  hostname: string | undefined;
  domain: string | undefined;
  /** The first user; default postmaster@DOMAIN. */
  user: string | undefined;
  /** Address of the MX and TLS listeners; default loopback (0.0.0.0 with --container). */
  listen: string | undefined;
  /** Unprivileged ports (2525, 1587, ...) on all interfaces, paths of the image's volumes. */
  container: boolean;
  dataDir: string | undefined;
  mailRoot: string | undefined;
}

export class InitUsageError extends Error {}

/** RFC 1123 host names: letters, digits and hyphens in labels of at most 63, at least two labels. */
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
/** A plain dot-atom local part (RFC 5321 section 4.1.2) without routing characters. */
const LOCAL_PART = /^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*$/i;

interface ListenerPlan {
  name: string;
  protocol: 'smtp' | 'submission' | 'imap' | 'pop3';
  standardPort: number;
  containerPort: number;
  tls: 'starttls' | 'implicit';
  comment?: string;
}

const LISTENERS: ListenerPlan[] = [
  { name: 'mx', protocol: 'smtp', standardPort: 25, containerPort: 2525, tls: 'starttls', comment: 'mail from the world; no AUTH here' },
  {
    name: 'submissions',
    protocol: 'submission',
    standardPort: 465,
    containerPort: 1465,
    tls: 'implicit',
    comment: 'mail clients sending (RFC 8314): AUTH only inside TLS',
  },
  { name: 'submission', protocol: 'submission', standardPort: 587, containerPort: 1587, tls: 'starttls' },
  { name: 'imaps', protocol: 'imap', standardPort: 993, containerPort: 1993, tls: 'implicit' },
  { name: 'imap', protocol: 'imap', standardPort: 143, containerPort: 1143, tls: 'starttls' },
  { name: 'pop3s', protocol: 'pop3', standardPort: 995, containerPort: 1995, tls: 'implicit' },
  { name: 'pop3', protocol: 'pop3', standardPort: 110, containerPort: 1110, tls: 'starttls' },
];

/** A password of 144 random bits, URL-safe so it survives copying from a terminal or a log. */
function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

function checkOptions(opts: InitOptions): { hostname: string; domain: string; user: string; listen: string } {
  if (!opts.hostname) throw new InitUsageError('init needs --hostname HOST (the name MX records point at)');
  if (!opts.domain) throw new InitUsageError('init needs --domain DOMAIN (the first mail domain)');
  if (!DNS_NAME.test(opts.hostname)) throw new InitUsageError(`--hostname ${opts.hostname}: not a host name such as mail.example.com`);
  if (!DNS_NAME.test(opts.domain)) throw new InitUsageError(`--domain ${opts.domain}: not a domain name such as example.com`);
  const domain = opts.domain.toLowerCase();
  const user = (opts.user ?? `postmaster@${domain}`).toLowerCase();
  const at = user.lastIndexOf('@');
  if (at <= 0 || !LOCAL_PART.test(user.slice(0, at)) || user.slice(at + 1) !== domain)
    throw new InitUsageError(`--user ${opts.user}: expected an address such as postmaster@${domain} in --domain`);
  const listen = opts.listen ?? (opts.container ? '0.0.0.0' : '127.0.0.1');
  if (isIP(listen) === 0) throw new InitUsageError(`--listen ${listen}: expected an IP address such as 0.0.0.0, :: or 192.0.2.1`);
  return { hostname: opts.hostname.toLowerCase(), domain, user, listen };
}

async function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/** The account written as user: (the tutorials' vmail). */
const SERVING_ACCOUNT = 'vmail';

const isLoopback = (address: string) => address === '::1' || address.startsWith('127.');

/** JSON strings are YAML double-quoted scalars: safe for any value. */
const q = (value: string) => JSON.stringify(value);

function configText(o: { hostname: string; listen: string; container: boolean; dataDir: string; mailRoot: string; directoryFile: string }) {
  const lines = [
    `# maild configuration written by \`maild init\`. Check it with \`maild check-config\`; see`,
    `# config/production.example.yaml for every setting. Relative paths are relative to this file.`,
    `hostname: ${q(o.hostname)}`,
    `# Started as root, maild binds the ports and reads the keys, then serves as this account.`,
    `user: ${q(SERVING_ACCOUNT)}`,
    `data_dir: ${q(o.dataDir)}`,
    `mail:`,
    `  root: ${q(o.mailRoot)}`,
    `  layout: "%d/%n"`,
    ``,
    `# Listeners on ${o.listen}${o.container ? ': publish them as 25, 465, 587, 993, 143, 995 and 110' : ''}${isLoopback(o.listen) ? ': this host only (maild init --listen 0.0.0.0 opens them to others)' : ''}.`,
    `# Passwords are accepted only inside TLS (auth.cleartext: never). Until tls.cert and tls.key`,
    `# are set, a self-signed certificate is generated in data_dir.`,
    `listeners:`,
  ];
  for (const l of LISTENERS) {
    if (l.comment) lines.push(`  # ${l.comment}`);
    lines.push(
      `  - name: ${l.name}`,
      `    protocol: ${l.protocol}`,
      `    address: ${q(o.listen)}`,
      `    port: ${o.container ? l.containerPort : l.standardPort}`,
      `    tls: ${l.tls}`,
    );
  }
  lines.push(
    ``,
    `# tls:`,
    `#   cert: /etc/maild/fullchain.pem`,
    `#   key: /etc/maild/privkey.pem`,
    ``,
    `directory:`,
    `  backend: file`,
    `  file:`,
    `    path: ${q(o.directoryFile)}`,
    ``,
    `auth:`,
    `  cleartext: never`,
    ``,
  );
  return lines.join('\n');
}

function directoryText(domain: string, user: string, hash: string): string {
  const lines = [
    `# maild's directory, written by \`maild init\`; \`maild domain|user|alias\` edit it.`,
    `domains:`,
    `  - ${q(domain)}`,
    `users:`,
    `  ${q(user)}:`,
    `    password: ${q(hash)}`,
    `aliases:`,
  ];
  // RFC 5321 section 4.5.1 (postmaster) and RFC 2142 (abuse) must reach someone.
  const roles = [`postmaster@${domain}`, `abuse@${domain}`].filter((a) => a !== user);
  if (roles.length === 0) lines[lines.length - 1] = 'aliases: {}';
  for (const role of roles) lines.push(`  ${q(role)}: ${q(user)}`);
  return `${lines.join('\n')}\n`;
}

export async function runInit(opts: InitOptions, io: CliIo): Promise<number> {
  const { hostname, domain, user, listen } = checkOptions(opts);
  const configPath = path.resolve(opts.configPath);
  const dataDir = path.resolve(opts.dataDir ?? '/var/lib/maild');
  const mailRoot = path.resolve(opts.mailRoot ?? '/var/mail/vhosts');
  const directoryFile = path.join(dataDir, 'directory.yaml');

  for (const file of [configPath, directoryFile]) {
    if (await exists(file)) {
      io.stderr.write(`maild: ${file} exists; init writes a first configuration only and leaves existing files as they are\n`);
      return 1;
    }
  }

  const password = generatePassword();
  const passwords = new PasswordService({ threads: 1, defaultScheme: 'CRYPT', newScheme: 'ARGON2ID' });
  let hash: string;
  try {
    hash = await passwords.hash(password, 'ARGON2ID');
  } finally {
    await passwords.close();
  }

  await fs.mkdir(path.dirname(configPath), { recursive: true, mode: 0o750 });
  await fs.mkdir(dataDir, { recursive: true, mode: 0o750 });
  // 'wx': never replace a file that appeared meanwhile. The directory holds password hashes: 0600.
  await fs.writeFile(directoryFile, directoryText(domain, user, hash), { flag: 'wx', mode: 0o600 });
  try {
    await fs.writeFile(configPath, configText({ hostname, listen, container: opts.container, dataDir, mailRoot, directoryFile }), {
      flag: 'wx',
      mode: 0o640,
    });
  } catch (err) {
    await fs.unlink(directoryFile).catch(() => undefined);
    throw err;
  }

  // Run as root on a host: the daemon (dropped to vmail) must read and rewrite the directory file.
  if (process.getuid?.() === 0) {
    try {
      const account = lookupAccount(SERVING_ACCOUNT);
      await fs.chown(dataDir, account.uid, account.gid);
      await fs.chown(directoryFile, account.uid, account.gid);
    } catch {
      io.stderr.write(
        `maild: no ${SERVING_ACCOUNT} account yet: create it (useradd --system --user-group --home-dir ${dataDir} --shell /usr/sbin/nologin ${SERVING_ACCOUNT}), then chown -R ${SERVING_ACCOUNT}: ${dataDir}\n`,
      );
    }
  }

  const out = (line: string) => io.stdout.write(`${line}\n`);
  out(`maild init: wrote ${configPath} and ${directoryFile}`);
  out(`first user: ${user}`);
  out(`password:   ${password}`);
  out(`(shown only this once; change it with: maild user passwd ${user})`);
  return 0;
}
