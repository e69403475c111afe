/**
 * The outbound queue: durable enqueue, a scheduler that delivers each message's recipients
 * (local ones through the store, remote ones over SMTP), retries temporary failures with growing
 * delays, and reports final failures to the sender (RFC 3464). Modelled on Postfix's qmgr:
 *   - a message's pending recipients are grouped by next hop; one SMTP transaction carries up to
 *     `recipients_per_transaction` recipients of one destination;
 *   - at most `concurrency` transactions run at once, `destination_concurrency` per next hop;
 *   - after every transaction the envelope is rewritten (atomically, fsynced) with each
 *     recipient's state before anything else happens, so a restart never sends a delivered
 *     recipient again;
 *   - a round's deferred recipients wait retry_min, then twice as long each round, up to
 *     retry_max; after max_lifetime they are bounced; a delay warning may be sent on the way.
 */
import type { Readable } from 'node:stream';
import { MailError, isMailError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildDsn, headerBlock, oneLine, type DsnRecipient } from './dsn.js';
import { newQueueId } from './ids.js';
import { resultForError, type LocalDelivery } from './local.js';
import type { Route, Router } from './route.js';
import type { Envelope, SpooledRecipient, Spool } from './spool.js';
import type { EnqueueRequest, EnqueueResult, NextHop, OutboundQueue, RecipientResult, Transaction } from './types.js';
import { statusLine } from '../status.js';

export interface QueueSettings {
  hostname: string;
  concurrency: number;
  destinationConcurrency: number;
  recipientsPerTransaction: number;
  retryMinMs: number;
  retryMaxMs: number;
  maxLifetimeMs: number;
  /** 0: no delay warnings. */
  delayWarningMs: number;
}

/** Delivers one transaction to a remote next hop (RemoteDelivery; tests may substitute). */
export interface RemoteAgent {
  deliver(hop: NextHop, tx: Transaction): Promise<RecipientResult[]>;
  close?(): Promise<void>;
  /** Cuts the transactions in progress (their recipients stay queued). */
  abort?(): void;
}

export interface QueueOptions {
  spool: Spool;
  router: Router;
  local: LocalDelivery;
  remote: RemoteAgent;
  settings: () => QueueSettings;
  logger: Logger;
  /** The clock (ms since the epoch); tests move it forward to reach retry times and expiry. */
  now?: () => number;
}

interface Entry {
  env: Envelope;
  /** The delivery round in progress, if any. */
  run?: Promise<void>;
  /** Envelope writes of this entry, one after the other. */
  writes: Promise<void>;
}

/** A recipient whose next hop cannot be found: a broken transport entry or relayhost waits for a fix. */
function routeFailure(address: string, err: unknown): RecipientResult {
  if (!isMailError(err, 'CONFIG_INVALID')) return resultForError(address, err);
  return { address, status: 'deferred', code: 451, enhanced: '4.3.5', text: `mail transport unavailable (${oneLine(err.message, 500)})` };
}

/**
 * A result as one reply line for the envelope and the DSN's Diagnostic-Code. A remote server's
 * reply comes whole, starting with its own codes ("550 5.1.1 User unknown", parseReply); any
 * other result is rendered from its status fields.
 */
function resultLine(res: RecipientResult): string {
  const codes = `${res.code} ${res.enhanced}`;
  return res.text === codes || res.text.startsWith(`${codes} `) ? res.text : statusLine(res);
}

/** A counting semaphore whose limit may change; waiters are served first come, first served. */
class Slots {
  #limit: number;
  #active = 0;
  readonly #waiters: Array<() => void> = [];
  constructor(limit: number) {
    this.#limit = limit;
  }
  /** A new limit (SIGHUP); a higher one lets waiters in at once. */
  set limit(n: number) {
    this.#limit = n;
    this.#admit();
  }
  get limit(): number {
    return this.#limit;
  }
  async acquire(): Promise<void> {
    if (this.#active < this.#limit) {
      this.#active++;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    this.#active--;
    this.#admit();
  }
  #admit(): void {
    while (this.#active < this.#limit && this.#waiters.length > 0) {
      this.#active++;
      this.#waiters.shift()!();
    }
  }
  get idle(): boolean {
    return this.#active === 0 && this.#waiters.length === 0;
  }
}

/**
 * The due times of queued messages, earliest first (a binary min-heap). Entries are never
 * updated in place: a message that gets a new time is pushed again, and stale entries (the
 * message's time differs, or it is gone) are skipped when they come up. Each event costs
 * O(log n), whatever the size of the queue.
 */
class DueHeap {
  readonly #items: Array<{ at: number; id: string }> = [];
  get size(): number {
    return this.#items.length;
  }
  peek(): { at: number; id: string } | undefined {
    return this.#items[0];
  }
  push(at: number, id: string): void {
    const items = this.#items;
    items.push({ at, id });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.at <= items[i]!.at) break;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
  }
  pop(): { at: number; id: string } | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && items[l]!.at < items[m]!.at) m = l;
        if (r < items.length && items[r]!.at < items[m]!.at) m = r;
        if (m === i) break;
        [items[m], items[i]] = [items[i]!, items[m]!];
        i = m;
      }
    }
    return top;
  }
}

const BOUNCE_HEADER_LIMIT = 64 * 1024;
/** Received: fields after which a message is taken to be looping. */
const MAX_HOPS = 50;

export interface QueueSummary {
  id: string;
  created: number;
  size: number;
  sender: string;
  held: boolean;
  running: boolean;
  nextAttempt: number;
  attempts: number;
  recipients: Array<{ address: string; state: string; lastError?: string }>;
}

export class Queue implements OutboundQueue {
  readonly #opts: QueueOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #due = new DueHeap();
  readonly #global: Slots;
  readonly #perHop = new Map<string, Slots>();
  readonly #running = new Set<Promise<void>>();
  readonly #now: () => number;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #scheduled = false;
  #stopping = false;
  #started = false;

  constructor(opts: QueueOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger;
    this.#global = new Slots(opts.settings().concurrency);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Loads the spool and starts delivering (a restart resumes exactly where the queue was). */
  async start(): Promise<void> {
    await this.#opts.spool.init();
    await this.#opts.spool.lock();
    const envs = await this.#opts.spool.loadAll((id, why) => this.#log.error({ qid: id }, `queue file dropped: ${why}`));
    for (const env of envs) {
      this.#entries.set(env.id, { env, writes: Promise.resolve() });
      this.#due.push(env.nextAttempt, env.id);
    }
    this.#started = true;
    if (envs.length > 0) this.#log.info({ messages: envs.length }, 'queue loaded');
    this.#schedule();
  }

  /**
   * Streams the message into the spool and commits its envelope; resolves once both are on
   * disk (fsynced), which is when the caller may acknowledge the message.
   */
  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    if (this.#stopping) throw new MailError('STORAGE_ERROR', 'queue is shutting down');
    const id = req.queueId ?? newQueueId();
    const spool = this.#opts.spool;
    const written = await spool.writeMessage(id, req.message, req.maxBytes);
    let prepend = req.prepend ?? '';
    try {
      // A message that has passed this many servers is in a loop (Postfix's hopcount_limit, RFC 5321 section 6.3).
      const hops = written.headers.toString('latin1').match(/^Received:/gim)?.length ?? 0;
      if (hops >= MAX_HOPS) throw new MailError('ALIAS_LOOP', `${hops} Received: header fields: mail forwarding loop`);
      if (req.beforeCommit) {
        // The hook checks the header (From: ownership): a header it cannot see whole is refused.
        if (written.headersTruncated) throw new MailError('MESSAGE_TOO_BIG', 'header section larger than 256 KiB');
        const extra = await req.beforeCommit(written.headers, (prefix) => spool.openMessage(id, prefix));
        if (extra) prepend += extra;
      }
      const now = this.#now();
      const seen = new Set<string>();
      const recipients: SpooledRecipient[] = [];
      for (const r of req.recipients) {
        const key = r.address.toLowerCase();
        if (seen.has(key)) continue;
        seen.add(key);
        recipients.push({
          address: r.address,
          ...(r.original && r.original !== r.address ? { original: r.original } : {}),
          ...(r.notify?.length ? { notify: r.notify } : {}),
          ...(r.orcpt ? { orcpt: r.orcpt } : {}),
          state: 'pending',
          attempts: 0,
        });
      }
      const env: Envelope = {
        version: 1,
        id,
        sender: req.sender,
        created: now,
        size: written.size,
        prepend,
        origin: req.origin,
        ...(req.authUser ? { authUser: req.authUser } : {}),
        ...(req.folder ? { folder: req.folder } : {}),
        ...(req.scores ? { scores: req.scores } : {}),
        ...(req.dsn && (req.dsn.ret || req.dsn.envid) ? { dsn: req.dsn } : {}),
        eightBit: written.eightBit,
        held: false,
        warned: false,
        attempts: 0,
        nextAttempt: now,
        recipients,
      };
      await spool.writeEnvelope(env, { messageDirToo: true });
      this.#entries.set(id, { env, writes: Promise.resolve() });
      this.#due.push(env.nextAttempt, id);
      this.#log.info(
        {
          qid: id,
          from: req.sender,
          size: written.size,
          nrcpt: recipients.length,
          origin: req.origin,
          ...(req.authUser ? { sasl_username: req.authUser } : {}),
        },
        'queued',
      );
      this.#schedule();
      return { queueId: id, size: written.size };
    } catch (err) {
      await spool.discardMessage(id);
      throw err;
    }
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Every queued message, oldest first (for `queue list`). */
  list(): QueueSummary[] {
    return [...this.#entries.values()]
      .map(({ env, run }) => ({
        id: env.id,
        created: env.created,
        size: env.size,
        sender: env.sender,
        held: env.held,
        running: run !== undefined,
        nextAttempt: env.nextAttempt,
        attempts: env.attempts,
        recipients: env.recipients
          .filter((r) => r.state === 'pending')
          .map((r) => ({ address: r.address, state: r.state, ...(r.lastError ? { lastError: r.lastError } : {}) })),
      }))
      .sort((a, b) => a.created - b.created);
  }

  /** Makes every message (or one) due now, as `postqueue -f` / `postqueue -i`. Returns how many. */
  flush(id?: string): number {
    let n = 0;
    const now = this.#now();
    for (const entry of this.#entries.values()) {
      if (id && entry.env.id !== id) continue;
      if (entry.env.held) continue;
      entry.env.nextAttempt = now;
      if (!entry.run) this.#due.push(now, entry.env.id);
      n++;
    }
    this.#schedule();
    return n;
  }

  /** Looks for due messages now (after the clock moved, in tests; the timer does it otherwise). */
  wake(): void {
    this.#schedule();
  }

  /** Resolves once no delivery round is running (tests). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#scheduled) await Promise.allSettled([...this.#running, new Promise((r) => setImmediate(r))]);
  }

  /** Holds or releases a message (postsuper -h / -H). Returns false when there is no such message. */
  async setHeld(id: string, held: boolean): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    entry.env.held = held;
    if (!held) {
      entry.env.nextAttempt = this.#now();
      if (!entry.run) this.#due.push(entry.env.nextAttempt, id);
    }
    await this.#persist(entry);
    this.#schedule();
    return true;
  }

  /** Deletes a message without notice (postsuper -d). Waits for a running attempt to end first. */
  async delete(id: string): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    entry.env.held = true; // no new round starts while we wait
    await entry.run;
    await entry.writes;
    this.#entries.delete(id);
    await this.#opts.spool.remove(id);
    this.#log.info({ qid: id }, 'removed by the administrator');
    return true;
  }

  /**
   * Stops starting transactions and waits for those in progress to finish and be recorded; after
   * `graceMs` the remote ones still running are cut off (their recipients stay queued).
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const cut = setTimeout(() => {
      if (this.#running.size === 0) return;
      this.#log.warn({ running: this.#running.size }, 'deliveries still running at the end of the shutdown time: cut off');
      this.#opts.remote.abort?.();
    }, graceMs);
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    clearTimeout(cut);
    await this.#opts.remote.close?.();
    await this.#opts.spool.close();
  }

  // --- scheduling --------------------------------------------------------------------------------

  #schedule(): void {
    if (!this.#started || this.#stopping || this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#runDue();
    });
  }

  #runDue(): void {
    if (this.#stopping) return;
    const now = this.#now();
    const settings = this.#opts.settings();
    this.#global.limit = settings.concurrency;
    for (let top = this.#due.peek(); top && top.at <= now; top = this.#due.peek()) {
      // Messages in progress are bounded by the transaction slots they wait for.
      if (this.#running.size >= settings.concurrency * 4) return this.#arm(now + 50);
      this.#due.pop();
      const entry = this.#entries.get(top.id);
      // Stale: gone, rescheduled meanwhile, held, or running (it is pushed again when it ends).
      if (!entry || entry.run || entry.env.held || entry.env.nextAttempt !== top.at) continue;
      this.#start(entry);
    }
    const next = this.#due.peek();
    if (next) this.#arm(next.at);
  }

  #arm(at: number): void {
    if (at === Infinity || this.#stopping) return;
    if (this.#timer && this.#timerAt <= at) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    // Timers are capped so a clock that is moved (tests, NTP steps) is noticed within a minute.
    const delay = Math.min(Math.max(0, at - this.#now()), 60_000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#runDue();
    }, delay);
    this.#timer.unref?.();
  }

  #start(entry: Entry): void {
    const run = this.#process(entry)
      .catch((err: unknown) => {
        // An unexpected error must not lose the message: it stays queued and is tried again later.
        this.#log.error({ qid: entry.env.id, err }, 'queue run failed');
        entry.env.nextAttempt = this.#now() + this.#opts.settings().retryMinMs;
      })
      .finally(() => {
        delete entry.run;
        this.#running.delete(run);
        if (this.#entries.has(entry.env.id)) this.#due.push(entry.env.nextAttempt, entry.env.id);
        this.#schedule();
      });
    entry.run = run;
    this.#running.add(run);
  }

  #persist(entry: Entry): Promise<void> {
    const write = entry.writes.then(() => this.#opts.spool.writeEnvelope(entry.env));
    entry.writes = write.catch(() => undefined);
    return write;
  }

  // --- one round of one message -----------------------------------------------------------------

  async #process(entry: Entry): Promise<void> {
    const env = entry.env;
    const settings = this.#opts.settings();
    const routed = await this.#expandLocal(entry);
    // Only final addresses are delivered; one whose expansion failed waits for the next round.
    const pending = env.recipients.filter((r) => r.state === 'pending' && r.expanded);
    if (pending.length > 0 && !this.#stopping) {
      // Group by next hop.
      const groups = new Map<string, { route: Route; recipients: SpooledRecipient[] }>();
      for (const r of pending) {
        let route = routed.get(r.address);
        if (!route) {
          try {
            route = await this.#opts.router.route(r.address);
          } catch (err) {
            this.#apply(env, r, routeFailure(r.address, err), 'none');
            continue;
          }
        }
        const key = route.kind === 'local' ? 'local' : route.key;
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { route, recipients: [] }));
        g.recipients.push(r);
      }
      const transactions: Array<Promise<boolean>> = [];
      for (const [key, g] of groups) {
        const chunk = g.route.kind === 'local' ? g.recipients.length : settings.recipientsPerTransaction;
        for (let i = 0; i < g.recipients.length; i += chunk) {
          transactions.push(this.#transaction(entry, key, g.route, g.recipients.slice(i, i + chunk)));
        }
      }
      const ran = await Promise.all(transactions);
      if (ran.includes(false)) {
        // Shutting down before every recipient was tried: the message stays due, as it was.
        await entry.writes;
        return;
      }
    }
    await this.#finishRound(entry);
  }

  /**
   * Replaces local recipients by their mailboxes and forwards (once, durably). Returns the routes
   * it found for remote recipients, so the round does not look them up again.
   */
  async #expandLocal(entry: Entry): Promise<Map<string, Route>> {
    const env = entry.env;
    const routed = new Map<string, Route>();
    let changed = false;
    const out: SpooledRecipient[] = [];
    const seen = new Set(env.recipients.filter((r) => r.expanded).map((r) => r.address.toLowerCase()));
    for (const r of env.recipients) {
      if (r.state !== 'pending' || r.expanded) {
        out.push(r);
        continue;
      }
      let route: Route;
      try {
        route = await this.#opts.router.route(r.address);
      } catch (err) {
        out.push(r);
        this.#apply(env, r, routeFailure(r.address, err), 'none');
        changed = true;
        continue;
      }
      if (route.kind !== 'local') {
        out.push({ ...r, expanded: true });
        routed.set(r.address, route);
        seen.add(r.address.toLowerCase());
        changed = true;
        continue;
      }
      try {
        const { mailboxes, remote } = await this.#opts.local.expand(r.address);
        changed = true;
        const original = r.original ?? r.address;
        for (const address of [...mailboxes, ...remote]) {
          if (seen.has(address.toLowerCase())) continue;
          seen.add(address.toLowerCase());
          // Each address an alias leads to carries the sender's DSN request (RFC 3461 section 6.2).
          out.push({
            address,
            ...(original.toLowerCase() !== address.toLowerCase() ? { original } : {}),
            ...(r.notify ? { notify: r.notify } : {}),
            ...(r.orcpt ? { orcpt: r.orcpt } : {}),
            state: 'pending',
            attempts: 0,
            expanded: true,
          });
        }
      } catch (err) {
        out.push(r);
        this.#apply(env, r, resultForError(r.address, err), 'local');
        changed = true;
      }
    }
    if (changed) {
      env.recipients = out;
      await this.#persist(entry);
    }
    return routed;
  }

  /** One transaction; false when it did not run because the queue is stopping. */
  async #transaction(entry: Entry, key: string, route: Route, recipients: SpooledRecipient[]): Promise<boolean> {
    const env = entry.env;
    let hopSlots = this.#perHop.get(key);
    if (!hopSlots)
      this.#perHop.set(key, (hopSlots = new Slots(route.kind === 'local' ? 1000 : this.#opts.settings().destinationConcurrency)));
    await this.#global.acquire();
    await hopSlots.acquire();
    try {
      if (this.#stopping) return false;
      const spool = this.#opts.spool;
      const addresses = recipients.map((r) => r.address);
      let results: RecipientResult[];
      if (route.kind === 'local') {
        results = await this.#opts.local.deliver(
          {
            queueId: env.id,
            sender: env.sender,
            prepend: env.prepend,
            size: env.size,
            ...(env.folder ? { folder: env.folder } : {}),
            ...(env.scores ? { scores: env.scores } : {}),
          },
          addresses,
          () => spool.openMessage(env.id),
        );
      } else {
        results = await this.#opts.remote.deliver(route.hop, {
          queueId: env.id,
          sender: env.sender,
          recipients: addresses,
          open: (): Readable => spool.open(env),
          size: env.size + Buffer.byteLength(env.prepend),
          eightBit: env.eightBit,
        });
      }
      const relay = route.kind === 'local' ? 'local' : key;
      recipients.forEach((r, i) => this.#apply(env, r, results[i] ?? resultForError(r.address, new Error('no result')), relay));
      // Recorded before anything else happens: a restart must not send these again. When every
      // recipient has been delivered, removing the envelope (next, in #finishRound) is the record.
      if (!env.recipients.every((r) => r.state === 'sent')) await this.#persist(entry);
      return true;
    } finally {
      hopSlots.release();
      this.#global.release();
      if (hopSlots.idle) this.#perHop.delete(key);
    }
  }

  #apply(env: Envelope, r: SpooledRecipient, res: RecipientResult, relay: string): void {
    const now = this.#now();
    r.attempts++;
    r.lastAttempt = now;
    r.status = res.enhanced;
    const reply = oneLine(resultLine(res), 500);
    if (res.remoteMta) r.remoteMta = oneLine(res.remoteMta, 255);
    if (res.status === 'sent') {
      r.state = 'sent';
      r.deliveredBy = relay === 'local' ? 'local' : 'remote';
      delete r.lastError;
    } else {
      r.lastError = reply;
      if (res.status === 'failed') r.state = 'failed';
    }
    this.#log.info(
      {
        qid: env.id,
        from: env.sender,
        to: r.address,
        ...(r.original ? { orig_to: r.original } : {}),
        relay: res.remoteMta ?? relay,
        delay: now - env.created,
        status: res.status === 'sent' ? 'sent' : res.status === 'failed' ? 'bounced' : 'deferred',
        reply,
      },
      res.status === 'sent' ? 'delivered' : 'delivery failed',
    );
  }

  /** After a round: expiry, notifications, the next retry, or removal. */
  async #finishRound(entry: Entry): Promise<void> {
    const env = entry.env;
    const s = this.#opts.settings();
    const now = this.#now();
    env.attempts++;
    const pending = env.recipients.filter((r) => r.state === 'pending');
    if (pending.length > 0 && now - env.created >= s.maxLifetimeMs) {
      for (const r of pending) {
        r.state = 'failed';
        const days = Math.round((now - env.created) / 86_400_000);
        r.lastError = oneLine(
          `${r.lastError ?? '451 4.4.7 not delivered'} (gave up after ${days > 0 ? `${days} days` : `${Math.round((now - env.created) / 1000)} s`})`,
          500,
        );
        r.status = r.status?.startsWith('4') ? r.status : '4.4.7';
        this.#log.info({ qid: env.id, from: env.sender, to: r.address, status: 'expired', reply: r.lastError }, 'message expired');
      }
    }
    // RFC 3461 section 4.1: a recipient without NOTIFY gets failure and delay reports; NOTIFY
    // says which of failure, delay and success reports it wants, NEVER none.
    const wants = (r: SpooledRecipient, what: 'FAILURE' | 'DELAY' | 'SUCCESS') => (r.notify ? r.notify.includes(what) : what !== 'SUCCESS');
    const failed = env.recipients.filter((r) => r.state === 'failed' && !r.notified);
    const delivered = env.recipients.filter((r) => r.state === 'sent' && !r.notified && wants(r, 'SUCCESS'));
    if (failed.some((r) => wants(r, 'FAILURE')))
      await this.#notify(
        env,
        failed.filter((r) => wants(r, 'FAILURE')),
        'failure',
      );
    if (delivered.length > 0) await this.#notify(env, delivered, 'success');
    for (const r of [...failed, ...delivered]) r.notified = true;
    const stillPending = env.recipients.filter((r) => r.state === 'pending');
    if (stillPending.length === 0) {
      await entry.writes;
      this.#entries.delete(env.id);
      await this.#opts.spool.remove(env.id);
      this.#log.info({ qid: env.id }, 'removed');
      return;
    }
    if (s.delayWarningMs > 0 && !env.warned && now - env.created >= s.delayWarningMs) {
      const waiting = stillPending.filter((r) => wants(r, 'DELAY'));
      if (waiting.length > 0) await this.#notify(env, waiting, 'delay');
      env.warned = true;
    }
    const backoff = Math.min(s.retryMaxMs, s.retryMinMs * 2 ** Math.min(env.attempts - 1, 30));
    env.nextAttempt = now + backoff;
    await this.#persist(entry);
  }

  /** Queues a DSN to the sender; never for the null sender, so never a bounce of a bounce. */
  async #notify(env: Envelope, recipients: SpooledRecipient[], kind: 'failure' | 'delay' | 'success'): Promise<void> {
    if (env.sender === '' || env.origin === 'bounce') {
      this.#log.info({ qid: env.id, recipients: recipients.length, kind }, 'no notice: null sender');
      return;
    }
    const s = this.#opts.settings();
    let original: Buffer;
    try {
      original = headerBlock(await this.#opts.spool.readHead(env.id, BOUNCE_HEADER_LIMIT));
    } catch {
      original = Buffer.alloc(0);
    }
    const prepend = Buffer.from(env.prepend);
    // RET=FULL: the whole message comes back with a failure report (up to 1 MiB, else its headers).
    let full: Buffer | undefined;
    if (kind === 'failure' && env.dsn?.ret === 'FULL' && env.size <= 1024 * 1024) {
      full = await this.#opts.spool.readHead(env.id, env.size).catch(() => undefined);
    }
    const action = (r: SpooledRecipient): DsnRecipient['action'] =>
      kind === 'failure' ? 'failed' : kind === 'delay' ? 'delayed' : r.deliveredBy === 'local' ? 'delivered' : 'relayed';
    const dsnRecipients: DsnRecipient[] = recipients.map((r) => {
      const remote = r.remoteMta ? /^([^[\s]+)/.exec(r.remoteMta)?.[1] : undefined;
      return {
        address: r.address,
        ...(r.original ? { original: r.original } : {}),
        ...(r.orcpt ? { orcpt: r.orcpt } : {}),
        action: action(r),
        status: r.status ?? (kind === 'failure' ? '5.0.0' : kind === 'delay' ? '4.0.0' : '2.0.0'),
        ...(r.lastError && kind !== 'success' ? { diagnostic: `smtp; ${r.lastError}` } : {}),
        ...(remote ? { remoteMta: remote } : {}),
        ...(r.lastAttempt ? { lastAttempt: new Date(r.lastAttempt) } : {}),
        ...(kind === 'delay' ? { willRetryUntil: new Date(env.created + s.maxLifetimeMs) } : {}),
      };
    });
    const message = buildDsn({
      reportingMta: s.hostname,
      queueId: env.id,
      originalSender: env.sender,
      arrivalDate: new Date(env.created),
      recipients: dsnRecipients,
      originalHeaders: Buffer.concat([prepend, original]),
      ...(full ? { originalMessage: Buffer.concat([prepend, full]) } : {}),
      ...(env.dsn?.envid ? { envid: env.dsn.envid } : {}),
      kind,
      now: new Date(this.#now()),
    });
    try {
      const { queueId } = await this.enqueue({
        sender: '',
        recipients: [{ address: env.sender }],
        message,
        maxBytes: Number.MAX_SAFE_INTEGER,
        origin: 'bounce',
      });
      this.#log.info(
        { qid: env.id, notice: queueId, kind, to: env.sender },
        kind === 'failure'
          ? 'sender non-delivery notification'
          : kind === 'delay'
            ? 'sender delay notification'
            : 'sender delivery notification',
      );
    } catch (err) {
      // Could not queue the notice (disk full): keep the recipients unreported and try next round.
      this.#log.error({ qid: env.id, err: (err as Error).message }, 'could not queue the notification');
      throw err;
    }
  }
}
