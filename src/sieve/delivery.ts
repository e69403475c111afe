/**
 * Sieve at delivery, as Pigeonhole runs it from Dovecot's LDA/LMTP: for each mailbox, the global
 * scripts before (sieve_before), the user's active script, the global scripts after
 * (sieve_after), then their actions: folders and flags for the store, a refusal for the
 * protocol, redirects and vacation replies through the outbound queue. A script that fails to
 * compile or run keeps the message (RFC 5228 section 2.10.6): nothing is lost to a broken filter.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { UserRecord, VacationRecord } from '../directory/types.js';
import { MailError } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutboundQueue } from '../queue/types.js';
import type { FilterDecision, FilterRequest } from '../store/delivery.js';
import { replaceDurably } from '../store/fsio.js';
import { buildDsn, headerBlock as dsnHeaderBlock } from '../queue/dsn.js';
import { scriptFile, type ActiveSieveScripts, type IncludeScope, type ScriptFile } from '../store/sieve-active.js';
import { compileSieve, runSieve, type CompiledSieve } from './index.js';
import type { SieveChecks } from './interpreter.js';
import type { SieveAction, SieveLimits } from './types.js';
import type { Node as SieveNode } from './validator.js';
import { headerBlock, vacationReply, vacationWanted } from './vacation.js';
import { applyHeaderEdits, isHeaderEdit, type HeaderEdit } from './edit-headers.js';

export interface SieveSettings {
  enabled: boolean;
  /** Global scripts (files) run before and after the user's, in order. */
  before: string[];
  after: string[];
  limits: SieveLimits;
  vacation: { defaultPeriod: number; minPeriod: number; maxPeriod: number };
  /** The envelope sender of redirects (Pigeonhole's sieve_redirect_envelope_from); default 'sender'. */
  redirectEnvelopeFrom?: 'sender' | 'recipient' | 'orig_recipient' | '<>';
  /** Our host name (Message-ID of replies). */
  hostname: string;
}

/** The user's active script (Pigeonhole's ~/.dovecot.sieve), its includes, and the user's home (vacation memory). */
export type ActiveScriptSource = ActiveSieveScripts;

interface Compiled {
  stamp: string;
  /** The scripts it included, with their stamps then ('' for one that was missing). */
  includes: Array<{ name: string; scope: IncludeScope; stamp: string }>;
  script?: CompiledSieve;
  error?: string;
}

/** Compiled scripts kept (user scripts by user, global ones by path). */
const MAX_COMPILED = 5000;
/** Message IDs the duplicate extension remembers per user. */
const MAX_DUPLICATE_IDS = 10_000;

/** Whether the script, or a script it includes (each once), satisfies `has`. */
function inIncludeTree(unit: CompiledSieve, has: (u: CompiledSieve) => boolean, seen = new Set<CompiledSieve>()): boolean {
  if (seen.has(unit)) return false;
  seen.add(unit);
  return has(unit) || [...unit.includes.values()].some((u) => inIncludeTree(u, has, seen));
}

/** Does the script, or a script it includes, require this extension? */
function usesExtension(unit: CompiledSieve, extension: string): boolean {
  return inIncludeTree(unit, (u) => u.extensions.has(extension));
}

/** The names of the commands and tests of one script (remembered per compiled script). */
const namesUsed = new WeakMap<CompiledSieve, Set<string>>();
function commandNames(unit: CompiledSieve): Set<string> {
  let names = namesUsed.get(unit);
  if (!names) {
    const found = new Set<string>();
    const walk = (nodes: readonly SieveNode[]): void => {
      for (const n of nodes) {
        found.add(n.name);
        walk(n.tests);
        if (n.block) walk(n.block);
      }
    };
    walk(unit.nodes);
    namesUsed.set(unit, (names = found));
  }
  return names;
}

/** Does the script, or a script it includes, have a test of this name somewhere? */
function usesTest(unit: CompiledSieve, test: string): boolean {
  return inIncludeTree(unit, (u) => commandNames(u).has(test));
}

export class SieveDelivery {
  readonly #settings: () => SieveSettings;
  readonly #scripts: ActiveScriptSource;
  readonly #queue: OutboundQueue;
  readonly #log: Logger;
  readonly #compiled = new Map<string, Compiled>();
  readonly #directoryVacation: ((user: UserRecord) => Promise<VacationRecord | null>) | undefined;
  readonly #folderNames: ((user: UserRecord) => Promise<string[]>) | undefined;

  constructor(opts: {
    settings: () => SieveSettings;
    scripts: ActiveScriptSource;
    queue: OutboundQueue;
    logger: Logger;
    /** PostfixAdmin's vacation table, when the directory has one. */
    directoryVacation?: (user: UserRecord) => Promise<VacationRecord | null>;
    /** The user's folders by IMAP name (RFC 5490 mailboxexists); without it only INBOX exists. */
    folderNames?: (user: UserRecord) => Promise<string[]>;
  }) {
    this.#settings = opts.settings;
    this.#scripts = opts.scripts;
    this.#queue = opts.queue;
    this.#log = opts.logger;
    this.#directoryVacation = opts.directoryVacation;
    this.#folderNames = opts.folderNames;
  }

  /**
   * PostfixAdmin's out-of-office reply as a vacation action (its vacation.pl's rules: within
   * activefrom..activeuntil, one reply per sender per interval_time, once when 0).
   */
  async #postfixAdminVacation(user: UserRecord, settings: SieveSettings): Promise<Extract<SieveAction, { type: 'vacation' }> | undefined> {
    if (!this.#directoryVacation) return undefined;
    const row = await this.#directoryVacation(user).catch((err: unknown) => {
      this.#log.warn({ mailbox: user.email, err: (err as Error).message }, 'vacation lookup failed; no reply');
      return null;
    });
    if (!row) return undefined;
    const now = Date.now();
    if ((row.activeFrom && row.activeFrom.getTime() > now) || (row.activeUntil && row.activeUntil.getTime() < now)) return undefined;
    return {
      type: 'vacation',
      reason: row.body,
      mime: false,
      subject: row.subject,
      addresses: [],
      period: row.intervalSeconds > 0 ? row.intervalSeconds : settings.vacation.maxPeriod / 1000,
      handle: 'postfixadmin',
    };
  }

  /** The store's filter hook (MaildirStoreOptions.filter). */
  readonly filter = async (req: FilterRequest): Promise<FilterDecision | undefined> => {
    const settings = this.#settings();
    if (!settings.enabled) return undefined;
    const user = req.mailbox;
    const scripts: Array<{ key: string; name: string; load: () => Promise<ScriptFile | undefined> }> = [
      ...settings.before.map((file) => ({ key: `global:${file}`, name: file, load: () => scriptFile(file) })),
      { key: `user:${user.email}`, name: 'active', load: () => this.#scripts.active(user) },
      ...settings.after.map((file) => ({ key: `global:${file}`, name: file, load: () => scriptFile(file) })),
    ];
    const compiled: Array<{ name: string; script: CompiledSieve }> = [];
    for (const s of scripts) {
      const c = await this.#compile(user, s.key, s.load, settings.limits).catch((err: unknown) => {
        this.#log.warn({ mailbox: user.email, script: s.name, err: (err as Error).message }, 'sieve script unreadable; skipped');
        return undefined;
      });
      if (!c) continue;
      if (c.script) compiled.push({ name: s.name, script: c.script });
      else this.#log.warn({ mailbox: user.email, script: s.name, err: c.error }, 'sieve script does not compile; the message is kept');
    }
    const directoryVacation = await this.#postfixAdminVacation(user, settings);
    if (compiled.length === 0 && !directoryVacation) return undefined;

    const raw = stripDeliveryTrace(await req.message());
    if (compiled.length === 0) {
      await this.#vacation(user, req.sender, raw, directoryVacation!, settings).catch((err: unknown) =>
        this.#log.warn({ mailbox: user.email, err: (err as Error).message }, 'vacation reply failed'),
      );
      return undefined;
    }
    const envelope = { from: req.sender, to: user.email };
    const actions: SieveAction[] = [];
    let implicitKeep = true;
    /** The flags the last script's implicit keep carries (RFC 5232 section 3: its internal variable). */
    let keepFlags: string[] | undefined;
    const checks = await this.#checks(
      user,
      compiled.map((c) => c.script),
    );
    for (const { name, script } of compiled) {
      const input = {
        message: raw,
        envelope,
        ...(req.scores?.spam !== undefined ? { spamScore: req.scores.spam } : {}),
        ...(req.scores?.virus !== undefined ? { virusScore: req.scores.virus } : {}),
      };
      const result = runSieve(script, input, { limits: settings.limits, ...checks });
      if (result.error) {
        // RFC 5228 section 2.10.6: on a runtime error the message is kept, whatever ran before.
        this.#log.warn({ mailbox: user.email, script: name, err: result.error }, 'sieve runtime error; the message is kept');
        return { placements: [{}] };
      }
      const implicit = result.implicitKeep ? result.actions.findLast((a) => a.type === 'keep') : undefined;
      if (implicit?.type === 'keep') keepFlags = implicit.flags;
      actions.push(...result.actions.filter((a) => a !== implicit));
      if (!result.implicitKeep) implicitKeep = false;
    }
    // A vacation of the script wins over the directory's (one reply per message, RFC 5230 section 4.7).
    if (directoryVacation && !actions.some((a) => a.type === 'vacation')) actions.push(directoryVacation);
    const decision = await this.#carryOut(user, req, raw, actions, implicitKeep ? (keepFlags ?? []) : undefined, settings);
    const seen = actions.filter((a): a is Extract<SieveAction, { type: 'duplicate' }> => a.type === 'duplicate');
    // RFC 7352 section 3: the ID is recorded once the message is delivered, not before.
    if ('placements' in decision && seen.length > 0) decision.delivered = () => this.#recordDuplicates(user, seen);
    return decision;
  };

  /** What the scripts ask of the store: its folders (mailboxexists), earlier messages (duplicate). */
  async #checks(user: UserRecord, scripts: CompiledSieve[]): Promise<SieveChecks> {
    const checks: SieveChecks = {};
    // Only mailboxexists needs the folders; "mailbox" is also required for fileinto :create.
    if (this.#folderNames && scripts.some((s) => usesTest(s, 'mailboxexists'))) {
      const names = new Set(await this.#folderNames(user));
      checks.mailboxExists = (name) => name.toUpperCase() === 'INBOX' || names.has(name);
    }
    if (scripts.some((s) => usesExtension(s, 'duplicate'))) {
      const memory = await readMemory(this.#duplicateFile(user));
      const now = Date.now();
      checks.isDuplicate = (key) => (memory[key] ?? 0) > now;
    }
    return checks;
  }

  #duplicateFile(user: UserRecord): string {
    return path.join(this.#scripts.home(user), '.maild-duplicate.json');
  }

  /**
   * Records the IDs the duplicate tests saw (RFC 7352 section 3.3): for :seconds (or the default
   * period) from the first sighting, or from this one with :last.
   */
  async #recordDuplicates(user: UserRecord, seen: Array<Extract<SieveAction, { type: 'duplicate' }>>): Promise<void> {
    const file = this.#duplicateFile(user);
    const memory = await readMemory(file);
    const now = Date.now();
    for (const [key, expires] of Object.entries(memory)) if (expires <= now) delete memory[key];
    for (const d of seen) if (d.last || !(memory[d.key]! > now)) memory[d.key] = now + d.period * 1000;
    // Bounded: the entries that expire first go.
    const entries = Object.entries(memory)
      .sort((a, b) => b[1] - a[1])
      .slice(0, MAX_DUPLICATE_IDS);
    await replaceDurably(file, JSON.stringify(Object.fromEntries(entries)), { tmp: `${file}.tmp`, fsync: false });
  }

  async #carryOut(
    user: UserRecord,
    req: FilterRequest,
    raw: Buffer,
    actions: SieveAction[],
    /** The implicit keep's flags, or undefined when no implicit keep is left. */
    implicitKeep: string[] | undefined,
    settings: SieveSettings,
  ): Promise<FilterDecision> {
    const sender = req.sender;
    const placements: EditedPlacement[] = [];
    const done: string[] = [];
    // RFC 5293 section 3: a copy stored or sent carries the header edits made before its action.
    const edits: HeaderEdit[] = [];
    const edited = new Map<number, Buffer>();
    const messageAfter = (count: number) => {
      if (count === 0) return raw;
      let message = edited.get(count);
      if (!message) edited.set(count, (message = applyHeaderEdits(raw, edits.slice(0, count))));
      return message;
    };
    for (const action of actions) {
      if (isHeaderEdit(action)) {
        edits.push(action);
        continue;
      }
      switch (action.type) {
        case 'keep':
          placements.push({ ...flagged({}, action.flags), edits: edits.length });
          done.push('keep');
          break;
        case 'fileinto':
          placements.push({ ...flagged({ folder: action.mailbox, create: action.create }, action.flags), edits: edits.length });
          done.push(`fileinto ${action.mailbox}`);
          break;
        case 'discard':
          done.push('discard');
          break;
        case 'reject': {
          this.#log.info({ mailbox: user.email, from: sender }, 'sieve reject');
          // RFC 5429 section 2.1: the reason goes back in the refusal (one printable line).
          const text =
            action.reason
              .replace(/[^\x20-\x7e]+/g, ' ')
              .trim()
              .slice(0, 200) || 'Message rejected';
          if (req.mayRefuse)
            return {
              refuse: new MailError('REJECTED', `sieve reject for ${user.email}`, { reply: { code: 550, enhanced: '5.7.1', text } }),
            };
          // RFC 5429 section 2.1: after the transaction, the refusal goes to the sender as a notice
          // (a DSN, as Postfix sends for an LMTP refusal); the message is stored nowhere.
          await this.#rejectionNotice(user, req, raw, text);
          return { placements: [] };
        }
        case 'redirect':
          if (await this.#redirect(user, sender, messageAfter(edits.length), action.address)) done.push(`redirect ${action.address}`);
          else placements.push({ edits: edits.length });
          break;
        case 'vacation':
          await this.#vacation(user, sender, raw, action, settings).catch((err: unknown) =>
            this.#log.warn({ mailbox: user.email, err: (err as Error).message }, 'vacation reply failed'),
          );
          break;
        default:
          // duplicate is recorded after delivery (the decision's delivered hook).
          break;
      }
    }
    if (implicitKeep && !placements.some((p) => p.folder === undefined))
      placements.push({ ...flagged({}, implicitKeep), edits: edits.length });
    if (edits.length > 0) done.push(`editheader ${edits.length}`);
    this.#log.info({ mailbox: user.email, sieve: done.length ? done : ['keep'] }, 'sieve');
    return {
      placements: oneCopyPerFolder(placements).map(({ edits: count, ...p }) => (count ? { ...p, message: messageAfter(count) } : p)),
    };
  }

  /** The non-delivery report for a message the user's script rejected when SMTP could not say so for this mailbox alone. */
  async #rejectionNotice(user: UserRecord, req: FilterRequest, raw: Buffer, reason: string): Promise<void> {
    // Never a notice about a notice (RFC 5429 section 2.1.2, RFC 3834).
    if (!req.sender) {
      this.#log.info({ mailbox: user.email, qid: req.queueId }, 'sieve reject of a message from <>: discarded');
      return;
    }
    const notice = buildDsn({
      reportingMta: this.#settings().hostname,
      queueId: req.queueId,
      originalSender: req.sender,
      arrivalDate: new Date(),
      recipients: [{ address: user.email, action: 'failed', status: '5.7.1', diagnostic: `smtp; 550 5.7.1 ${reason}` }],
      originalHeaders: dsnHeaderBlock(raw),
      kind: 'failure',
    });
    const { queueId } = await this.#queue.enqueue({
      sender: '',
      recipients: [{ address: req.sender }],
      message: notice,
      maxBytes: Number.MAX_SAFE_INTEGER,
      origin: 'bounce',
    });
    this.#log.info({ mailbox: user.email, qid: req.queueId, notice: queueId, to: req.sender }, 'sieve reject: non-delivery notice');
  }

  /**
   * Redirect through the queue with the original sender (RFC 5228 section 4.2), marked so that a
   * message coming back to this mailbox is kept instead of looping (Pigeonhole's
   * X-Sieve-Redirected-From). False when it is not sent (a loop): the message is kept.
   */
  async #redirect(user: UserRecord, sender: string, raw: Buffer, address: string): Promise<boolean> {
    const mark = `X-Sieve-Redirected-From: ${user.email}`;
    if (headerBlock(raw).toLowerCase().includes(mark.toLowerCase())) {
      this.#log.warn({ mailbox: user.email, to: address }, 'sieve redirect loop; the message is kept');
      return false;
    }
    // A bounce stays a bounce; otherwise the operator's choice (the user's address passes SPF for our domain).
    const from = this.#settings().redirectEnvelopeFrom ?? 'sender';
    const envelopeSender = !sender || from === 'sender' ? sender : from === '<>' ? '' : user.email;
    const result = await this.#queue.enqueue({
      sender: envelopeSender,
      recipients: [{ address }],
      message: raw,
      prepend: `${mark}\r\n`,
      maxBytes: raw.length + 1,
      origin: 'forward',
    });
    this.#log.info({ mailbox: user.email, to: address, qid: result.queueId }, 'sieve redirect');
    return true;
  }

  /** RFC 5230: one reply per sender (and handle) per period, never to lists, bounces or robots. */
  async #vacation(
    user: UserRecord,
    sender: string,
    raw: Buffer,
    action: Extract<SieveAction, { type: 'vacation' }>,
    settings: SieveSettings,
  ): Promise<void> {
    const why = vacationWanted(raw, sender, user.email, action.addresses);
    if (why) {
      this.#log.info({ mailbox: user.email, from: sender, why }, 'vacation: no reply');
      return;
    }
    const { minPeriod, maxPeriod, defaultPeriod } = settings.vacation;
    const period = Math.min(maxPeriod, Math.max(minPeriod, (action.period ?? defaultPeriod / 1000) * 1000));
    const handle =
      action.handle ??
      createHash('sha256')
        .update(`${action.subject ?? ''}\0${action.from ?? ''}\0${action.reason}`)
        .digest('hex')
        .slice(0, 16);
    const key = `${sender.toLowerCase()}\0${handle}`;
    const memoryFile = path.join(this.#scripts.home(user), '.maild-vacation.json');
    const memory = await readMemory(memoryFile);
    const now = Date.now();
    if (memory[key] !== undefined && now - memory[key] < period) {
      this.#log.info({ mailbox: user.email, from: sender }, 'vacation: already answered in this period');
      return;
    }
    const reply = vacationReply(raw, { ...action, to: sender, recipient: user.email, hostname: settings.hostname, now: new Date(now) });
    // RFC 5230 section 5.1: the reply goes from the null sender.
    const result = await this.#queue.enqueue({
      sender: '',
      recipients: [{ address: sender }],
      message: reply,
      maxBytes: reply.length + 1,
      origin: 'forward',
    });
    for (const [k, t] of Object.entries(memory)) if (now - t > maxPeriod) delete memory[k];
    memory[key] = now;
    await replaceDurably(memoryFile, JSON.stringify(memory), { tmp: `${memoryFile}.tmp`, fsync: false });
    this.#log.info({ mailbox: user.email, to: sender, qid: result.queueId }, 'vacation reply');
  }

  /**
   * The script compiled: from the cache while neither it nor a script it includes changed, else
   * read and compiled again. Undefined when there is no such script.
   */
  async #compile(
    user: UserRecord,
    key: string,
    load: () => Promise<ScriptFile | undefined>,
    limits: SieveLimits,
  ): Promise<Compiled | undefined> {
    const source = await load();
    if (!source) return undefined;
    const cached = this.#compiled.get(key);
    if (cached && cached.stamp === source.stamp && (await this.#includesUnchanged(user, cached))) return cached;
    const includes: Compiled['includes'] = [];
    const include = (name: string, scope: IncludeScope) => {
      const found = this.#scripts.include(user, name, scope);
      includes.push({ name, scope, stamp: found?.stamp ?? '' });
      return found?.text;
    };
    const result = compileSieve(await source.read(), { limits, include });
    const entry: Compiled = result.ok
      ? { stamp: source.stamp, includes, script: result.script }
      : { stamp: source.stamp, includes, error: result.errors.map((e) => `line ${e.line}: ${e.message}`).join('; ') };
    this.#compiled.delete(key);
    this.#compiled.set(key, entry);
    while (this.#compiled.size > MAX_COMPILED) this.#compiled.delete(this.#compiled.keys().next().value!);
    return entry;
  }

  /** Are the included scripts as they were at compile time (RFC 6609: the included script now)? */
  async #includesUnchanged(user: UserRecord, compiled: Compiled): Promise<boolean> {
    for (const inc of compiled.includes) if ((await this.#scripts.includeStamp(user, inc.name, inc.scope)) !== inc.stamp) return false;
    return true;
  }
}

async function readMemory(file: string): Promise<Record<string, number>> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, number>) : {};
  } catch {
    return {};
  }
}

/** The message without the Return-Path and Delivered-To lines the store puts on top of its copy. */
function stripDeliveryTrace(raw: Buffer): Buffer {
  let offset = 0;
  for (;;) {
    const rest = raw.subarray(offset, offset + 1024).toString('latin1');
    const m = /^(Return-Path|Delivered-To):[^\n]*\n/i.exec(rest);
    if (!m) return raw.subarray(offset);
    offset += Buffer.byteLength(m[0], 'latin1');
  }
}

/**
 * One copy per folder: a keep and a fileinto "INBOX" (or two fileintos of one folder) store the
 * message once, with the flags of the later action (RFC 5228 section 2.10.3, as Pigeonhole).
 */
function oneCopyPerFolder(placements: EditedPlacement[]): EditedPlacement[] {
  const byFolder = new Map<string, EditedPlacement>();
  for (const p of placements) {
    const inbox = p.folder === undefined || p.folder.toUpperCase() === 'INBOX';
    const before = byFolder.get(inbox ? '' : p.folder!);
    // The later action's flags, keywords included, replace the earlier one's.
    const merged: EditedPlacement = inbox ? {} : { folder: p.folder, create: Boolean(before?.create || p.create) };
    if (p.edits) merged.edits = p.edits;
    if (p.flags) merged.flags = p.flags;
    if (p.keywords?.length) merged.keywords = p.keywords;
    byFolder.set(inbox ? '' : p.folder!, merged);
  }
  return [...byFolder.values()];
}

type Placement = Extract<FilterDecision, { placements: unknown }>['placements'][number];
/** A placement with the number of header edits made before its action. */
type EditedPlacement = Omit<Placement, 'message'> & { edits?: number };

/** RFC 3501 section 9: a flag keyword is an atom (no specials, controls, spaces or 8-bit). */
const KEYWORD = /^[^\\(){ %*"\]\x00-\x20\x7f-\uffff]+$/;

/**
 * A placement with its IMAP flags (RFC 5232): system flags as Maildir info letters, keywords by
 * name (the store gives them the folder's letters). A flag that is neither is left out, as
 * Pigeonhole does with a warning.
 */
function flagged(placement: Placement, flags: string[] | undefined): Placement {
  const letters: Record<string, string> = { '\\seen': 'S', '\\answered': 'R', '\\flagged': 'F', '\\deleted': 'T', '\\draft': 'D' };
  let system = '';
  const keywords: string[] = [];
  for (const flag of flags ?? []) {
    if (flag.startsWith('\\')) system += letters[flag.toLowerCase()] ?? '';
    else if (KEYWORD.test(flag) && !keywords.some((k) => k.toLowerCase() === flag.toLowerCase())) keywords.push(flag);
  }
  return { ...placement, ...(system ? { flags: system } : {}), ...(keywords.length ? { keywords } : {}) };
}
