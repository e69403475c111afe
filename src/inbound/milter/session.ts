/**
 * One milter, one message: the conversation Postfix's milter8.c holds with a milter, replayed
 * after DATA from the received file. OPTNEG (version 6, the actions and protocol steps offered;
 * the milter's NO* and NR_* flags and macro lists honoured), then CONNECT, HELO, MAIL, RCPT per
 * recipient, DATA, each HEADER, EOH, BODY chunks, end of message, and QUIT. Each event is
 * preceded by its macros (SMFIC_MACRO). Returns the milter's verdict and the edits it asked for;
 * any failure (unreachable, timeout, malformed or unexpected reply) is thrown as a typed error
 * for the caller to turn into the default action.
 */
import { isIP } from 'node:net';
import type { InboundEnvelope } from '../types.js';
import {
  encodeConnect,
  encodeFrame,
  encodeMacros,
  encodeOptneg,
  encodeStrings,
  MilterProtocolError,
  type MilterReply,
  type SmtpReply,
} from './codec.js';
import { MilterConnection, parseMilterAddress } from './connection.js';
import { Action, Cmd, MacroStage, MILTER_VERSION, OFFERED_ACTIONS, OFFERED_PROTOCOL, Proto, STAGE_COMMAND } from './constants.js';
import type { MilterEdit } from './edits.js';
import { DEFAULT_MACROS, macroPairs, type MacroContext } from './macros.js';
import { bodyChunks, headerValueForMilter, readHeaders } from './message.js';

/** Bounds on what one milter may send about one message (each reply also restarts the timer). */
export const LIMITS = {
  /** SMFIR_PROGRESS replies to one event. */
  progress: 1000,
  /** Modification requests at end of message. */
  edits: 10_000,
  /** Bytes of SMFIR_REPLBODY. */
  replacementBody: 256 * 1024 * 1024,
};

export interface MilterTimeouts {
  connect: number;
  command: number;
  content: number;
}

/** How a milter's conversation about one message ended. */
export type MilterVerdict =
  /** Accepted (SMFIR_ACCEPT, or CONTINUE at the end), with the edits it asked for. */
  | { kind: 'accept'; edits: MilterEdit[]; quarantine?: string; refusedRecipients: RefusedRecipient[]; complete: boolean }
  | { kind: 'discard'; refusedRecipients: RefusedRecipient[]; stage: string }
  /** REJECT, TEMPFAIL or REPLYCODE; reply is the milter's own when it sent one. */
  | { kind: 'reject' | 'tempfail'; reply?: SmtpReply; stage: string; refusedRecipients: RefusedRecipient[] };

/** A recipient a milter refused at RCPT (Postfix refuses just that one). */
export interface RefusedRecipient {
  recipient: string;
  kind: 'reject' | 'tempfail';
  reply?: SmtpReply;
}

export interface MilterSessionInput {
  address: string;
  timeouts: MilterTimeouts;
  file: string;
  envelope: InboundEnvelope;
  daemonName: string;
}

/** Stops the conversation: the milter's decision for the whole message. */
class Decided {
  constructor(readonly verdict: MilterVerdict) {}
}

const NR_FOR: Record<string, number> = {
  [Cmd.CONNECT]: Proto.NR_CONN,
  [Cmd.HELO]: Proto.NR_HELO,
  [Cmd.MAIL]: Proto.NR_MAIL,
  [Cmd.RCPT]: Proto.NR_RCPT,
  [Cmd.DATA]: Proto.NR_DATA,
  [Cmd.HEADER]: Proto.NR_HDR,
  [Cmd.EOH]: Proto.NR_EOH,
  [Cmd.BODY]: Proto.NR_BODY,
};

/** The edits each action flag allows (SMFIF_*); one the milter did not negotiate is refused. */
const ACTION_FOR: Record<string, number> = {
  addheader: Action.ADDHDRS,
  insheader: Action.ADDHDRS,
  chgheader: Action.CHGHDRS,
  replbody: Action.CHGBODY,
  addrcpt: Action.ADDRCPT,
  delrcpt: Action.DELRCPT,
  chgfrom: Action.CHGFROM,
  quarantine: Action.QUARANTINE,
};

export async function runMilterSession(input: MilterSessionInput): Promise<MilterVerdict> {
  const endpoint = parseMilterAddress(input.address);
  const conn = await MilterConnection.connect(endpoint, input.timeouts.connect);
  let goodbye: Buffer | undefined;
  try {
    const verdict = await converse(conn, input);
    // A decision before end of message leaves the milter inside a message: ABORT it, then QUIT.
    const early = verdict.kind === 'accept' ? !verdict.complete : verdict.stage !== 'eom';
    goodbye = early ? Buffer.concat([encodeFrame(Cmd.ABORT), encodeFrame(Cmd.QUIT)]) : encodeFrame(Cmd.QUIT);
    return verdict;
  } finally {
    // After a failure the connection is in no state for more commands: it is just closed.
    conn.close(goodbye);
  }
}

async function converse(conn: MilterConnection, input: MilterSessionInput): Promise<MilterVerdict> {
  const { timeouts, envelope } = input;
  const refusedRecipients: RefusedRecipient[] = [];

  await conn.send(encodeOptneg(MILTER_VERSION, OFFERED_ACTIONS, OFFERED_PROTOCOL), timeouts.command);
  const neg = await conn.reply(timeouts.command);
  if (neg.type !== 'optneg') throw new MilterProtocolError('UNEXPECTED_REPLY', `expected OPTNEG, got ${neg.type}`);
  // milter8.c: a newer protocol or actions we do not offer end the conversation.
  if (neg.version < 2 || neg.version > MILTER_VERSION) throw new MilterProtocolError('BAD_REPLY', `milter protocol version ${neg.version}`);
  if ((neg.actions & OFFERED_ACTIONS) !== neg.actions)
    throw new MilterProtocolError('BAD_REPLY', `milter wants actions 0x${neg.actions.toString(16)}`);
  // milter8.c sends no event an older protocol lacks: SMFIC_DATA came with version 4.
  const flags = neg.protocol | (neg.version < 4 ? Proto.NODATA : 0);
  const macroLists = { ...DEFAULT_MACROS };
  for (const [stage, names] of neg.macros) macroLists[stage] = names;
  const leadingSpace = (flags & Proto.HDR_LEADSPC) !== 0;

  const macroCtx: MacroContext = { envelope, daemonName: input.daemonName };

  /** Sends an event (unless the milter switched it off) and returns its reply (undefined: none expected). */
  const event = async (
    command: string,
    packet: Buffer,
    off: number,
    stage: MacroStage | undefined,
    timeout: number,
  ): Promise<MilterReply | undefined> => {
    if (flags & off) return undefined;
    if (stage !== undefined) {
      const pairs = macroPairs(macroLists[stage], macroCtx);
      if (pairs.length) await conn.send(encodeMacros(STAGE_COMMAND[stage], pairs), timeout);
    }
    await conn.send(packet, timeout);
    if (flags & (NR_FOR[command] ?? 0)) return undefined;
    for (let progress = 0; ; progress++) {
      const reply = await conn.reply(timeout);
      if (reply.type !== 'progress') return reply; // SMFIR_PROGRESS: keep waiting, the timer restarts
      if (progress >= LIMITS.progress) throw new MilterProtocolError('LIMIT_EXCEEDED', `more than ${LIMITS.progress} progress replies`);
    }
  };

  /** The reply to an event before end of message: continue, or a decision that ends it all. */
  const decide = (reply: MilterReply | undefined, stage: string): void => {
    if (reply === undefined) return;
    switch (reply.type) {
      case 'continue':
      case 'skip':
        return;
      case 'accept':
        throw new Decided({ kind: 'accept', edits: [], refusedRecipients, complete: false });
      case 'discard':
        throw new Decided({ kind: 'discard', refusedRecipients, stage });
      case 'reject':
      case 'tempfail':
        throw new Decided({ kind: reply.type, stage, refusedRecipients });
      case 'replycode':
        throw new Decided({ kind: reply.reply.code >= 500 ? 'reject' : 'tempfail', reply: reply.reply, stage, refusedRecipients });
      case 'shutdown':
      case 'connfail':
        // milter8.c: "421 4.7.0 Server closing connection".
        throw new Decided({
          kind: 'tempfail',
          reply: { code: 421, enhanced: '4.7.0', text: 'Server closing connection' },
          stage,
          refusedRecipients,
        });
      default:
        throw new MilterProtocolError('UNEXPECTED_REPLY', `milter reply ${reply.type} at ${stage}`);
    }
  };

  try {
    // CONNECT: host name ("[addr]" when unknown, as milter8.c does), family, port, address.
    const ip = envelope.clientIp;
    const family = isIP(ip) === 4 ? '4' : isIP(ip) === 6 ? '6' : 'U';
    const hostname = envelope.clientHostname ?? (ip ? `[${ip}]` : 'localhost');
    decide(
      await event(
        Cmd.CONNECT,
        encodeConnect(hostname, family, envelope.clientPort ?? 0, ip),
        Proto.NOCONNECT,
        MacroStage.CONNECT,
        timeouts.command,
      ),
      'connect',
    );
    decide(await event(Cmd.HELO, encodeStrings(Cmd.HELO, [envelope.helo]), Proto.NOHELO, MacroStage.HELO, timeouts.command), 'helo');
    decide(
      await event(Cmd.MAIL, encodeStrings(Cmd.MAIL, [`<${envelope.sender}>`]), Proto.NOMAIL, MacroStage.ENVFROM, timeouts.command),
      'mail',
    );

    let accepted = 0;
    for (const recipient of envelope.recipients) {
      macroCtx.recipient = recipient;
      const reply = await event(Cmd.RCPT, encodeStrings(Cmd.RCPT, [`<${recipient}>`]), Proto.NORCPT, MacroStage.ENVRCPT, timeouts.command);
      // A refusal at RCPT refuses that recipient only (milter8.c / smtpd).
      if (reply?.type === 'reject' || reply?.type === 'tempfail') refusedRecipients.push({ recipient, kind: reply.type });
      else if (reply?.type === 'replycode')
        refusedRecipients.push({ recipient, kind: reply.reply.code >= 500 ? 'reject' : 'tempfail', reply: reply.reply });
      else {
        decide(reply, 'rcpt');
        accepted++;
      }
    }
    macroCtx.recipient = undefined;
    if (envelope.recipients.length > 0 && accepted === 0) {
      const last = refusedRecipients[refusedRecipients.length - 1]!;
      throw new Decided({ kind: last.kind, reply: last.reply, stage: 'rcpt', refusedRecipients });
    }

    decide(await event(Cmd.DATA, encodeFrame(Cmd.DATA), Proto.NODATA, MacroStage.DATA, timeouts.command), 'data');

    const parsed = await readHeaders(input.file);
    for (const field of parsed.headers) {
      const packet = encodeStrings(Cmd.HEADER, [field.name, headerValueForMilter(field, leadingSpace)]);
      decide(await event(Cmd.HEADER, packet, Proto.NOHDRS, undefined, timeouts.content), 'header');
    }
    decide(await event(Cmd.EOH, encodeFrame(Cmd.EOH), Proto.NOEOH, MacroStage.EOH, timeouts.content), 'eoh');

    if (!(flags & Proto.NOBODY)) {
      for await (const chunk of bodyChunks(input.file, parsed.bodyOffset)) {
        const reply = await event(Cmd.BODY, encodeFrame(Cmd.BODY, chunk), 0, undefined, timeouts.content);
        if (reply?.type === 'skip') break; // SMFIR_SKIP: no more body wanted
        decide(reply, 'body');
      }
    }

    return await endOfMessage(conn, neg.actions, leadingSpace, macroLists[MacroStage.EOM], macroCtx, timeouts.content, refusedRecipients);
  } catch (err) {
    if (err instanceof Decided) return err.verdict;
    throw err;
  }
}

/** End of message: modification requests until the final reply (milter8.c's SMFIC_BODYEOB loop). */
async function endOfMessage(
  conn: MilterConnection,
  negotiated: number,
  leadingSpace: boolean,
  macroList: string,
  macroCtx: MacroContext,
  timeout: number,
  refusedRecipients: RefusedRecipient[],
): Promise<MilterVerdict> {
  const pairs = macroPairs(macroList, macroCtx);
  if (pairs.length) await conn.send(encodeMacros(Cmd.BODYEOB, pairs), timeout);
  await conn.send(encodeFrame(Cmd.BODYEOB), timeout);
  const edits: MilterEdit[] = [];
  let quarantine: string | undefined;
  // The value after the colon as written: Sendmail's convention drops one space (milter8.c MILTER8_HDR_SPACE).
  const asWritten = (value: string) => (leadingSpace || value === '' ? value : ' ' + value);
  let progress = 0;
  let bodyBytes = 0;
  for (;;) {
    const reply = await conn.reply(timeout);
    if (edits.length >= LIMITS.edits || progress >= LIMITS.progress || bodyBytes > LIMITS.replacementBody) {
      throw new MilterProtocolError(
        'LIMIT_EXCEEDED',
        `milter sent too much at end of message (${edits.length} edits, ${progress} progress replies, ${bodyBytes} body bytes)`,
      );
    }
    const needs = ACTION_FOR[reply.type];
    if (needs !== undefined && !(negotiated & needs)) {
      throw new MilterProtocolError('UNEXPECTED_REPLY', `milter asked for ${reply.type} without negotiating it`);
    }
    switch (reply.type) {
      case 'progress':
        progress++;
        continue;
      case 'addheader':
        edits.push({ type: 'addheader', name: reply.name, value: asWritten(reply.value) });
        continue;
      case 'insheader':
      case 'chgheader':
        edits.push({ type: reply.type, index: reply.index, name: reply.name, value: asWritten(reply.value) });
        continue;
      case 'replbody':
        bodyBytes += reply.chunk.length;
        edits.push({ type: 'replbody', body: reply.chunk });
        continue;
      case 'addrcpt':
        if (reply.args !== undefined && !(negotiated & Action.ADDRCPT_PAR)) {
          throw new MilterProtocolError('UNEXPECTED_REPLY', 'milter added a recipient with parameters without negotiating it');
        }
        edits.push({ type: 'addrcpt', recipient: reply.recipient, args: reply.args });
        continue;
      case 'delrcpt':
        edits.push({ type: 'delrcpt', recipient: reply.recipient });
        continue;
      case 'chgfrom':
        edits.push({ type: 'chgfrom', sender: reply.sender, args: reply.args });
        continue;
      case 'quarantine':
        quarantine = reply.reason;
        continue;
      case 'accept':
      case 'continue':
        return { kind: 'accept', edits, quarantine, refusedRecipients, complete: true };
      case 'discard':
        return { kind: 'discard', refusedRecipients, stage: 'eom' };
      case 'reject':
      case 'tempfail':
        return { kind: reply.type, stage: 'eom', refusedRecipients };
      case 'replycode':
        return { kind: reply.reply.code >= 500 ? 'reject' : 'tempfail', reply: reply.reply, stage: 'eom', refusedRecipients };
      case 'shutdown':
      case 'connfail':
        return {
          kind: 'tempfail',
          reply: { code: 421, enhanced: '4.7.0', text: 'Server closing connection' },
          stage: 'eom',
          refusedRecipients,
        };
      default:
        throw new MilterProtocolError('UNEXPECTED_REPLY', `milter reply ${reply.type} at end of message`);
    }
  }
}
