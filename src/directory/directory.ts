import type { Logger } from '../log.js';
import { MailError } from '../errors.js';
import { addressKey, isAddressLiteral, isUnsafeDomain, isUnsafeLocalPart, splitAddress } from './address.js';
import { LookupCache, type CacheOptions } from './cache.js';
import type { PasswordService } from './passwords/index.js';
import type { DirectorySource, DomainRecord, Resolution, UserRecord, VacationRecord } from './types.js';

/** Postfix's virtual_alias_recursion_limit and virtual_alias_expansion_limit. */
const MAX_ALIAS_DEPTH = 100;
const MAX_ALIAS_EXPANSION = 1000;

/** Longest transport value accepted (the tutorials' transport.transport is VARCHAR(128)). */
const MAX_TRANSPORT_LENGTH = 255;

/**
 * A transport value as transport(5) writes it: `transport:nexthop`, `[host]:port`, `host`.
 * Nothing that could split an SMTP command or a log line: no white space, no control characters.
 */
export function isUsableTransport(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return value.length > 0 && value.length <= MAX_TRANSPORT_LENGTH && !/[\s\u0000-\u001f\u007f]/.test(value);
}

export interface DirectoryOptions {
  /** Postfix's recipient_delimiter; empty disables extensions. */
  recipientDelimiter: string;
  cache: CacheOptions;
  passwords: PasswordService;
  logger: Logger;
  /** passwords.rehash, read at each login (SIGHUP may change it). Default: off. */
  rehash?: () => boolean;
}

export type AuthResult = { ok: true; user: UserRecord } | { ok: false; reason: 'unknown-user' | 'bad-password' | 'disabled' | 'bad-login' };

/** State of one resolve() call. */
interface Expansion {
  mailboxes: Map<string, UserRecord>;
  remote: Set<string>;
  /** Addresses already expanded (diamonds are delivered once). */
  done: Set<string>;
  /** Count of addresses looked at, against MAX_ALIAS_EXPANSION. */
  steps: number;
  loops: string[];
  disabled: string[];
  dangling: string[];
}

/**
 * The directory as the protocols see it: hosted domains, recipient resolution with Postfix's
 * virtual alias semantics, and authentication. Backends only answer exact-key lookups.
 */
export class Directory {
  #source: DirectorySource;
  readonly #cache: LookupCache;
  readonly #opts: DirectoryOptions;
  /** Rehashes in progress by address: parallel logins of one user store one new hash. */
  readonly #rehashing = new Map<string, Promise<void>>();

  constructor(source: DirectorySource, opts: DirectoryOptions) {
    this.#source = source;
    this.#opts = opts;
    this.#cache = new LookupCache(opts.cache);
    source.onChange?.(() => this.#cache.clear());
  }

  get source(): DirectorySource {
    return this.#source;
  }

  /** Swaps the backend (SIGHUP with a changed directory section) and drops the cache. */
  async replaceSource(source: DirectorySource): Promise<void> {
    const old = this.#source;
    this.#source = source;
    source.onChange?.(() => this.#cache.clear());
    this.#cache.clear();
    if (old !== source) await old.close();
  }

  clearCache(): void {
    this.#cache.clear();
  }

  async close(): Promise<void> {
    await this.rehashed();
    await this.#source.close();
  }

  #domain(domain: string): Promise<DomainRecord | null> {
    return this.#cache.get(`d:${domain}`, () => this.#source.lookupDomain(domain));
  }

  #user(email: string): Promise<UserRecord | null> {
    return this.#cache.get(`u:${email}`, () => this.#source.lookupUser(email));
  }

  #alias(address: string): Promise<string[] | null> {
    return this.#cache.get(`a:${address}`, () => this.#source.lookupAlias(address));
  }

  /**
   * The mailbox's out-of-office reply from the directory (PostfixAdmin's vacation table), asked
   * on every delivery when the table is configured: cached like the other lookups.
   */
  vacation(email: string): Promise<VacationRecord | null> {
    const source = this.source;
    if (!source.lookupVacation) return Promise.resolve(null);
    const key = email.toLowerCase();
    return this.#cache.get(`v:${key}`, () => source.lookupVacation!(key));
  }

  #transport(key: string): Promise<string | null> {
    const source = this.#source;
    if (!source.lookupTransport) return Promise.resolve(null);
    return this.#cache.get(`t:${key}`, () => source.lookupTransport!(key));
  }

  /**
   * Where mail for a recipient domain goes, from the transport table (Postfix's transport_maps), or
   * null when no entry applies. Search order of transport(5) with parent_domain_matches_subdomains
   * not covering transport_maps: the domain itself, then ".parent" for each parent domain, nearest
   * first (a.b.example.com: a.b.example.com, .b.example.com, .example.com, .com). A plain
   * "example.com" entry does not match its subdomains. Throws TEMP_FAIL when the backend cannot answer.
   */
  async transportFor(domain: string): Promise<string | null> {
    const d = domain.toLowerCase().replace(/\.$/, '');
    if (isUnsafeDomain(d) || d.includes('@') || /\s/.test(d)) return null;
    const exact = await this.#transport(d);
    // An address literal ([192.0.2.1]) has no parent domains.
    if (exact !== null || isAddressLiteral(d)) return exact;
    for (let dot = d.indexOf('.'); dot >= 0; dot = d.indexOf('.', dot + 1)) {
      const found = await this.#transport(d.slice(dot));
      if (found !== null) return found;
    }
    return null;
  }

  /** Is mail for this domain ours (a hosted domain or an alias domain)? */
  async isLocalDomain(domain: string): Promise<boolean> {
    const d = domain.toLowerCase().replace(/\.$/, '');
    if (isUnsafeDomain(d)) return false;
    return (await this.#domain(d)) !== null;
  }

  /** The mailbox with exactly this address, if any (no alias expansion). */
  async findUser(email: string): Promise<UserRecord | null> {
    const split = splitAddress(email);
    if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain)) return null;
    return this.#user(addressKey(email));
  }

  /**
   * Resolves an address of a hosted domain to mailboxes and remote destinations. Lookup order
   * per address, as Postfix applies virtual_alias_maps before virtual_mailbox_maps:
   *   1. alias user+ext@domain   2. mailbox user+ext@domain
   *   3. alias user@domain       4. mailbox user@domain     (recipient_delimiter)
   *   5. alias domain: user+ext@target                      6. catch-all alias @domain
   * A catch-all therefore never shadows an existing mailbox (what the tutorials' email2email map
   * achieves in Postfix). Destinations are expanded recursively; an address that an alias maps to
   * itself is delivered to its own mailbox.
   *
   * Throws MailError RECIPIENT_NOT_FOUND, MAILBOX_DISABLED, ALIAS_LOOP, BAD_ADDRESS or TEMP_FAIL.
   */
  async resolve(address: string): Promise<Resolution> {
    const split = splitAddress(address);
    if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain)) {
      throw new MailError('BAD_ADDRESS', `unusable address ${JSON.stringify(address)}`);
    }
    const key = addressKey(address);
    const exp: Expansion = { mailboxes: new Map(), remote: new Set(), done: new Set(), steps: 0, loops: [], disabled: [], dangling: [] };
    const found = await this.#expand(key, [], exp);
    if (!found && exp.mailboxes.size === 0 && exp.remote.size === 0) {
      throw new MailError('RECIPIENT_NOT_FOUND', `no mailbox or alias for ${key}`);
    }
    if (exp.mailboxes.size === 0 && exp.remote.size === 0) {
      if (exp.disabled.length > 0) throw new MailError('MAILBOX_DISABLED', `mailbox disabled: ${exp.disabled.join(', ')}`);
      if (exp.loops.length > 0) throw new MailError('ALIAS_LOOP', `alias loop via ${exp.loops.join(', ')}`);
      throw new MailError('RECIPIENT_NOT_FOUND', `alias ${key} leads to no mailbox (${exp.dangling.join(', ')})`);
    }
    if (exp.loops.length || exp.disabled.length || exp.dangling.length) {
      this.#opts.logger.warn(
        { address: key, loops: exp.loops, disabled: exp.disabled, unresolved: exp.dangling },
        'alias expansion skipped some destinations',
      );
    }
    return { address: key, mailboxes: [...exp.mailboxes.values()], remote: [...exp.remote] };
  }

  /** Expands one address into `exp`. Returns false when nothing at all matched it. */
  async #expand(address: string, ancestors: string[], exp: Expansion): Promise<boolean> {
    if (ancestors.includes(address)) {
      exp.loops.push(address);
      return true;
    }
    if (exp.done.has(address)) return true;
    if (ancestors.length > MAX_ALIAS_DEPTH) throw new MailError('ALIAS_LOOP', `alias nesting deeper than ${MAX_ALIAS_DEPTH} at ${address}`);
    if (++exp.steps > MAX_ALIAS_EXPANSION)
      throw new MailError('ALIAS_LOOP', `alias expansion larger than ${MAX_ALIAS_EXPANSION} addresses`);
    exp.done.add(address);

    const split = splitAddress(address);
    if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain)) {
      exp.dangling.push(address);
      return true;
    }
    const domain = await this.#domain(split.domain);
    if (!domain) {
      exp.remote.add(address);
      return true;
    }
    const { local } = split;
    const lineage = [...ancestors, address];

    const direct = await this.#alias(address);
    if (direct) return this.#expandDestinations(address, local, direct, lineage, exp);
    if (await this.#takeMailbox(address, exp)) return true;

    const delimiter = this.#opts.recipientDelimiter;
    const cut = delimiter ? local.indexOf(delimiter) : -1;
    if (cut > 0) {
      const base = `${local.slice(0, cut)}@${split.domain}`;
      const baseAlias = await this.#alias(base);
      if (baseAlias) return this.#expandDestinations(base, local, baseAlias, lineage, exp);
      if (await this.#takeMailbox(base, exp)) return true;
    }

    if (domain.aliasFor) return this.#expand(addressKey(`${local}@${domain.aliasFor}`), lineage, exp);

    const catchAll = await this.#alias(`@${split.domain}`);
    if (catchAll) return this.#expandDestinations(address, local, catchAll, lineage, exp);
    return false;
  }

  /** Adds the mailbox with this exact address, if there is one. */
  async #takeMailbox(address: string, exp: Expansion): Promise<boolean> {
    const user = await this.#user(address);
    if (!user) return false;
    if (!user.enabled) exp.disabled.push(address);
    else if (!exp.mailboxes.has(user.email)) exp.mailboxes.set(user.email, user);
    return true;
  }

  async #expandDestinations(owner: string, local: string, destinations: string[], lineage: string[], exp: Expansion): Promise<boolean> {
    for (const raw of destinations) {
      for (const part of raw.split(',')) {
        let dest = part.trim();
        if (!dest) continue;
        // "@otherdomain" keeps the local part (Postfix virtual(5), alias domains).
        if (dest.startsWith('@')) dest = local + dest;
        dest = addressKey(dest);
        if (dest === owner) {
          // An alias to itself: deliver to the address's own mailbox (PostfixAdmin stores user -> user).
          if (!(await this.#takeMailbox(dest, exp))) exp.dangling.push(dest);
          continue;
        }
        if (!(await this.#expand(dest, lineage, exp))) exp.dangling.push(dest);
      }
    }
    return true;
  }

  /**
   * Checks a login. Unknown users and disabled mailboxes cost the same time as a wrong password.
   * Throws TEMP_FAIL when the directory cannot answer.
   */
  async authenticate(login: string, password: string): Promise<AuthResult> {
    const split = splitAddress(login);
    const passwords = this.#opts.passwords;
    if (!split || isUnsafeLocalPart(split.local) || isUnsafeDomain(split.domain)) {
      await passwords.verifyDummy(password);
      return { ok: false, reason: 'bad-login' };
    }
    const user = await this.#user(addressKey(login));
    if (!user) {
      await passwords.verifyDummy(password);
      return { ok: false, reason: 'unknown-user' };
    }
    const result = await passwords.verify(user.password, password);
    if (!result.ok) {
      if (result.reason)
        this.#opts.logger.warn({ user: user.email, scheme: result.scheme, reason: result.reason }, 'stored password unusable');
      return { ok: false, reason: 'bad-password' };
    }
    if (!user.enabled) return { ok: false, reason: 'disabled' };
    // In the background: the login's reply does not wait for a new hash and a database write.
    if (this.#opts.rehash?.() && passwords.needsRehash(user.password)) void this.#rehash(user, password, result.scheme);
    return { ok: true, user };
  }

  /** Resolves once the password rehashes in progress have ended (shutdown, tests). */
  async rehashed(): Promise<void> {
    while (this.#rehashing.size > 0) await Promise.all([...this.#rehashing.values()]);
  }

  /**
   * Stores the password in the configured scheme after a login with a weaker one. Hashing runs in
   * the password worker pool. Never fails the login, never rejects: a failed update (a SELECT-only
   * database user, a read-only file) is logged and the stored hash stays as it is.
   */
  #rehash(user: UserRecord, password: string, from: string | null): Promise<void> {
    const running = this.#rehashing.get(user.email);
    if (running) return running;
    const source = this.#source;
    const log = this.#opts.logger;
    const to = this.#opts.passwords.newScheme;
    const work = (async () => {
      if (!source.updatePassword) return;
      try {
        const updated = await source.updatePassword(user.email, user.password, () => this.#opts.passwords.hash(password));
        if (updated) {
          this.#cache.clear();
          log.info({ user: user.email, from, to }, 'password rehashed');
        } else {
          log.info({ user: user.email }, 'password rehash skipped: the stored hash changed meanwhile');
        }
      } catch (err) {
        log.warn(
          { user: user.email, from, to, err: (err as Error).message },
          'password rehash failed, the stored hash stays (the login is not affected)',
        );
      }
    })().finally(() => this.#rehashing.delete(user.email));
    this.#rehashing.set(user.email, work);
    return work;
  }
}
