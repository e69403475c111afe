/**
 * The configuration schema: the single source of the config's types, defaults and documentation.
 * Unknown keys are errors (a typo must not silently fall back to a default).
 * Sizes accept bytes or a number with K/M/G (binary units); durations accept seconds or
 * a number with ms/s/m/h/d, as Postfix's time values do.
 */
import { z } from 'zod';
import { isServerAddress } from '../net.js';
import { dnsblConfigSchema } from '../inbound/dnsbl.js';
import { scannersConfigSchema } from '../inbound/scanners/config.js';
import { miltersSchema } from '../inbound/milter/config.js';
import { manageSieveSchema } from '../managesieve/config.js';

import { duration, int, parseDuration, parseSize, size } from './units.js';

export { int, parseDuration, parseSize, size };

const port = int(0, 65535);

const cidr = z.string().refine((v) => /^[0-9a-f.:]+(\/\d{1,3})?$/i.test(v.trim()), {
  message: 'expected an IP address or CIDR range such as 192.0.2.0/24 or 2001:db8::/32',
});

const listenerSchema = z
  .strictObject({
    /**
     * smtp: the MX listener (port 25). submission: authenticated sending (587 with starttls, 465
     * with implicit TLS). lmtp: RFC 2033 hand-off from another MTA. imap: 143/993. pop3: 110/995.
     * managesieve: RFC 5804 script management, 4190 (starttls, or implicit).
     * dovecot-auth: Dovecot's authentication protocol, for Postfix's smtpd_sasl_type = dovecot
     * (a unix socket, or TCP reachable from loopback and trusted_networks only).
     */
    protocol: z.enum(['smtp', 'submission', 'lmtp', 'imap', 'pop3', 'managesieve', 'dovecot-auth']),
    /** A name for logs; defaults to protocol:port. */
    name: z.string().min(1).optional(),
    /**
     * The address or addresses to listen on: "0.0.0.0" (every IPv4 interface), "::" (every IPv6
     * interface; IPv4 too when it is the only address), "::1", or a list such as ["127.0.0.1",
     * "::1"]. Each address of a list is bound on its own, IPv6 ones IPv6-only, all on one port.
     */
    address: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1, 'give at least one address')])
      .default('0.0.0.0')
      .transform((a) => (typeof a === 'string' ? [a] : a)),
    port: port.optional(),
    /** A unix socket path instead of address/port (lmtp and dovecot-auth only). */
    path: z.string().min(1).optional(),
    /** File mode of the unix socket, octal string such as "0660". */
    socket_mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'expected an octal file mode such as "0660"')
      .default('0660'),
    /**
     * Owner and group of the unix socket (a name or a numeric id), as Dovecot's unix_listener
     * user/group: "postfix" lets Postfix's smtpd and lmtp connect. Changing the owner needs root;
     * the group, membership of it. Unset: the daemon's user and the directory's group.
     */
    socket_owner: z.string().min(1).optional(),
    socket_group: z.string().min(1).optional(),
    /** none: cleartext only; starttls: offer STARTTLS (STLS for pop3); implicit: TLS from the first byte (SMTPS, 993, 995). */
    tls: z.enum(['none', 'starttls', 'implicit']).default('none'),
    /**
     * Behind HAProxy or another TCP load balancer: every connection starts with a PROXY protocol
     * header (v1 or v2, HAProxy's send-proxy / send-proxy-v2) naming the real client, which then
     * counts for limits, login delays, trusted_networks, logs and Received. Only addresses in
     * proxy_networks may connect; with implicit TLS the header comes before the handshake.
     */
    proxy_protocol: z.boolean().default(false),
  })
  .superRefine((l, ctx) => {
    if (l.path === undefined && l.port === undefined)
      ctx.addIssue({ code: 'custom', path: ['port'], message: 'a listener needs a port or a path' });
    if (l.path !== undefined && l.port !== undefined)
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'give a port or a path, not both' });
    if (l.path !== undefined && l.protocol !== 'lmtp' && l.protocol !== 'dovecot-auth')
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'unix sockets are for lmtp and dovecot-auth listeners' });
    if (l.path === undefined && (l.socket_owner !== undefined || l.socket_group !== undefined))
      ctx.addIssue({ code: 'custom', path: ['socket_owner'], message: 'socket_owner and socket_group are for unix socket listeners' });
    if (l.path !== undefined && l.proxy_protocol)
      ctx.addIssue({ code: 'custom', path: ['proxy_protocol'], message: 'proxy_protocol is for TCP listeners' });
    if (l.path !== undefined && l.tls !== 'none')
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'a unix socket listener takes no TLS' });
    if (new Set(l.address).size !== l.address.length)
      ctx.addIssue({ code: 'custom', path: ['address'], message: 'an address is listed twice' });
    if (l.protocol === 'dovecot-auth' && l.tls !== 'none')
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'dovecot-auth speaks no TLS (Postfix does not either)' });
  });

const mysqlQueries = z.strictObject({
  /** Is this domain hosted? Any row means yes. %s/%d: the domain. */
  domain: z.string().default("SELECT name FROM virtual_domains WHERE name = '%s'"),
  /**
   * The mailbox of an address. Columns by name: email (or user/username), password, and optionally
   * quota/quota_bytes (bytes, 0 = unlimited), enable/enabled/active (0 = disabled), maildir (relative path).
   * Unset: the tutorials' virtual_users table as it is, "SELECT email, password[, quota][, enable]
   * FROM virtual_users WHERE email = '%s'", with quota and enable only when the table has them
   * (read from information_schema at start and on SIGHUP): no quota column means no quota, no
   * enable column means every mailbox is enabled.
   */
  user: z.string().optional(),
  /** Destinations of an alias, one per row (a comma-separated list in a row is split). */
  alias: z.string().default("SELECT destination FROM virtual_aliases WHERE source = '%s'"),
  /** Optional: the target domain of an alias domain (PostfixAdmin's alias_domain). */
  alias_domain: z.string().optional(),
  /**
   * Optional: the transport of a recipient domain, in Postfix syntax ("smtp:[relay.example]:587",
   * "[10.0.0.5]", "relay.example"), the tutorials' transport table. Unset: no transport table.
   */
  transport: z.string().optional(),
  /**
   * Optional: PostfixAdmin's out-of-office replies, e.g. "SELECT subject, body, activefrom,
   * activeuntil, interval_time FROM vacation WHERE email = '%s' AND active = 1". A row makes a
   * vacation reply for the mailbox (columns subject and body; activefrom/activeuntil bound it in
   * time; interval_time is the seconds between replies to one sender, 0 once per sender).
   */
  vacation: z.string().optional(),
  /**
   * Optional: stores a rehashed password (passwords.rehash). %s/%u/%d: the address as in the
   * user query; %p: the new hash with its {SCHEME} prefix. Both are bound as parameters. Unset:
   * "UPDATE virtual_users SET password = '%p' WHERE email = '%s'" when the user query is unset,
   * else no rehash for MySQL. Examples: PostfixAdmin "UPDATE mailbox SET password = '%p',
   * modified = NOW() WHERE username = '%s'"; the 2008 tutorial "UPDATE users SET password = '%p'
   * WHERE email = '%s'". It needs UPDATE on that column; with a SELECT-only user the update fails,
   * is logged, and the login succeeds all the same.
   */
  update_password: z.string().optional(),
});

const mysqlSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: port.default(3306),
  /** A unix socket path instead of host/port. */
  socket: z.string().optional(),
  user: z.string().default('mailuser'),
  password: z.string().default(''),
  database: z.string().default('mailserver'),
  pool_size: int(1, 200).default(10),
  connect_timeout: duration().default(5000),
  /** How long a lookup may take before it fails temporarily. */
  query_timeout: duration().default(10_000),
  queries: mysqlQueries.default(() => mysqlQueries.parse({})),
});

const cacheSchema = z.strictObject({
  positive_ttl: duration().default(60_000),
  negative_ttl: duration().default(10_000),
  max_entries: int(0).default(10_000),
});

const directorySchema = z
  .strictObject({
    backend: z.enum(['file', 'mysql']).default('file'),
    file: z
      .strictObject({
        path: z.string().default('directory.yaml'),
        /** Copied to `path` on first start when `path` does not exist yet. */
        initial: z.string().optional(),
      })
      .default({ path: 'directory.yaml' }),
    mysql: mysqlSchema.optional(),
    cache: cacheSchema.default(() => cacheSchema.parse({})),
    /** Postfix's recipient_delimiter: bob+tag@ is delivered to bob@ when bob+tag@ has no entry of its own. Empty: off. */
    recipient_delimiter: z.string().max(8).default('+'),
  })
  .superRefine((d, ctx) => {
    if (d.backend === 'mysql' && !d.mysql)
      ctx.addIssue({ code: 'custom', path: ['mysql'], message: 'backend mysql needs a mysql section' });
  });

const passwordScheme = z.enum(['ARGON2ID', 'ARGON2I', 'SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT', 'SSHA512']);

const tlsPolicy = z.enum(['none', 'may', 'encrypt', 'verify']);

const submissionSchema = z.strictObject({
  /**
   * Extra envelope/From: addresses a login may send as, beyond its own address and the aliases
   * that resolve to it (Postfix's smtpd_sender_login_maps). Keys are logins; values are
   * addresses or "@domain" for any address of a domain.
   */
  extra_senders: z.record(z.string(), z.array(z.string())).default({}),
  /** Leave the client's address out of the Received header of authenticated submissions. */
  hide_client_ip: z.boolean().default(false),
  /** Recipients one login may send to per window; 0: no limit. */
  rate_limit: z
    .strictObject({ recipients: int(0).default(1000), window: duration().default(3_600_000) })
    .default({ recipients: 1000, window: 3_600_000 }),
});

const queueSchema = z.strictObject({
  /** The spool directory; default: .queue under the mail root. */
  dir: z.string().optional(),
  /** Simultaneous outbound transactions in all. */
  concurrency: int(1, 1000).default(20),
  /** Simultaneous transactions to one destination (domain or relay). */
  destination_concurrency: int(1, 100).default(5),
  /** Recipients in one transaction (Postfix's smtp_destination_recipient_limit). */
  recipients_per_transaction: int(1, 1000).default(50),
  /** First retry after a temporary failure; each further one waits twice as long, up to retry_max. */
  retry_min: duration().default(300_000),
  retry_max: duration().default(3_600_000),
  /** How long a message may wait before it is bounced (Postfix's maximal_queue_lifetime). */
  max_lifetime: duration().default(5 * 86_400_000),
  /** Tell the sender a message is still waiting after this long (0: never). */
  delay_warning: duration().default(4 * 3_600_000),
  connect_timeout: duration().default(30_000),
  /** Timeout of each command and of the whole DATA phase's replies. */
  command_timeout: duration().default(300_000),
  /** Keep a session open this long after a transaction for the next one to the same host (0: never; Postfix's smtp_connection_cache_time_limit). */
  connection_reuse_time: duration().default(5000),
  /** Transactions per session at most (Postfix's smtp_connection_reuse_count_limit). */
  connection_reuse_limit: int(1, 10_000).default(100),
  /** Nameservers for MX lookups ("192.0.2.53" or "127.0.0.1:5353"); empty: the system's. */
  resolver: z.array(z.string()).default([]),
  /** Send all remote mail through this host (Postfix syntax: "[smtp.provider.example]:587"). */
  relayhost: z.string().default(''),
  /** TLS towards remote servers unless a tls_policy entry says otherwise. */
  tls: tlsPolicy.default('may'),
  /** Per destination domain or relay host ("[host]:port"): none, may, encrypt, verify. */
  tls_policy: z.record(z.string(), tlsPolicy).default({}),
  /** AUTH towards relays, keyed by "[host]:port" or "host" (Postfix's smtp_sasl_password_maps). */
  relay_auth: z.record(z.string(), z.strictObject({ user: z.string().min(1), password: z.string() })).default({}),
  /** The port remote MX hosts are reached on (25; tests use another). */
  mx_port: port.default(25),
});

/** The `dns:` section of the configuration. */
const dnsSchema = z.strictObject({
  /** Nameservers, tried in order: "192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:53". Empty: /etc/resolv.conf's. */
  servers: z.array(z.string().refine(isServerAddress, { message: 'expected "ip", "ip:port" or "[ipv6]:port"' })).default([]),
  /** The longest wait for one answer, every retry included; then the lookup fails with ETIMEOUT. */
  timeout: duration().default(5000),
  /** Attempts per server within the timeout (c-ares sends the question again after the first goes unanswered). */
  tries: int(1, 5).default(2),
  cache: z
    .strictObject({
      /** Answers kept at most (least recently used ones go first); 0: no cache. */
      max_entries: int(0, 1_000_000).default(10_000),
      /**
       * How long an answer is kept. Node's resolver does not report TTLs for every type (TXT, MX,
       * PTR), so this one time is used for all; c-ares below keeps answers no longer than their TTL.
       */
      ttl: duration().default(300_000),
      /** How long NXDOMAIN and NODATA are kept (RFC 2308 negative caching). 0: not at all. */
      negative_ttl: duration().default(60_000),
    })
    .default({ max_entries: 10_000, ttl: 300_000, negative_ttl: 60_000 }),
});

const sieveSchema = z.strictObject({
  /** Run the users' Sieve scripts at delivery (SMTP, LMTP and the queue's local deliveries). */
  enabled: z.boolean().default(true),
  /**
   * Global scripts run before and after the user's active one, as Pigeonhole's sieve_before and
   * sieve_after (e.g. a script that files spam into Junk). Files; a missing one is skipped.
   */
  before: z.array(z.string()).default([]),
  after: z.array(z.string()).default([]),
  /**
   * Where the users' scripts live, as Pigeonhole's `sieve` setting: `file:DIR;active=PATH` with
   * `~` the user's home (the Maildir), `%u` / `%n` / `%d` the address, its local part, its domain.
   */
  location: z
    .string()
    .regex(/^(file:)?[^;]+(;.*)?$/, "expected file:DIR;active=PATH, as Pigeonhole's sieve setting")
    .default('file:~/sieve;active=~/.dovecot.sieve'),
  /** Where `include :global "NAME"` finds NAME.sieve (Pigeonhole's sieve_global). */
  global_dir: z.string().default('/etc/maild/sieve'),
  /** Pigeonhole's sieve_max_script_size, sieve_max_actions, sieve_max_redirects, include depth. */
  max_script_size: size().default(1024 * 1024),
  max_actions: int(1, 10_000).default(32),
  max_redirects: int(0, 100).default(4),
  max_include_depth: int(1, 100).default(10),
  /** CPU time one script may take on one message; over it, the message is kept. */
  max_cpu_time: duration().default(5000),
  /**
   * The envelope sender of a redirected message, as Pigeonhole's sieve_redirect_envelope_from:
   * `sender` keeps the original one (fails SPF at the destination for outside senders),
   * `recipient` / `orig_recipient` use the user's address (bounces come back to the user; SPF
   * passes for our domain), `<>` the null sender.
   */
  redirect_envelope_from: z.enum(['sender', 'recipient', 'orig_recipient', '<>']).default('sender'),
  /** Vacation periods: the default when a script gives none, and the bounds (Pigeonhole: 7d, 1d, none). */
  vacation: z
    .strictObject({
      default_period: duration().default(7 * 86_400_000),
      min_period: duration().default(86_400_000),
      max_period: duration().default(90 * 86_400_000),
    })
    .default({ default_period: 7 * 86_400_000, min_period: 86_400_000, max_period: 90 * 86_400_000 }),
});

const inboundSchema = z.strictObject({
  /** Where a message waits while it is checked (default: "inbound" in data_dir); never acknowledged from here. */
  dir: z.string().optional(),
  /**
   * SPF, DKIM, DMARC and ARC on mail received on smtp listeners from clients outside
   * trusted_networks, recorded in one Authentication-Results field.
   */
  authentication: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** The RFC 8601 authserv-id; the host name by default. Incoming fields that claim it are removed. */
      authserv_id: z.string().optional(),
      /** Act on the author domain's DMARC policy: p=reject refused with 550 5.7.1, p=quarantine to Junk. */
      dmarc_policy: z.boolean().default(true),
      /** Author domains (with their subdomains) whose DMARC failures are only recorded: mailing lists, forwarders. */
      dmarc_exempt_domains: z.array(z.string()).default([]),
      /** Client networks whose DMARC failures are only recorded (forwarders that do not add ARC). */
      dmarc_exempt_networks: z.array(cidr).default([]),
      /** Forwarders (ARC sealing domains) whose passing ARC chain overrides a DMARC failure. */
      trusted_arc_sealers: z.array(z.string()).default([]),
      /** DNS could not answer for a check: 451 (tempfail; the sender retries) or deliver with temperror recorded. */
      on_dns_error: z.enum(['tempfail', 'accept']).default('tempfail'),
      /** Add an ARC set when an alias forwards the message to another server (with the DKIM key of the alias's domain). */
      arc_seal: z.boolean().default(true),
    })
    .default(() => ({
      enabled: true,
      dmarc_policy: true,
      dmarc_exempt_domains: [],
      dmarc_exempt_networks: [],
      trusted_arc_sealers: [],
      on_dns_error: 'tempfail' as const,
      arc_seal: true,
    })),
  /**
   * DNS blocklists and allowlists by client address (DNSBL/DNSWL) and sender domain (RHSBL),
   * consulted at RCPT time for clients outside trusted_networks (Postfix's reject_rbl_client).
   */
  dnsbl: dnsblConfigSchema.default(() => dnsblConfigSchema.parse({})),
  /**
   * Content scanners asked directly (no milter): rspamd over HTTP, SpamAssassin's spamd, ClamAV's
   * clamd. Spam goes to Junk (or is refused), viruses are refused; a scanner that cannot answer
   * gives its default_action (451 by default).
   */
  scanners: scannersConfigSchema,
  /**
   * Milters in order, as Postfix's smtpd_milters (rspamd's proxy, OpenDKIM, OpenDMARC,
   * clamav-milter, spamass-milter): `{ address: "inet:127.0.0.1:11332" }` or "unix:/path", with
   * default_action (tempfail, accept or reject) and connect/command/content timeouts. They run
   * after DATA, each on its own connection, and see the message as the previous one left it.
   */
  milters: miltersSchema,
});

const dkimSchema = z.strictObject({
  /** Selector of keys created by `maild dkim generate`. */
  selector: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/i)
    .default('mail'),
  /** Where keys live: DIR/DOMAIN/SELECTOR.pem; default: dkim under data_dir. */
  keys_dir: z.string().optional(),
});

const specialUse = z.enum(['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash']);

/** One of imap.special_folders: `{ use, auto }`, or the older plain special use (auto: subscribe). */
const specialFolderSchema = z.union([
  specialUse.transform((use) => ({ use, auto: 'subscribe' as const })),
  // (`auto: false`, YAML 1.1's spelling of no, is taken as no.)
  z.strictObject({
    use: specialUse,
    auto: z.preprocess((v) => (v === false ? 'no' : v), z.enum(['create', 'subscribe', 'no'])).default('no'),
  }),
]);

const imapSchema = z.strictObject({
  /**
   * The hierarchy separator clients see. Dovecot's default for Maildir++ is "." (keep it when
   * Dovecot served these Maildirs with no `separator` set); "/" if its namespace had `separator = /`.
   * The folders on disk are the same either way.
   */
  hierarchy_separator: z.enum(['.', '/']).default('.'),
  /**
   * Folders with a special use (RFC 6154), by name, like Dovecot's `mailbox NAME { special_use =
   * ...; auto = ... }`: `use` is announced on the folder whenever it exists; `auto` says what a
   * login does when it is missing: `subscribe` creates and subscribes it, `create` only creates
   * it, `no` leaves it (only the attribute). When a login may create them: auto_special_folders.
   * A plain `Name: '\Sent'` is the older form and means auto: subscribe. A folder is not
   * created when another folder already has its special use (a migrated "Sent Messages" is the
   * \Sent folder, so no Sent appears next to it).
   */
  special_folders: z.record(z.string(), specialFolderSchema).default({
    Sent: { use: '\\Sent', auto: 'subscribe' },
    Drafts: { use: '\\Drafts', auto: 'subscribe' },
    Trash: { use: '\\Trash', auto: 'subscribe' },
    Junk: { use: '\\Junk', auto: 'subscribe' },
    Archive: { use: '\\Archive', auto: 'subscribe' },
    // Names other clients and servers used (Apple Mail, Outlook, Courier), announced where they exist.
    'Sent Messages': { use: '\\Sent', auto: 'no' },
    'Sent Items': { use: '\\Sent', auto: 'no' },
    'Deleted Messages': { use: '\\Trash', auto: 'no' },
    'Deleted Items': { use: '\\Trash', auto: 'no' },
    Spam: { use: '\\Junk', auto: 'no' },
  }),
  /**
   * When a login creates the special folders whose auto is create or subscribe. `new_maildir`:
   * only in a Maildir that has no folder besides INBOX yet (a new user gets the standard set; a
   * user whose Maildir comes from Dovecot or Courier keeps exactly the folders they had, which
   * still carry their special use). `always`: whenever one is missing, at every login, as
   * Dovecot's auto = create/subscribe does (a folder the user deleted comes back).
   */
  auto_special_folders: z.enum(['new_maildir', 'always']).default('new_maildir'),
  line_length: int(8192, 1_048_576).default(65_536),
  /** Largest literal outside APPEND (APPEND is limited by limits.message_size). */
  literal_size: size().default(65_536),
  bad_commands_before_login: int(1).default(3),
  bad_commands: int(1).default(20),
  idle_timeout_before_login: duration().default(60_000),
  /**
   * Time from connecting to a successful login, however busy the client keeps itself meanwhile
   * (Dovecot's login timeout, 3 minutes); then BYE. 0: none.
   */
  login_timeout: duration().default(180_000),
  /** RFC 3501 section 5.4: at least 30 minutes once logged in. */
  idle_timeout: duration().default(1_800_000),
  /** Sessions per user and client address (Dovecot's mail_max_userip_connections). */
  connections_per_user_ip: int(1).default(10),
});

const pop3Schema = z.strictObject({
  /**
   * Longest command line. RFC 2449 section 4 limits commands to 255 octets; a little more is
   * allowed for AUTH PLAIN initial responses with long addresses and passwords.
   */
  line_length: int(255, 65_536).default(1024),
  /** Failed commands in a row before the connection is closed (Dovecot's limit: 20). */
  bad_commands: int(1).default(20),
  /** RFC 1939 section 3: an inactivity autologout timer of at least 10 minutes. */
  idle_timeout: duration().default(600_000),
  /**
   * A connection that has not logged in this long after connecting is closed, however busy it
   * keeps itself (Dovecot's login timeout, 3 minutes). 0: none.
   */
  login_timeout: duration().default(180_000),
  /**
   * RFC 2449 LOGIN-DELAY: the least time between two logins of one user (announced in CAPA;
   * a login that comes sooner gets -ERR [LOGIN-DELAY]). 0: no limit.
   */
  login_delay: duration().default(0),
  /**
   * One POP3 session per mailbox at a time (Dovecot's pop3_lock_session): a second login gets
   * -ERR [IN-USE]; the lock is Dovecot's dovecot-pop3-session.lock, so maild and Dovecot exclude
   * each other. Off by default as in Dovecot: concurrent sessions each see their snapshot, and
   * a message one of them deleted is skipped by the other's DELE and QUIT.
   */
  lock_session: z.boolean().default(false),
});

const dovecotAuthSchema = z.strictObject({
  /** Longest line a client may send (Dovecot's own limit is of this order). */
  line_length: int(1024, 1_048_576).default(16_384),
  /** Requests in progress per connection (Postfix sends one at a time, and leaves a cancelled one pending). */
  pending_requests: int(1, 10_000).default(64),
  /** A request waiting for its CONT longer than this is dropped (a cancelled AUTH in Postfix). */
  request_timeout: duration().default(180_000),
  /**
   * A connection without any request this long is closed. Keep it long: Postfix's smtpd keeps
   * its connection between sessions and, over TCP, sees a closed one only at its next AUTH.
   */
  idle_timeout: duration().default(3_600_000),
  /** Connections per dovecot-auth listener (Postfix opens one per smtpd process). */
  connections: int(1).default(512),
});

/** A user or group as /etc/passwd and getent know it: a name, or a number (YAML reads 5000 as one). */
function accountName(what: string) {
  return z.preprocess(
    (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? String(v) : v),
    z.string().regex(/^(?:[a-z_][a-z0-9_.-]*\$?|\d+)$/i, `expected ${what}`),
  );
}

/** The configuration file's keys; configSchema adds the checks that span several of them. */
const configObject = z.strictObject({
  /** The name in the SMTP greeting and Received headers (Postfix's myhostname). */
  hostname: z.string().min(1).optional(),
  /**
   * The account maild serves as. Started as root, it binds the listeners and reads the TLS keys,
   * then drops to this user (and `group`, else the user's primary group) before it serves anyone,
   * as Postfix's mail_owner and Dovecot's default_internal_user. Started as root without it,
   * maild refuses to run; `user: root` serves as root on purpose (not recommended).
   */
  user: accountName('a user name such as vmail, or a uid').optional(),
  group: accountName('a group name such as vmail, or a gid').optional(),
  /** Where generated state lives (self-signed certificate). */
  data_dir: z.string().default('data'),
  mail: z
    .strictObject({
      /** The mail root, as in Dovecot's mail_location = maildir:/var/mail/vhosts/%d/%n. */
      root: z.string().default('mail'),
      /** Path of a user's Maildir below the root: %d domain, %n local part, %u full address. */
      layout: z
        .string()
        .default('%d/%n')
        .refine((v) => /%[dnu]/.test(v) && !v.startsWith('/') && !v.split('/').includes('..'), {
          message: 'expected a relative path using %d, %n or %u, such as "%d/%n"',
        }),
      /**
       * Read message files up to 256 KiB and stat folder directories with blocking calls on the
       * main thread, as nginx reads files by default: a message in the page cache is then sent
       * without a round trip through libuv's thread pool. Set false for a mail root on NFS or on
       * a disk slow enough that one read would hold up every session.
       */
      blocking_reads: z.boolean().default(true),
    })
    .default({ root: 'mail', layout: '%d/%n', blocking_reads: true }),
  listeners: z.array(listenerSchema).min(1, 'at least one listener is needed'),
  tls: z
    .strictObject({
      /** PEM certificate chain; when cert and key are absent a self-signed pair is generated in data_dir. */
      cert: z.string().optional(),
      key: z.string().optional(),
    })
    .default({})
    .refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'give both cert and key, or neither' }),
  directory: directorySchema.default(() => directorySchema.parse({})),
  passwords: z
    .strictObject({
      /** Scheme for new passwords (CLI user add/passwd). */
      scheme: passwordScheme.default('ARGON2ID'),
      /** Scheme assumed for stored hashes without a {SCHEME} prefix that do not identify themselves (Dovecot's default_pass_scheme). */
      default_scheme: z.string().default('CRYPT'),
      /**
       * After a successful login, replace a stored hash that is weaker than new ones would be: in
       * another scheme than `scheme`, or in `scheme` with lower costs (argon2 memory, time or
       * parallelism; SHA-crypt rounds; bcrypt cost) or an older argon2 version. The YAML file is
       * rewritten atomically (comments kept); MySQL uses directory.mysql.queries.update_password.
       * A failed update is logged and the login succeeds all the same.
       */
      rehash: z.boolean().default(false),
    })
    .default({ scheme: 'ARGON2ID', default_scheme: 'CRYPT', rehash: false }),
  limits: z
    .strictObject({
      message_size: size().default(26_214_400),
      recipients: int(1).default(100),
      connections: int(1).default(1000),
      connections_per_ip: int(1).default(20),
      /** Longest command line a client may send. */
      line_length: int(512, 1_048_576).default(4096),
      /** Error replies before the session is closed with 421 (Postfix's smtpd_hard_error_limit). */
      errors: int(1).default(20),
      /**
       * "452 4.5.3 Too many recipients" replies in one transaction that do not count as errors
       * (Postfix's smtpd_recipient_overshoot_limit): a sender over `recipients` gets DATA through
       * to the accepted ones and sends the rest again. Beyond this many, each one counts.
       */
      recipient_overshoot: int(0).default(1000),
      /** Longest wait for the client's next command or the next bytes of a message (smtpd_timeout). */
      idle_timeout: duration().default(300_000),
      /**
       * DATA may last this long plus one second for every `data_min_rate` bytes received (0: no
       * deadline). With the defaults a transfer at 500 bytes/s or faster always finishes (a full
       * 25 MB message at exactly that rate takes 14.5 hours), while a client trickling a byte
       * every few seconds is cut off after about 5 minutes with 421 4.4.2 and nothing is kept.
       */
      data_timeout: duration().default(300_000),
      /** The least DATA rate in bytes per second that keeps extending the deadline (Postfix's smtpd_min_data_rate: 500). 0: a flat data_timeout. */
      data_min_rate: int(0).default(500),
      /**
       * How long an SMTP, submission or LMTP session may last (0: no limit). When it has passed,
       * the session ends with 421 4.4.2 while it waits for a command, or right after the reply
       * to the command or DATA in progress (which its own deadline bounds). A client that sends
       * its mail and quits needs seconds; an hour leaves room for long batches and slow links,
       * yet no one address can keep connection slots busy indefinitely by idling just under
       * idle_timeout.
       */
      session_timeout: duration().default(3_600_000),
    })
    .default(() => ({
      message_size: 26_214_400,
      recipients: 100,
      connections: 1000,
      connections_per_ip: 20,
      line_length: 4096,
      errors: 20,
      recipient_overshoot: 1000,
      idle_timeout: 300_000,
      data_timeout: 300_000,
      data_min_rate: 500,
      session_timeout: 3_600_000,
    })),
  auth: z
    .strictObject({
      /**
       * Passwords over cleartext connections: never (TLS first: STARTTLS or an implicit-TLS
       * port), or from trusted_networks only.
       */
      cleartext: z.enum(['never', 'trusted_networks']).default('never'),
      /** Wait after a failed login from an address; doubles with each further failure. */
      failure_delay: duration().default(1000),
      failure_delay_max: duration().default(30_000),
    })
    .default({ cleartext: 'never', failure_delay: 1000, failure_delay_max: 30_000 }),
  imap: imapSchema.default(() => imapSchema.parse({})),
  pop3: pop3Schema.default(() => pop3Schema.parse({})),
  /** ManageSieve limits and the Sieve script quotas (src/managesieve/config.ts). */
  managesieve: manageSieveSchema.default(() => manageSieveSchema.parse({})),
  /** The dovecot-auth listeners' limits. */
  dovecot_auth: dovecotAuthSchema.default(() => dovecotAuthSchema.parse({})),
  submission: submissionSchema.default(() => submissionSchema.parse({})),
  queue: queueSchema.default(() => queueSchema.parse({})),
  dkim: dkimSchema.default(() => dkimSchema.parse({})),
  /** The resolver of every lookup (MX, SPF, DKIM, DMARC, ARC, blocklists); queue.resolver when servers is empty. */
  dns: dnsSchema.default(() => dnsSchema.parse({})),
  /** Checks of mail from the internet: sender authentication, and (with their sections) blocklists, milters, scanners. */
  inbound: inboundSchema.default(() => inboundSchema.parse({})),
  /** Sieve filtering at delivery (the scripts are where Pigeonhole keeps them; README: Sieve). */
  sieve: sieveSchema.default(() => sieveSchema.parse({})),
  /** Clients allowed to relay without authentication (Postfix's mynetworks). Empty by default. */
  trusted_networks: z.array(cidr).default([]),
  /**
   * The load balancers allowed to send a PROXY protocol header (addresses or CIDR ranges), for
   * listeners with proxy_protocol: true. Anyone else connecting to such a listener is refused.
   */
  proxy_networks: z.array(cidr).default([]),
  log: z
    .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
    .default({ level: 'info' }),
  /** How long sessions may take to finish after SIGTERM before they are closed with 421. */
  shutdown_timeout: duration().default(30_000),
});

export const configSchema = configObject.superRefine((cfg, ctx) => {
  const proxied = cfg.listeners.findIndex((l) => l.proxy_protocol);
  if (proxied !== -1 && cfg.proxy_networks.length === 0)
    ctx.addIssue({
      code: 'custom',
      path: ['proxy_networks'],
      message: `listeners[${proxied}] has proxy_protocol: true; list the load balancers allowed to send the header here`,
    });
});

export type Config = z.output<typeof configSchema>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type DirectoryConfig = Config['directory'];
export type MysqlConfig = z.output<typeof mysqlSchema>;
export type PasswordScheme = z.output<typeof passwordScheme>;
export type QueueConfig = z.output<typeof queueSchema>;
export type SubmissionConfig = z.output<typeof submissionSchema>;
export { dnsSchema };
export type DnsConfig = z.output<typeof dnsSchema>;
export type InboundConfig = z.output<typeof inboundSchema>;
export type SieveConfig = z.output<typeof sieveSchema>;
