/**
 * Password verification and hashing for every scheme Dovecot users have in their databases
 * (see schemes.ts for the format rules and algorithms.ts for which library computes what).
 * All hashing runs in a worker_threads pool: the main thread only parses.
 *
 *   const passwords = new PasswordService({ defaultScheme: cfg.passwords.default_scheme, newScheme: cfg.passwords.scheme });
 *   const user = await directory.lookupUser(email);
 *   const ok = user ? (await passwords.verify(user.password, pw)).ok : await passwords.verifyDummy(pw);
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { PasswordScheme } from '../../config/schema.js';
import { MailError } from '../../errors.js';
import { WorkerPool } from './pool.js';
import type { VerifyReply } from './protocol.js';
import {
  MAX_PASSWORD_BYTES,
  NEW_PASSWORD_SCHEMES,
  costProfile,
  isWeakerProfile,
  lookupScheme,
  newPasswordProfile,
  parseStored,
  profileKey,
  type CostProfile,
} from './schemes.js';

export {
  COST_LIMITS,
  MAX_PASSWORD_BYTES,
  NEW_PASSWORD_SCHEMES,
  SUPPORTED_VERIFY_SCHEMES,
  identifyScheme,
  type CostProfile,
  type StoredScheme,
} from './schemes.js';

export interface PasswordServiceOptions {
  /** Worker threads; default os.availableParallelism() capped at 4. */
  threads?: number;
  /** Scheme of stored values without a {SCHEME} prefix that do not identify themselves (Dovecot's default_pass_scheme). Default 'CRYPT'. */
  defaultScheme?: string;
  /** Scheme for new passwords (config passwords.scheme). Default 'ARGON2ID'. */
  newScheme?: PasswordScheme;
  /** Calls that may wait for a free worker; beyond, calls fail with TEMP_FAIL at once. Default 256. */
  maxQueue?: number;
  /**
   * A hash computation running longer fails with TEMP_FAIL (the worker still finishes it, then
   * takes new work: see pool.ts). Default 30 s.
   */
  taskTimeoutMs?: number;
}

export interface VerifyResult {
  ok: boolean;
  /** The normalised scheme of the stored value, or null when it is unknown. */
  scheme: string | null;
  /**
   * Set only when the stored value is unusable (unknown scheme, malformed hash): what is wrong,
   * for a log line. Absent for a plain wrong password. Never contains the password or the hash.
   */
  reason?: string;
}

/** How many dummy hashes (one per cost profile seen) are kept. */
const MAX_DUMMIES = 16;

/** A problem with a password as typed, before any hashing, or null. */
function plainProblem(plain: string): string | null {
  if (typeof plain !== 'string') return 'no password given';
  if (plain.includes('\0')) return 'password contains a NUL character';
  if (Buffer.byteLength(plain, 'utf8') > MAX_PASSWORD_BYTES) return `password longer than ${MAX_PASSWORD_BYTES} bytes`;
  return null;
}

export class PasswordService {
  readonly threads: number;
  readonly defaultScheme: string;
  readonly newScheme: PasswordScheme;
  private readonly pool: WorkerPool;
  /** Cost profile of the most recent real verification: what verifyDummy imitates. */
  private lastProfile: CostProfile | null = null;
  private readonly dummies = new Map<string, Promise<string>>();

  constructor(opts: PasswordServiceOptions = {}) {
    this.threads = opts.threads ?? Math.min(availableParallelism(), 4);
    if (!Number.isInteger(this.threads) || this.threads < 1) {
      throw new MailError('CONFIG_INVALID', `password threads must be a positive integer, not ${opts.threads}`);
    }
    const defaultScheme = opts.defaultScheme ?? 'CRYPT';
    if (lookupScheme(defaultScheme) === null) {
      throw new MailError('CONFIG_INVALID', `unknown default password scheme ${JSON.stringify(defaultScheme)}`);
    }
    this.defaultScheme = defaultScheme.toUpperCase();
    this.newScheme = opts.newScheme ?? 'ARGON2ID';
    if (!NEW_PASSWORD_SCHEMES.includes(this.newScheme)) {
      throw new MailError('CONFIG_INVALID', `cannot hash new passwords in ${JSON.stringify(this.newScheme)}`);
    }
    this.pool = new WorkerPool({
      size: this.threads,
      maxQueue: opts.maxQueue ?? 256,
      taskTimeoutMs: opts.taskTimeoutMs ?? 30_000,
    });
  }

  /**
   * Checks a password against a stored value. Bad stored data (unknown scheme, malformed hash)
   * gives ok:false with a reason and still costs a dummy verification, so the reply time does
   * not tell it apart. Rejects (MailError TEMP_FAIL) only when the pool cannot do the work:
   * queue full, worker crashed, computation timed out, service closed.
   */
  async verify(stored: string, plain: string): Promise<VerifyResult> {
    const parsed = parseStored(stored, this.defaultScheme);
    // An unusable password as typed (NUL, megabytes) is simply wrong; nothing is hashed.
    if (plainProblem(plain) !== null) return { ok: false, scheme: parsed.name };
    if (!parsed.ok) {
      await this.verifyDummy(plain).catch(() => false);
      return { ok: false, scheme: parsed.name, reason: parsed.reason };
    }
    const reply = (await this.pool.run({ op: 'verify', stored, plain, defaultScheme: this.defaultScheme })) as VerifyReply;
    this.noteProfile(costProfile(parsed.hash));
    return reply.reason === undefined ? { ok: reply.ok, scheme: parsed.name } : { ok: false, scheme: parsed.name, reason: reply.reason };
  }

  /**
   * For a user that does not exist: costs about what verify() of a real hash costs, by verifying
   * against a dummy hash in the scheme and cost parameters of the most recent real verification
   * (so a SHA512-CRYPT database is not told apart by argon2 timings), or in the new-password
   * scheme before any. Always false.
   */
  async verifyDummy(plain: string): Promise<false> {
    if (plainProblem(plain) !== null) return false;
    const stored = await this.dummyFor(this.dummyProfile);
    await this.pool.run({ op: 'verify', stored, plain, defaultScheme: this.defaultScheme });
    return false;
  }

  /**
   * Should this stored value be replaced by a new hash after a successful login (passwords.rehash)?
   * See isWeakerProfile for what counts as weaker. Parsing only, no hashing: cheap on the main
   * thread. False for values that do not parse (they never verify).
   */
  needsRehash(stored: string): boolean {
    const parsed = parseStored(stored, this.defaultScheme);
    return parsed.ok && isWeakerProfile(costProfile(parsed.hash), newPasswordProfile(this.newScheme));
  }

  /** Hashes a new password; the result carries the {SCHEME} prefix as `doveadm pw -s SCHEME` prints it. */
  async hash(plain: string, scheme: PasswordScheme = this.newScheme): Promise<string> {
    if (!NEW_PASSWORD_SCHEMES.includes(scheme)) {
      throw new MailError('UNSUPPORTED', `cannot hash new passwords in ${JSON.stringify(scheme)}`);
    }
    const problem = plainProblem(plain);
    if (problem !== null) throw new RangeError(`cannot hash this password: ${problem}`);
    return (await this.pool.run({ op: 'hash', profile: newPasswordProfile(scheme), plain })) as string;
  }

  /** Stops the workers: queued calls fail with TEMP_FAIL, running ones finish first. */
  async close(): Promise<void> {
    this.dummies.clear();
    await this.pool.close();
  }

  /** The cost profile verifyDummy() currently imitates (diagnostics and tests). */
  get dummyProfile(): CostProfile {
    return this.lastProfile ?? newPasswordProfile(this.newScheme);
  }

  /** Pool load, for diagnostics and tests. */
  get stats(): WorkerPool['stats'] {
    return this.pool.stats;
  }

  private noteProfile(profile: CostProfile): void {
    this.lastProfile = profile;
    // Make the dummy for a new profile now (after the real verification, which should not wait
    // for it), so the first verifyDummy does not pay for it.
    this.dummyFor(profile).catch(() => {});
  }

  /** A dummy stored hash of a random password with the given profile, made once per profile. */
  private dummyFor(profile: CostProfile): Promise<string> {
    const key = profileKey(profile);
    let dummy = this.dummies.get(key);
    if (dummy === undefined) {
      dummy = this.pool.run({ op: 'hash', profile, plain: randomBytes(18).toString('base64') }) as Promise<string>;
      this.dummies.set(key, dummy);
      dummy.catch(() => {
        if (this.dummies.get(key) === dummy) this.dummies.delete(key);
      });
      if (this.dummies.size > MAX_DUMMIES) this.dummies.delete(this.dummies.keys().next().value!);
    }
    return dummy;
  }
}
