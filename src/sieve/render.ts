/**
 * Actions rendered as Pigeonhole's sieve-test prints them ("Performed actions:" and "Implicit
 * keep:"), for `maild sieve test` and the differential test against sieve-test.
 */
import type { SieveAction, SieveResult } from './types.js';

/** Pigeonhole's vacation defaults (sieve_vacation_min_period 1d, no max_period, default 7d). */
export const VACATION_PERIOD = { min: 86400, max: Infinity, default: 7 * 86400 };

/** Order in which Pigeonhole prints the system flags; \\Recent cannot be set (RFC 3501 2.3.2). */
const SYSTEM_FLAGS = ['\\flagged', '\\answered', '\\deleted', '\\seen', '\\draft'];

/** Flags as Pigeonhole lists them: system flags (lower case, fixed order) first, then keywords. */
function renderFlags(flags: string[]): string {
  const lower = new Set(flags.map((f) => f.toLowerCase()));
  const system = SYSTEM_FLAGS.filter((f) => lower.has(f));
  const keywords = flags.filter((f) => !f.startsWith('\\'));
  return [...system, ...keywords].join(' ');
}

/** Control characters shown as '?' (Pigeonhole's str_sanitize of the reason). */
const sanitize = (s: string): string => s.replace(/[\x00-\x1f\x7f]/g, '?');

function renderAction(a: SieveAction, defaultMailbox: string): string[] {
  switch (a.type) {
    case 'keep':
      return [
        ` * store message in folder: ${defaultMailbox}`,
        ...(a.flags?.length ? [`        + add IMAP flags: ${renderFlags(a.flags)}`] : []),
      ];
    case 'fileinto':
      return [
        ` * store message in folder: ${a.mailbox}`,
        ...(a.create ? ['        + create mailbox if it does not exist'] : []),
        ...(a.copy ? ['        + preserve implicit keep'] : []),
        ...(a.flags?.length ? [`        + add IMAP flags: ${renderFlags(a.flags)}`] : []),
      ];
    case 'redirect':
      return [` * redirect message to: <${a.address}>`, ...(a.copy ? ['        + preserve implicit keep'] : [])];
    case 'discard':
      return [' * discard'];
    case 'reject':
      return [` * reject message with reason: ${sanitize(a.reason)}`];
    case 'vacation': {
      const period = Math.min(VACATION_PERIOD.max, Math.max(VACATION_PERIOD.min, a.period ?? VACATION_PERIOD.default));
      const handle =
        a.handle ?? `${a.reason}${a.subject ?? '<default-subject>'}${a.from ?? '<default-from>'}${a.mime ? '<MIME>' : '<NO-MIME>'}`;
      return [
        ' * send vacation message:',
        `    => seconds : ${period}`,
        ...(a.subject !== undefined ? [`    => subject : ${a.subject}`] : []),
        ...(a.from !== undefined ? [`    => from    : ${a.from}`] : []),
        `    => handle  : ${handle}`,
        '',
        'START MESSAGE',
        a.reason,
        'END MESSAGE',
      ];
    }
    case 'duplicate':
      return [` * track ${a.last ? 'last ' : ''}duplicate${a.handle !== undefined ? ` with handle: ${a.handle}` : ''}`];
    // sieve-test does not list header changes
    case 'addheader':
    case 'deleteheader':
      return [];
  }
}

/** The text sieve-test prints on stdout for a result (line ends "\n"). */
export function renderSieveResult(result: SieveResult, defaultMailbox = 'INBOX'): string {
  const lines: string[] = [];
  if (result.error) {
    lines.push(`error: ${result.error}`, '', 'Implicit keep:', '', ` * store message in folder: ${defaultMailbox}`, '');
    return lines.join('\n');
  }
  let performed = result.actions.filter((a) => a.type !== 'addheader' && a.type !== 'deleteheader');
  let implicit: SieveAction[] = [];
  const last = performed[performed.length - 1];
  if (result.implicitKeep && last?.type === 'keep') {
    performed = performed.slice(0, -1);
    implicit = [last];
  }
  lines.push('', 'Performed actions:', '');
  if (performed.length === 0) lines.push('  (none)');
  for (const a of performed) lines.push(...renderAction(a, defaultMailbox));
  lines.push('', 'Implicit keep:', '');
  if (implicit.length === 0) lines.push('  (none)');
  for (const a of implicit) lines.push(...renderAction(a, defaultMailbox));
  lines.push('');
  return lines.join('\n').replace(/\r\n/g, '\n');
}
