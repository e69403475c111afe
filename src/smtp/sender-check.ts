/**
 * Which sender addresses an authenticated user may use (Postfix's smtpd_sender_login_maps with
 * reject_sender_login_mismatch, RFC 6409 section 6.1 "the MSA MAY verify the sender"), and the
 * per-login recipient rate limit.
 *
 * A login owns: its own address; every address that resolves (aliases, extensions, alias
 * domains, catch-alls) to its mailbox, also when it resolves to other mailboxes too (a team
 * alias belongs to each member); and the entries of submission.extra_senders[login]
 * (addresses, or "@domain" for a whole domain).
 */
import { addressKey, isAddressLiteral, splitAddress } from '../directory/address.js';
import type { Directory } from '../directory/directory.js';
import { isMailError } from '../errors.js';

export interface SenderCheckDeps {
  directory: Directory;
  extraSenders: Record<string, string[]>;
}

function extraFor(extra: Record<string, string[]>, login: string): string[] {
  const key = login.toLowerCase();
  const out: string[] = [];
  for (const [k, v] of Object.entries(extra)) if (k.toLowerCase() === key) out.push(...v);
  return out;
}

/**
 * True when `login` may send as `address`. A directory that cannot answer throws (a temporary
 * MailError), so the client is told to try later instead of being refused.
 */
export async function ownsAddress(deps: SenderCheckDeps, login: string, address: string): Promise<boolean> {
  const split = splitAddress(address);
  if (!split) return false;
  const key = addressKey(address);
  if (key === addressKey(login)) return true;
  for (const entry of extraFor(deps.extraSenders, login)) {
    const e = entry.trim();
    if (e.startsWith('@') ? split.domain === e.slice(1).toLowerCase().replace(/\.$/, '') : addressKey(e) === key) return true;
  }
  if (isAddressLiteral(split.domain) || !(await deps.directory.isLocalDomain(split.domain))) return false;
  try {
    const resolution = await deps.directory.resolve(address);
    const me = addressKey(login);
    return resolution.mailboxes.some((m) => addressKey(m.email) === me);
  } catch (err) {
    if (isMailError(err) && err.temporary) throw err;
    return false; // unknown, disabled, looping, unusable: nobody's
  }
}

/**
 * Accepted recipients per login in fixed windows (Postfix's anvil counts per client; this
 * counts per user, which is what a compromised password needs to be limited by). A recipient
 * is taken at RCPT and given back if RCPT then fails.
 */
export class RecipientRateLimiter {
  readonly #windows = new Map<string, { start: number; count: number }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Counts one recipient for `login`; false (nothing counted) when the limit is reached. 0: no limit. */
  take(login: string, limit: number, windowMs: number): boolean {
    if (limit <= 0) return true;
    const now = this.#now();
    const key = login.toLowerCase();
    let w = this.#windows.get(key);
    if (!w || now - w.start >= windowMs) {
      if (this.#windows.size >= 10_000) this.#sweep(now, windowMs);
      w = { start: now, count: 0 };
      this.#windows.set(key, w);
    }
    if (w.count >= limit) return false;
    w.count++;
    return true;
  }

  /** Gives back one recipient counted by take() (the RCPT was refused after all). */
  giveBack(login: string): void {
    const w = this.#windows.get(login.toLowerCase());
    if (w && w.count > 0) w.count--;
  }

  #sweep(now: number, windowMs: number): void {
    for (const [k, w] of this.#windows) if (now - w.start >= windowMs) this.#windows.delete(k);
  }
}
