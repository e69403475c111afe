/**
 * IMAP modified UTF-7 (RFC 3501 section 5.1.3), the encoding of mailbox names on the wire and of
 * Maildir++ folder names on disk (Dovecot 2.3 with the default mailbox_list_utf8 = no).
 *
 * The decoder is exactly as strict as Dovecot's (src/lib-imap/imap-utf7.c), which 2.3's IMAP
 * applies to every mailbox name a client sends ("Mailbox name is not valid mUTF-7"):
 * - only printable ASCII 0x20..0x7e may appear raw; '&' starts a shift, "&-" is '&';
 * - a shift must end with '-', contain only modified base64 (A-Z a-z 0-9 + ,) and decode to
 *   whole UTF-16 units with correctly paired surrogates;
 * - it must not encode printable ASCII or U+0000, and two shifts must not be adjacent ("&..-&..-");
 * - like Dovecot it ignores non-zero padding bits, so "&AOR-" decodes like "&AOQ-" (ä).
 * The encoder is canonical (Dovecot's imap_utf8_to_utf7): one shift per run of characters outside
 * 0x20..0x7e, so decode + encode maps every accepted spelling to the one Dovecot stores.
 * (The npm packages utf7 / emailjs-utf7 neither validate nor reject malformed input.)
 */

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,';
const B64_VALUE = new Map<string, number>([...B64].map((c, i) => [c, i]));

export type MUtf7Result = { ok: true; value: string } | { ok: false; reason: string };

/** Decodes modified UTF-7 to a JavaScript (UTF-16) string, or says why the input is not valid. */
export function decodeMUtf7Checked(input: string): MUtf7Result {
  let out = '';
  let i = 0;
  let afterShift = false; // the previous token was a non-empty shift
  while (i < input.length) {
    const c = input.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      return { ok: false, reason: c < 0x20 || c === 0x7f ? 'contains a control character' : 'contains an unencoded non-ASCII character' };
    }
    if (c !== 0x26 /* & */) {
      out += input[i];
      i++;
      afterShift = false;
      continue;
    }
    const end = input.indexOf('-', i + 1);
    if (end < 0) return { ok: false, reason: "an '&' is not closed by '-'" };
    if (end === i + 1) {
      out += '&';
      i = end + 1;
      afterShift = false;
      continue;
    }
    if (afterShift) return { ok: false, reason: 'two encoded runs are adjacent' };
    const run = decodeRun(input.slice(i + 1, end));
    if (!run.ok) return run;
    out += run.value;
    i = end + 1;
    afterShift = true;
  }
  return { ok: true, value: out };
}

function decodeRun(b64: string): MUtf7Result {
  if (b64.length % 4 === 1) return { ok: false, reason: 'bad base64 length in an encoded run' };
  const bytes: number[] = [];
  let bits = 0;
  let nbits = 0;
  for (const ch of b64) {
    const v = B64_VALUE.get(ch);
    if (v === undefined) return { ok: false, reason: `bad base64 character ${JSON.stringify(ch)} in an encoded run` };
    bits = ((bits << 6) | v) & 0xffffff;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      bytes.push((bits >> nbits) & 0xff);
    }
  }
  if (bytes.length % 2 !== 0) return { ok: false, reason: 'an encoded run ends in half a UTF-16 unit' };
  let out = '';
  for (let k = 0; k < bytes.length; k += 2) {
    const unit = (bytes[k]! << 8) | bytes[k + 1]!;
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const low = k + 3 < bytes.length ? (bytes[k + 2]! << 8) | bytes[k + 3]! : -1;
      if (low < 0xdc00 || low > 0xdfff) return { ok: false, reason: 'unpaired UTF-16 surrogate in an encoded run' };
      out += String.fromCharCode(unit, low);
      k += 2;
      continue;
    }
    if (unit >= 0xdc00 && unit <= 0xdfff) return { ok: false, reason: 'unpaired UTF-16 surrogate in an encoded run' };
    if (unit === 0) return { ok: false, reason: 'encodes a NUL character' };
    if (unit >= 0x20 && unit <= 0x7e) return { ok: false, reason: 'encodes printable ASCII that must appear as itself' };
    out += String.fromCharCode(unit);
  }
  return { ok: true, value: out };
}

/** Decodes modified UTF-7; throws a TypeError with the reason when the input is not valid. */
export function decodeMUtf7(input: string): string {
  const r = decodeMUtf7Checked(input);
  if (!r.ok) throw new TypeError(`not valid modified UTF-7 (${r.reason}): ${JSON.stringify(input)}`);
  return r.value;
}

/** True when Dovecot would accept the string as modified UTF-7. */
export function isValidMUtf7(input: string): boolean {
  return decodeMUtf7Checked(input).ok;
}

/**
 * Encodes a string canonically in modified UTF-7. Throws a TypeError for a lone UTF-16 surrogate
 * (not a character, so it has no UTF-8 form on disk either).
 */
export function encodeMUtf7(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) {
      out += c === 0x26 ? '&-' : text[i];
      i++;
      continue;
    }
    const bytes: number[] = [];
    while (i < text.length) {
      const u = text.charCodeAt(i);
      if (u >= 0x20 && u <= 0x7e) break;
      if (u >= 0xd800 && u <= 0xdbff) {
        const low = text.charCodeAt(i + 1);
        if (!(low >= 0xdc00 && low <= 0xdfff)) throw new TypeError('lone UTF-16 surrogate cannot be encoded');
        bytes.push(u >> 8, u & 0xff, low >> 8, low & 0xff);
        i += 2;
        continue;
      }
      if (u >= 0xdc00 && u <= 0xdfff) throw new TypeError('lone UTF-16 surrogate cannot be encoded');
      bytes.push(u >> 8, u & 0xff);
      i++;
    }
    out += '&' + encodeBase64(bytes) + '-';
  }
  return out;
}

function encodeBase64(bytes: number[]): string {
  let out = '';
  let k = 0;
  for (; k + 2 < bytes.length; k += 3) {
    const n = (bytes[k]! << 16) | (bytes[k + 1]! << 8) | bytes[k + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - k;
  if (rest === 1) {
    const n = bytes[k]! << 16;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[k]! << 16) | (bytes[k + 1]! << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]!;
  }
  return out;
}
