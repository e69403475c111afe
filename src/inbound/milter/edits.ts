/**
 * The modifications milters ask for at end of message (libmilter's smfi_addheader,
 * smfi_chgheader, smfi_insheader, smfi_replacebody, smfi_addrcpt(_par), smfi_delrcpt,
 * smfi_chgfrom), applied in the order they came, as Postfix's cleanup_milter.c applies them:
 * header and body edits produce a new message file, envelope edits a new sender and recipients.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { readHeaders, type HeaderField } from './message.js';

/**
 * Header values are the exact text after the colon (the session puts back the space Sendmail's
 * convention leaves out, unless the milter negotiated SMFIP_HDR_LEADSPC); folds may be bare LFs.
 * Header names and values are the milter's bytes, one char per byte (latin1), so that UTF-8 or
 * 8-bit text is written back unchanged.
 */
export type MilterEdit =
  | { type: 'addheader'; name: string; value: string }
  /** index: Sendmail's, 0 = the top; counted with the MTA's own Received: field (milter8.c). */
  | { type: 'insheader'; index: number; name: string; value: string }
  /** index: 1-based among the fields of that name; an empty value deletes the field. */
  | { type: 'chgheader'; index: number; name: string; value: string }
  | { type: 'replbody'; body: Buffer }
  | { type: 'addrcpt'; recipient: string; args?: string }
  | { type: 'delrcpt'; recipient: string }
  | { type: 'chgfrom'; sender: string; args?: string };

export interface EnvelopeChange {
  sender: string;
  recipients: string[];
  /** ESMTP parameters a milter gave with its new sender or recipients, for the log. */
  senderArgs?: string;
  recipientArgs?: Record<string, string>;
}

/** "<a@b>" -> "a@b"; a milter may send either form. */
export const bareAddress = (addr: string) => addr.trim().replace(/^<(.*)>$/, '$1');

/** A header field's bytes: "Name:value", folds as CRLF; names and values hold one char per byte (latin1). */
export function formatField(name: string, value: string): Buffer {
  return Buffer.from(`${name}:${value.replace(/\r?\n/g, '\r\n')}\r\n`, 'latin1');
}

/** Applies the header edits to a list of fields; returns the new list. */
export function applyHeaderEdits(fields: readonly HeaderField[], edits: readonly MilterEdit[]): HeaderField[] {
  const out = [...fields];
  for (const edit of edits) {
    if (edit.type === 'addheader') {
      out.push({ name: edit.name, raw: formatField(edit.name, edit.value) });
    } else if (edit.type === 'insheader') {
      // Our Received: goes on top after the checks, so index 0 and 1 are both the first field.
      const at = Math.min(Math.max(edit.index - 1, 0), out.length);
      out.splice(at, 0, { name: edit.name, raw: formatField(edit.name, edit.value) });
    } else if (edit.type === 'chgheader') {
      const wanted = edit.name.toLowerCase();
      const nth = Math.max(edit.index, 1);
      let seen = 0;
      const at = out.findIndex((f) => f.name.toLowerCase() === wanted && ++seen === nth);
      if (at === -1) {
        // Not there: Sendmail and Postfix add it (an empty value deletes nothing).
        if (edit.value !== '') out.push({ name: edit.name, raw: formatField(edit.name, edit.value) });
      } else if (edit.value === '') {
        out.splice(at, 1);
      } else {
        out[at] = { name: edit.name, raw: formatField(edit.name, edit.value) };
      }
    }
  }
  return out;
}

/** Applies the envelope edits to a sender and recipients. */
export function applyEnvelopeEdits(sender: string, recipients: readonly string[], edits: readonly MilterEdit[]): EnvelopeChange {
  const change: EnvelopeChange = { sender, recipients: [...recipients] };
  for (const edit of edits) {
    if (edit.type === 'chgfrom') {
      change.sender = bareAddress(edit.sender);
      if (edit.args) change.senderArgs = edit.args;
    } else if (edit.type === 'addrcpt') {
      const addr = bareAddress(edit.recipient);
      if (!change.recipients.some((r) => r.toLowerCase() === addr.toLowerCase())) change.recipients.push(addr);
      if (edit.args) (change.recipientArgs ??= {})[addr] = edit.args;
    } else if (edit.type === 'delrcpt') {
      const addr = bareAddress(edit.recipient).toLowerCase();
      change.recipients = change.recipients.filter((r) => r.toLowerCase() !== addr);
    }
  }
  return change;
}

/** The body replacement (the concatenated SMFIR_REPLBODY chunks, bare LFs made CRLF), if any. */
function replacementBody(edits: readonly MilterEdit[]): Buffer | undefined {
  const chunks = edits.filter((e) => e.type === 'replbody').map((e) => e.body);
  if (chunks.length === 0) return undefined;
  return Buffer.from(Buffer.concat(chunks).toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

/** True when the edits change the message content (so a new file is needed). */
export const changesContent = (edits: readonly MilterEdit[]) =>
  edits.some((e) => e.type === 'addheader' || e.type === 'insheader' || e.type === 'chgheader' || e.type === 'replbody');

/**
 * Writes the message in `file` with the header and body edits applied to `outFile` (CRLF), and
 * returns its size. The caller owns outFile (and removes it when done).
 */
export async function writeEditedMessage(file: string, edits: readonly MilterEdit[], outFile: string): Promise<number> {
  const parsed = await readHeaders(file);
  const headers = applyHeaderEdits(parsed.headers, edits);
  const body = replacementBody(edits);
  const out = createWriteStream(outFile);
  let size = 0;
  const write = async (bytes: Buffer) => {
    size += bytes.length;
    if (!out.write(bytes)) await once(out, 'drain');
  };
  try {
    for (const field of headers) await write(field.raw);
    await write(Buffer.from(parsed.separator || '\r\n', 'latin1'));
    if (body) {
      await write(body);
      out.end();
      await once(out, 'finish');
    } else {
      size += parsed.size - parsed.bodyOffset;
      await pipeline(createReadStream(file, { start: parsed.bodyOffset }), out);
    }
  } catch (err) {
    out.destroy();
    throw err;
  }
  return size;
}

/**
 * What the lead calls: applies a milter's edits to the message file, writing `outFile`, and
 * returns the envelope as changed (sender, recipients) and the new file's size.
 */
export async function applyMilterEdits(
  file: string,
  envelope: { sender: string; recipients: readonly string[] },
  edits: readonly MilterEdit[],
  outFile: string,
): Promise<{ envelope: EnvelopeChange; size: number }> {
  const size = await writeEditedMessage(file, edits, outFile);
  return { envelope: applyEnvelopeEdits(envelope.sender, envelope.recipients, edits), size };
}
