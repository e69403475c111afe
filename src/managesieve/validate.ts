/**
 * How a script is checked before PUTSCRIPT stores it and for CHECKSCRIPT (RFC 5804 sections
 * 2.6, 2.12). The session takes the check as a function so the Sieve interpreter's compiler
 * (src/sieve) can be plugged in; until then sizeOnlyValidator checks what it can without one.
 */
export type ScriptValidation = { ok: true; warnings?: string } | { ok: false; line: number; column: number; message: string };

/** Synchronous as the brief's contract; a compiler that answers later may return a promise. */
export type ScriptValidator = (script: string) => ScriptValidation | Promise<ScriptValidation>;

/**
 * The stand-in: the script's size in UTF-8 octets (the session has checked that the octets are
 * UTF-8 already) and no NUL characters, which no Sieve string or comment may hold (RFC 5228
 * section 2.4.2: scripts are UTF-8 text).
 */
export function sizeOnlyValidator(maxScriptSize: number): ScriptValidator {
  return (script) => {
    if (Buffer.byteLength(script) > maxScriptSize)
      return { ok: false, line: 1, column: 1, message: `script is larger than ${maxScriptSize} octets` };
    const nul = script.indexOf('\0');
    if (nul !== -1) {
      const before = script.slice(0, nul).split('\n');
      return { ok: false, line: before.length, column: before.at(-1)!.length + 1, message: 'NUL character in script' };
    }
    return { ok: true };
  };
}
