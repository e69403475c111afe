/**
 * editheader (RFC 5293) at delivery: the script's addheader and deleteheader actions applied to
 * the message, in their order. The fields the script did not touch keep their bytes and folding;
 * an added field takes the message's line ends (section 4: at the top, or with :last at the end
 * of the header). Which occurrence a deleteheader removes was decided by the interpreter, which
 * counted the fields as they were when the command ran.
 */
import type { SieveAction } from './types.js';

export type HeaderEdit = Extract<SieveAction, { type: 'addheader' | 'deleteheader' }>;

export function isHeaderEdit(action: SieveAction): action is HeaderEdit {
  return action.type === 'addheader' || action.type === 'deleteheader';
}

interface Field {
  /** The field name in lower case ('' for a line that is not a field). */
  name: string;
  bytes: Buffer;
}

/** The header fields (each with its continuation lines and line end) and the rest from the empty line on. */
function splitMessage(message: Buffer): { fields: Field[]; rest: Buffer; eol: string } {
  const firstLf = message.indexOf(0x0a);
  const eol = firstLf > 0 && message[firstLf - 1] === 0x0d ? '\r\n' : '\n';
  const fields: Field[] = [];
  let at = 0;
  while (at < message.length) {
    // An empty line ends the header (RFC 5322 section 2.1).
    if (message[at] === 0x0a || (message[at] === 0x0d && message[at + 1] === 0x0a)) break;
    let end = message.indexOf(0x0a, at);
    // Continuation lines start with white space (RFC 5322 section 2.2.3).
    while (end !== -1 && (message[end + 1] === 0x20 || message[end + 1] === 0x09)) end = message.indexOf(0x0a, end + 1);
    const stop = end === -1 ? message.length : end + 1;
    const bytes = message.subarray(at, stop);
    const colon = bytes.indexOf(0x3a);
    fields.push({ name: colon > 0 ? bytes.subarray(0, colon).toString('latin1').trim().toLowerCase() : '', bytes });
    at = stop;
  }
  return { fields, rest: message.subarray(at), eol };
}

export function applyHeaderEdits(message: Buffer, edits: readonly HeaderEdit[]): Buffer {
  if (edits.length === 0) return message;
  const { fields, rest, eol } = splitMessage(message);
  for (const edit of edits) {
    const name = edit.name.toLowerCase();
    if (edit.type === 'addheader') {
      // The interpreter folds a value of several lines with CRLF SP; the message's line ends here.
      const text = `${edit.name}: ${edit.value.replace(/\r?\n/g, eol)}${eol}`;
      const field = { name, bytes: Buffer.from(text, 'utf8') };
      if (edit.last) fields.push(field);
      else fields.unshift(field);
    } else if (edit.index === undefined) {
      for (let i = fields.length - 1; i >= 0; i--) if (fields[i]!.name === name) fields.splice(i, 1);
    } else {
      let seen = 0;
      const at = fields.findIndex((f) => f.name === name && ++seen === edit.index);
      if (at >= 0) fields.splice(at, 1);
    }
  }
  return Buffer.concat([...fields.map((f) => f.bytes), rest]);
}
