/**
 * The Sendmail macros sent before each event (SMFIC_MACRO), named and valued as Postfix's
 * MILTER_README "Macros" section describes them. The lists per stage are Postfix's defaults
 * (milter_connect_macros, milter_helo_macros, ...) plus {client_addr}, {client_name} and
 * {client_port} at connect; a milter may replace a list in its OPTNEG reply (protocol v6).
 */
import type { InboundEnvelope } from '../types.js';
import { MacroStage } from './constants.js';

export const DEFAULT_MACROS: Record<MacroStage, string> = {
  [MacroStage.CONNECT]: 'j {daemon_name} {daemon_addr} {daemon_port} v _ {client_addr} {client_name} {client_port} {client_ptr}',
  [MacroStage.HELO]: '{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}',
  [MacroStage.ENVFROM]: 'i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}',
  [MacroStage.ENVRCPT]: 'i {rcpt_addr} {rcpt_host} {rcpt_mailer}',
  [MacroStage.DATA]: 'i',
  [MacroStage.EOH]: 'i',
  [MacroStage.EOM]: 'i',
};

/** What the macros are computed from: the envelope, plus the recipient of the RCPT event. */
export interface MacroContext {
  envelope: InboundEnvelope;
  /** The daemon's name ({daemon_name}), e.g. "maild". */
  daemonName: string;
  /** The recipient being reported (ENVRCPT stage). */
  recipient?: string;
}

const domainOf = (addr: string) => (addr.includes('@') ? addr.slice(addr.lastIndexOf('@') + 1) : '');

/** The value of one macro, or undefined when it has none (Postfix then leaves it out). */
export function macroValue(name: string, ctx: MacroContext): string | undefined {
  const env = ctx.envelope;
  const clientName = env.clientHostname ?? (env.clientIp ? `[${env.clientIp}]` : 'localhost');
  switch (name.replace(/^\{(.*)\}$/, '$1')) {
    case 'j':
      return env.hostname;
    case 'daemon_name':
      return ctx.daemonName;
    case 'v':
      return 'maild';
    case '_':
      return `${env.clientHostname ?? 'unknown'} [${env.clientIp || '127.0.0.1'}]`;
    case 'client_addr':
      return env.clientIp || undefined;
    case 'client_name':
      return clientName;
    case 'client_ptr':
      return env.clientHostname ?? 'unknown';
    case 'client_port':
      return env.clientPort === undefined ? undefined : String(env.clientPort);
    case 'i':
      return env.queueId;
    case 'tls_version':
      return env.tls?.version;
    case 'cipher':
      return env.tls?.cipher;
    case 'mail_addr':
      return env.sender;
    case 'mail_host':
      return domainOf(env.sender) || undefined;
    case 'mail_mailer':
      return 'smtp';
    case 'rcpt_addr':
      return ctx.recipient;
    case 'rcpt_host':
      return ctx.recipient === undefined ? undefined : domainOf(ctx.recipient) || undefined;
    case 'rcpt_mailer':
      return ctx.recipient === undefined ? undefined : 'local';
    default:
      // {auth_*} (the MX takes no authentication), {cert_*}, {daemon_addr}, unknown names: absent.
      return undefined;
  }
}

/** The name/value pairs of a space- or comma-separated list, leaving out macros without a value. */
export function macroPairs(list: string, ctx: MacroContext): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const name of list.split(/[\s,]+/).filter(Boolean)) {
    const value = macroValue(name, ctx);
    if (value !== undefined) pairs.push([name, value]);
  }
  return pairs;
}
