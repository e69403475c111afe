/**
 * The milters of the MX, in configured order (Postfix's smtpd_milters = a, b): each sees the
 * message and envelope as the previous ones left them. A milter that cannot be reached, times
 * out or misbehaves counts as its default_action (tempfail unless configured otherwise), as
 * Postfix's milter_default_action does. The first reject, tempfail or discard ends the run.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { LOCAL_ERROR, type Status } from '../../status.js';
import type { CheckResult, InboundMessage } from '../types.js';
import type { MilterConfig } from './config.js';
import { applyEnvelopeEdits, changesContent, writeEditedMessage, type MilterEdit } from './edits.js';
import { runMilterSession, type MilterVerdict, type RefusedRecipient } from './session.js';
import type { SmtpReply } from './codec.js';

export { milterSchema, miltersSchema, type MilterConfig } from './config.js';
export { applyMilterEdits, type EnvelopeChange, type MilterEdit } from './edits.js';

/** Postfix's milter8.c replies for a bare REJECT and TEMPFAIL. */
export const MILTER_REJECT: Status = { code: 550, enhanced: '5.7.1', text: 'Command rejected' };
export const MILTER_TEMPFAIL: Status = { code: 451, enhanced: '4.7.1', text: 'Service unavailable - try again later' };

export interface MilterResult extends CheckResult {
  /**
   * The message as the milters left it: a new file when one changed headers or body (see
   * `createdFile`), the sender and recipients after their edits and refusals.
   */
  message: InboundMessage;
  /**
   * The file this run created for the edited message (the caller removes it once delivered);
   * undefined when the content is unchanged or the message was refused or discarded.
   */
  createdFile?: string;
  /** Each milter's edits as it asked for them (already applied to `message`). */
  edits: Array<{ milter: string; edits: MilterEdit[] }>;
  /** Recipients a milter refused at RCPT; they are no longer in message.envelope.recipients. */
  refusedRecipients: Array<{ milter: string; recipient: string; status: Status }>;
  /** SMFIR_QUARANTINE's reason when a milter asked for it (the action is then 'junk'). */
  quarantine?: string;
}

export interface RunMiltersOptions {
  /** {daemon_name}; Postfix sends its service name. */
  daemonName?: string;
  /** Where edited copies go; the message file's directory when absent. */
  workDir?: string;
}

const statusOf = (reply: SmtpReply | undefined, kind: 'reject' | 'tempfail'): Status =>
  reply ? { code: reply.code, enhanced: reply.enhanced, text: reply.text } : kind === 'reject' ? MILTER_REJECT : MILTER_TEMPFAIL;

const nameOf = (m: MilterConfig) => m.name ?? m.address;

/**
 * Runs the message through the milters in order and merges their verdicts: the first refusal,
 * failure (as its default_action) or discard ends the run; otherwise 'accept', or 'junk' when a
 * milter asked for quarantine. Never throws for a milter's fault.
 */
export async function runMilters(
  milters: readonly MilterConfig[],
  original: InboundMessage,
  options: RunMiltersOptions = {},
): Promise<MilterResult> {
  let message: InboundMessage = { ...original, envelope: { ...original.envelope, recipients: [...original.envelope.recipients] } };
  let createdFile: string | undefined;
  const result = async (r: Omit<MilterResult, 'message' | 'createdFile' | 'edits' | 'refusedRecipients'>): Promise<MilterResult> => {
    if (createdFile && r.action !== 'accept' && r.action !== 'junk') {
      // Refused or dropped: the edited copy is of no use to anyone.
      await rm(createdFile, { force: true });
      createdFile = undefined;
      message = { ...message, file: original.file, size: original.size };
    }
    return { ...r, message, createdFile, edits, refusedRecipients, log: { ...r.log, milters: log } };
  };
  const edits: MilterResult['edits'] = [];
  const refusedRecipients: MilterResult['refusedRecipients'] = [];
  const log: Array<Record<string, unknown>> = [];
  let quarantine: string | undefined;

  for (const [i, milter] of milters.entries()) {
    const name = nameOf(milter);
    let verdict: MilterVerdict;
    try {
      verdict = await runMilterSession({
        address: milter.address,
        timeouts: { connect: milter.connect_timeout, command: milter.command_timeout, content: milter.content_timeout },
        file: message.file,
        envelope: message.envelope,
        daemonName: options.daemonName ?? 'maild',
      });
    } catch (err) {
      const error = err instanceof Error ? `${err.name}${'code' in err ? ` ${String(err.code)}` : ''}: ${err.message}` : String(err);
      log.push({ milter: name, error, default_action: milter.default_action });
      if (milter.default_action === 'accept') continue;
      const kind = milter.default_action;
      return result({ action: kind, status: kind === 'reject' ? MILTER_REJECT : MILTER_TEMPFAIL });
    }

    for (const refused of verdict.refusedRecipients) noteRefused(name, refused);
    log.push({ milter: name, verdict: verdict.kind, ...('stage' in verdict ? { stage: verdict.stage } : {}) });
    const lastRefusal = refusedRecipients[refusedRecipients.length - 1];
    if (lastRefusal && message.envelope.recipients.length === 0) {
      // Milters between them refused every recipient: the message goes nowhere.
      return result({ action: lastRefusal.status.code >= 500 ? 'reject' : 'tempfail', status: lastRefusal.status });
    }
    if (verdict.kind === 'discard') return result({ action: 'discard' });
    if (verdict.kind !== 'accept') return result({ action: verdict.kind, status: statusOf(verdict.reply, verdict.kind) });

    if (verdict.quarantine !== undefined) quarantine = verdict.quarantine;
    if (verdict.edits.length) {
      edits.push({ milter: name, edits: verdict.edits });
      if (changesContent(verdict.edits)) {
        const dir = options.workDir ?? path.dirname(message.file);
        const next = path.join(dir, `${path.basename(original.file)}.milter${i + 1}`);
        let size: number;
        try {
          size = await writeEditedMessage(message.file, verdict.edits, next);
        } catch (err) {
          log.push({ milter: name, error: `writing the edited message: ${(err as Error).message}` });
          await rm(next, { force: true });
          return result({ action: 'tempfail', status: LOCAL_ERROR });
        }
        if (createdFile) await rm(createdFile, { force: true });
        createdFile = next;
        message = { ...message, file: next, size };
      }
      const env = applyEnvelopeEdits(message.envelope.sender, message.envelope.recipients, verdict.edits);
      message = { ...message, envelope: { ...message.envelope, sender: env.sender, recipients: env.recipients } };
    }
  }
  // SMFIR_QUARANTINE: Postfix holds the message; here it goes to the recipients' Junk folder.
  return result(quarantine === undefined ? { action: 'accept' } : { action: 'junk', quarantine, log: { milter_quarantine: quarantine } });

  function noteRefused(milter: string, refused: RefusedRecipient): void {
    refusedRecipients.push({ milter, recipient: refused.recipient, status: statusOf(refused.reply, refused.kind) });
    const addr = refused.recipient.toLowerCase();
    message = {
      ...message,
      envelope: { ...message.envelope, recipients: message.envelope.recipients.filter((r) => r.toLowerCase() !== addr) },
    };
  }
}
