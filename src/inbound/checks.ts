/**
 * The inbound checks of the MX, in the order Postfix's setups run them: sender authentication
 * (SPF, DKIM, DMARC, ARC), then the milters and scanners the operator configured. The message
 * waits in a file (inbound.dir) meanwhile; it is acknowledged only after the verdict, once the
 * store or the queue has it durably. The strongest action wins: reject over tempfail over
 * discard over junk over accept; a reject or tempfail ends the checks.
 */
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { DNSResolver } from 'mailauth';
import type { Logger } from '../log.js';
import type { Status } from '../status.js';
import { decideAuthentication, findAuthentication, type ArcSealKey, type AuthenticationSettings } from './authenticate.js';
import { composeMessage, materialize, openHeld, receiveMessage, type HeldMessage } from './message-file.js';
import { runScanners, type ScannersConfig } from './scanners/index.js';
import { runMilters, type MilterConfig } from './milter/index.js';
import { Dnsbl, type DnsblConfig, type DnsblResolver, type DnsblSubject } from './dnsbl.js';
import type { CheckResult, HeaderField, InboundAction, InboundEnvelope, SpamScores } from './types.js';

export interface InboundSettings {
  dir: string;
  authentication: AuthenticationSettings & { enabled: boolean; arcSeal: boolean };
  dnsbl: DnsblConfig;
  scanners: ScannersConfig;
  milters: MilterConfig[];
}

export interface InboundVerdict {
  action: InboundAction;
  status?: Status;
  /** Fields on top of the delivered message, in order. */
  addHeaders: HeaderField[];
  /** What each check found, for the delivery's log line. */
  log: Record<string, unknown>;
  /** Fields to remove from the message as received: [name, n-th or 0 for all] (rspamd asks for X-Spam). */
  removeHeaders: Array<[name: string, index: number]>;
  /** The message to deliver: the received one, or the milters' edited copy. */
  message: HeldMessage;
  /** The envelope when milters changed it (sender, recipients): delivered through the queue then. */
  envelope?: { sender: string; recipients: string[] };
  /** Files the checks wrote (edited copies), removed with the message. */
  files: string[];
  /** The scanners' findings on RFC 5235's scales (Sieve spamtest/virustest); the highest of each. */
  scores: SpamScores;
}

export interface InboundChecksOptions {
  settings: () => InboundSettings;
  resolver: DNSResolver;
  /** The blocklists' lookups (the same resolver, with its cache). */
  dns: DnsblResolver;
  /** The key that seals a message an alias forwards (our DKIM key for that domain). */
  sealKey?: (domain: string) => Promise<ArcSealKey | undefined>;
  logger: Logger;
}

const STRENGTH: Record<InboundAction, number> = { accept: 0, junk: 1, discard: 2, tempfail: 3, reject: 4 };

export class InboundChecks {
  readonly #opts: InboundChecksOptions;
  #dnsbl: { config: DnsblConfig; lists: Dnsbl } | undefined;

  constructor(opts: InboundChecksOptions) {
    this.#opts = opts;
  }

  /** Is any check after DATA on (otherwise the MX streams messages straight into the store, as before)? */
  get enabled(): boolean {
    const s = this.#opts.settings();
    return s.authentication.enabled || s.milters.length > 0 || Boolean(s.scanners.rspamd || s.scanners.spamd || s.scanners.clamd);
  }

  /** Are blocklists configured (consulted at RCPT time)? */
  get blocklists(): boolean {
    return this.#opts.settings().dnsbl.lists.length > 0;
  }

  /**
   * The blocklists' verdict on a client and sender: reject with the list's text, or accept
   * (allowlisted: no blocklist counts). A list that cannot be asked is skipped, as Postfix does.
   */
  async checkClient(subject: DnsblSubject): Promise<CheckResult & { allowlisted?: string }> {
    const config = this.#opts.settings().dnsbl;
    if (this.#dnsbl?.config !== config) this.#dnsbl = { config, lists: new Dnsbl(config, this.#opts.dns, this.#opts.logger) };
    return this.#dnsbl.lists.check(subject);
  }

  get authservId(): string {
    return this.#opts.settings().authentication.authservId;
  }

  /** Creates the waiting directory and removes what a crash left there (never acknowledged). */
  async prepare(): Promise<void> {
    const dir = this.#opts.settings().dir;
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of await fs.readdir(dir)) await fs.unlink(`${dir}/${name}`).catch(() => undefined);
  }

  /** Receives the message, in memory or into the waiting directory (MESSAGE_TOO_BIG past maxBytes). */
  receive(input: Readable, queueId: string, maxBytes: number): Promise<HeldMessage> {
    return receiveMessage(input, this.#opts.settings().dir, queueId, maxBytes);
  }

  /**
   * Runs the checks on a received message. `forwardDomains`: domains of aliases that send this
   * message on to other servers; it is ARC-sealed for the first that has a key.
   */
  async check(message: HeldMessage, envelope: InboundEnvelope, opts: { forwardDomains?: string[] } = {}): Promise<InboundVerdict> {
    const settings = this.#opts.settings();
    const verdict: InboundVerdict = { action: 'accept', addHeaders: [], log: {}, removeHeaders: [], message, files: [], scores: {} };
    const apply = (result: CheckResult & { removeHeaders?: Array<[string, number]> }): boolean => {
      verdict.removeHeaders.push(...(result.removeHeaders ?? []));
      for (const kind of ['spam', 'virus'] as const) {
        const score = result.scores?.[kind];
        if (score !== undefined) verdict.scores[kind] = Math.max(score, verdict.scores[kind] ?? 0);
      }
      if (STRENGTH[result.action] > STRENGTH[verdict.action]) {
        verdict.action = result.action;
        if (result.status) verdict.status = result.status;
      }
      verdict.addHeaders.push(...(result.addHeaders ?? []));
      Object.assign(verdict.log, result.log ?? {});
      return result.action === 'reject' || result.action === 'tempfail' || result.action === 'discard';
    };
    if (settings.authentication.enabled) {
      const seal = settings.authentication.arcSeal ? await this.#sealKey(opts.forwardDomains ?? []) : undefined;
      try {
        const input = message.data ?? openHeld(message);
        const found = await findAuthentication(input, envelope, settings.authentication.authservId, this.#opts.resolver, seal);
        if (apply(decideAuthentication(found, envelope.clientIp, settings.authentication))) return verdict;
      } catch (err) {
        // A failure of the verifier itself is not a verdict: the sender tries again later.
        this.#opts.logger.error({ err, qid: envelope.queueId }, 'sender authentication failed to run');
        apply({
          action: 'tempfail',
          status: { code: 451, enhanced: '4.7.5', text: 'Sender authentication could not be checked; try again later' },
          log: { authentication: 'error' },
        });
        return verdict;
      }
    }
    let current = { held: message, envelope };
    if (settings.milters.length > 0) {
      // Milters and scanners read the message from a file (streamed to them).
      const file = await materialize(message, settings.dir, envelope.queueId);
      const result = await runMilters(settings.milters, { file, size: message.size, envelope }, { workDir: settings.dir });
      if (result.createdFile) verdict.files.push(result.createdFile);
      // A milter that refused a recipient at RCPT: after DATA there is no per-recipient refusal
      // left, so the whole message gets it (the sender retries or bounces; nothing is dropped unseen).
      const refused = result.refusedRecipients[0];
      if (refused && result.action !== 'reject' && result.action !== 'tempfail') {
        apply({
          action: refused.status.code >= 500 ? 'reject' : 'tempfail',
          status: refused.status,
          log: { milter_refused_rcpt: refused.recipient },
        });
        return verdict;
      }
      if (apply(result)) return verdict;
      const edited = result.message;
      current = { held: edited.file === file ? message : { file: edited.file, size: edited.size }, envelope: edited.envelope };
      verdict.message = current.held;
      const changed =
        edited.envelope.sender !== envelope.sender || edited.envelope.recipients.join('\n') !== envelope.recipients.join('\n');
      if (changed) verdict.envelope = { sender: edited.envelope.sender, recipients: edited.envelope.recipients };
    }
    const scanners = settings.scanners;
    if (scanners.rspamd || scanners.spamd || scanners.clamd) {
      const file = await materialize(current.held, settings.dir, envelope.queueId);
      const results = await runScanners(
        scanners,
        { file, size: current.held.size, envelope: current.envelope },
        this.#opts.logger.child({ qid: envelope.queueId }),
      );
      for (const result of results) if (apply(result)) break;
    }
    return verdict;
  }

  /** The message to deliver: the verdict's fields on top, forged Authentication-Results of ours removed. */
  async compose(verdict: InboundVerdict): Promise<Readable> {
    const { stream, removed } = await composeMessage(verdict.message, verdict.addHeaders, this.authservId, verdict.removeHeaders);
    if (removed > 0) verdict.log.headers_removed = removed;
    return stream;
  }

  /** Removes the waiting file, if the message has one, and the checks' copies (after delivery, or a refusal). */
  async release(message: HeldMessage, verdict?: InboundVerdict): Promise<void> {
    for (const file of [message.file, ...(verdict?.files ?? [])]) if (file) await fs.unlink(file).catch(() => undefined);
  }

  async #sealKey(domains: string[]): Promise<ArcSealKey | undefined> {
    if (!this.#opts.sealKey) return undefined;
    for (const domain of domains) {
      const key = await this.#opts.sealKey(domain).catch(() => undefined);
      if (key) return key;
    }
    return undefined;
  }
}
