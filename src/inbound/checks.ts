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
import { checkAuthentication, type ArcSealKey, type AuthenticationSettings } from './authenticate.js';
import { composeMessage, materialize, openHeld, receiveMessage, type HeldMessage } from './message-file.js';
import { runScanners, type ScannersConfig } from './scanners/index.js';
import { Dnsbl, type DnsblConfig, type DnsblResolver, type DnsblSubject } from './dnsbl.js';
import type { CheckResult, HeaderField, InboundAction, InboundEnvelope } from './types.js';

export interface InboundSettings {
  dir: string;
  authentication: AuthenticationSettings & { enabled: boolean; arcSeal: boolean };
  dnsbl: DnsblConfig;
  scanners: ScannersConfig;
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
    return s.authentication.enabled || Boolean(s.scanners.rspamd || s.scanners.spamd || s.scanners.clamd);
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
    const verdict: InboundVerdict = { action: 'accept', addHeaders: [], log: {}, removeHeaders: [] };
    const apply = (result: CheckResult & { removeHeaders?: Array<[string, number]> }): boolean => {
      verdict.removeHeaders.push(...(result.removeHeaders ?? []));
      if (STRENGTH[result.action] > STRENGTH[verdict.action]) {
        verdict.action = result.action;
        if (result.status) verdict.status = result.status;
      }
      verdict.addHeaders.push(...(result.addHeaders ?? []));
      Object.assign(verdict.log, result.log ?? {});
      return result.action === 'reject' || result.action === 'tempfail';
    };
    if (settings.authentication.enabled) {
      const seal = settings.authentication.arcSeal ? await this.#sealKey(opts.forwardDomains ?? []) : undefined;
      try {
        const input = message.data ?? openHeld(message);
        const result = await checkAuthentication(input, envelope, settings.authentication, this.#opts.resolver, seal ? { seal } : {});
        if (apply(result)) return verdict;
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
    const scanners = settings.scanners;
    if (scanners.rspamd || scanners.spamd || scanners.clamd) {
      // The scanners read the message from a file (streamed to them).
      const file = await materialize(message, settings.dir, envelope.queueId);
      const results = await runScanners(
        scanners,
        { file, size: message.size, envelope },
        this.#opts.logger.child({ qid: envelope.queueId }),
      );
      for (const result of results) if (apply(result)) break;
    }
    return verdict;
  }

  /** The message to deliver: the verdict's fields on top, forged Authentication-Results of ours removed. */
  async compose(message: HeldMessage, verdict: InboundVerdict): Promise<Readable> {
    const { stream, removed } = await composeMessage(message, verdict.addHeaders, this.authservId, verdict.removeHeaders);
    if (removed > 0) verdict.log.headers_removed = removed;
    return stream;
  }

  /** Removes the waiting file, if the message has one (after delivery, or a refusal). */
  async release(message: HeldMessage): Promise<void> {
    if (message.file) await fs.unlink(message.file).catch(() => undefined);
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
