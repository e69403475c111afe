/**
 * The directory: which domains are hosted, which mailboxes and aliases exist, and the stored
 * password of each mailbox. Two backends (the YAML file, MySQL) implement the same lookup tables;
 * alias resolution, caching and password checks sit above them in directory.ts, so both backends
 * resolve addresses identically.
 */

export interface UserRecord {
  /** Canonical address, lower case: local@domain. */
  email: string;
  /** Stored password hash, with or without a Dovecot {SCHEME} prefix. */
  password: string;
  /** Quota in bytes; 0 means unlimited. */
  quotaBytes: number;
  /** A disabled mailbox receives no mail and cannot log in (virtual_users.enable = 0). */
  enabled: boolean;
  /** Maildir path relative to the mail root, overriding the layout (PostfixAdmin's mailbox.maildir). */
  maildir?: string;
}

export interface DomainRecord {
  /** Domain name, lower case. */
  name: string;
  /** Set for an alias domain: every user@name is user@aliasFor. */
  aliasFor?: string;
}

export interface AliasRecord {
  /** user@domain, or @domain for a catch-all. */
  source: string;
  /** An address, or @domain to keep the local part (alias domain style). */
  destination: string;
}

/**
 * Lookup tables, queried with exact lower-case keys, like Postfix tables. A backend throws a
 * MailError('TEMP_FAIL') when it cannot answer (database down); it never answers "not found"
 * for a lookup it could not make.
 */
export interface DirectorySource {
  readonly kind: 'file' | 'mysql';
  lookupDomain(domain: string): Promise<DomainRecord | null>;
  lookupUser(email: string): Promise<UserRecord | null>;
  /** Destinations of an alias, or null when there is none. `address` may be `@domain` (catch-all). */
  lookupAlias(address: string): Promise<string[] | null>;
  /**
   * The transport of a recipient domain in Postfix transport(5) syntax ("smtp:[relay.example]:587",
   * "[10.0.0.5]", "relay.example"), or null. `domain` is an exact lower-case key: "example.com", or
   * ".example.com" for the entry that covers its subdomains. Optional: without it there is no
   * transport table. Directory.transportFor does the parent-domain search and the caching.
   */
  lookupTransport?(domain: string): Promise<string | null>;
  /** PostfixAdmin's vacation row of a mailbox, when the source has that table (MySQL queries.vacation). */
  lookupVacation?(email: string): Promise<VacationRecord | null>;
  /**
   * Replaces the stored hash of a mailbox (passwords.rehash), but only while it is still
   * `expected`: false when it changed meanwhile (or the mailbox is gone), nothing written.
   * `hash` computes the new value; a backend that knows it cannot write does not call it.
   * Optional: a backend without it does not rehash.
   */
  updatePassword?(email: string, expected: string, hash: () => Promise<string>): Promise<boolean>;
  /** Called by the cache owner when the backend's data changed underneath (file reload). */
  onChange?(listener: () => void): void;
  close(): Promise<void>;
}

export interface NewUser {
  email: string;
  /** Already hashed. */
  password: string;
  quotaBytes: number;
  enabled: boolean;
}

/** The administrative side used by the CLI. Writes are atomic per call. */
export interface DirectoryAdmin {
  listDomains(): Promise<DomainRecord[]>;
  addDomain(name: string, aliasFor?: string): Promise<void>;
  /** Refuses (ALREADY_EXISTS) while users or aliases of the domain remain, unless force. */
  deleteDomain(name: string, force?: boolean): Promise<void>;
  listUsers(domain?: string): Promise<UserRecord[]>;
  addUser(user: NewUser): Promise<void>;
  updateUser(email: string, changes: Partial<Pick<UserRecord, 'password' | 'enabled' | 'quotaBytes'>>): Promise<void>;
  deleteUser(email: string): Promise<void>;
  listAliases(domain?: string): Promise<AliasRecord[]>;
  addAlias(source: string, destination: string): Promise<void>;
  /** Deletes one destination, or every destination of the source when none is given. */
  deleteAlias(source: string, destination?: string): Promise<void>;
}

/** What an address resolves to after alias expansion. */
export interface Resolution {
  /** The address that was asked about, normalised (lower-case domain). */
  address: string;
  /** Distinct local mailboxes, in expansion order. */
  mailboxes: UserRecord[];
  /** Destinations outside the hosted domains (forwarding), in expansion order. */
  remote: string[];
}

/** An out-of-office reply kept in the directory (PostfixAdmin's vacation table). */
export interface VacationRecord {
  subject: string;
  body: string;
  activeFrom?: Date;
  activeUntil?: Date;
  /** Seconds between two replies to one sender; 0: one reply per sender. */
  intervalSeconds: number;
}
