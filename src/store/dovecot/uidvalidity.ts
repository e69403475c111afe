/**
 * UIDVALIDITY of a new Maildir folder, chosen as Dovecot 2.3 chooses it
 * (src/lib-storage/mailbox-uidvalidity.c, used by maildir_uidlist_generate_uid_validity):
 *
 * The mail root holds "dovecot-uidvalidity" (8 lowercase hex digits, the last value given) and
 * an empty marker "dovecot-uidvalidity.<8 hex>" with the same value. The next value is the last
 * one + 1, claimed by renaming the marker to the new value (rename is atomic, so two processes
 * never get the same value). Without these files the first value is the current time (or the
 * last value given by this process + 1). So the fixture's folders have UIDVALIDITY
 * T, T+1, T+2, ... in the order they were created, not their creation times.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from './fsutil.js';

const UIDVALIDITY_NAME = 'dovecot-uidvalidity';
const RETRY_COUNT = 10;

let lastFallback = 0;

/** The current time in seconds, or one more than the last value this returned. */
function fallbackUidValidity(nowMs = Date.now()): number {
  const now = Math.floor(nowMs / 1000) >>> 0;
  lastFallback = lastFallback < now ? now : (lastFallback + 1) >>> 0;
  return lastFallback;
}

const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');

function parseHex32(s: string): number | null {
  const t = s.trim();
  return /^[0-9a-fA-F]{1,8}$/.test(t) ? parseInt(t, 16) : null;
}

/** Renames <file>.<value> to <file>.<value+1>, trying later values on a race; the value got, or null. */
async function claim(file: string, value: number): Promise<number | null> {
  for (let i = 0; i < RETRY_COUNT; i++) {
    const next = (value + 1) >>> 0;
    try {
      await fs.rename(`${file}.${hex8(value)}`, `${file}.${hex8(next)}`);
      return next;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) return null;
    }
    value = next; // someone else took it: try the following one
  }
  return null;
}

async function writeValue(file: string, value: number): Promise<void> {
  let h: fs.FileHandle | undefined;
  try {
    const dirMode = (await fs.stat(path.dirname(file))).mode & 0o666;
    h = await fs.open(file, fs.constants.O_RDWR | fs.constants.O_CREAT, dirMode);
    await h.write(hex8(value), 0); // pwrite at 0, as Dovecot: the file stays 8 bytes
  } catch {
    // As Dovecot: failing to record the value does not fail the folder creation.
  } finally {
    await h?.close();
  }
}

async function rescan(file: string, nowMs: number): Promise<number> {
  const dir = path.dirname(file);
  const prefix = path.basename(file) + '.';
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return fallbackUidValidity(nowMs);
  }
  let min = Infinity;
  let max = 0;
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const v = parseHex32(n.slice(prefix.length));
    if (v === null) continue;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  if (max === 0) {
    let value = 0;
    for (let i = 0; i < RETRY_COUNT; i++) {
      value = fallbackUidValidity(nowMs);
      try {
        await (await fs.open(`${file}.${hex8(value)}`, 'wx', 0o444)).close();
        break;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) break;
      }
    }
    await writeValue(file, value);
    return value;
  }
  if (min !== max) await fs.unlink(`${file}.${hex8(min)}`).catch(() => {});
  const got = await claim(file, max);
  if (got === null) return fallbackUidValidity(nowMs);
  await writeValue(file, got);
  return got;
}

/**
 * Gives the UIDVALIDITY for a new folder of the Maildir `root` (the folder that holds
 * dovecot-uidvalidity: the mail root, INBOX's directory).
 */
export async function nextUidValidity(root: string, nowMs = Date.now()): Promise<number> {
  const file = path.join(root, UIDVALIDITY_NAME);
  let text: string;
  try {
    text = await fs.readFile(file, 'latin1');
  } catch {
    return rescan(file, nowMs);
  }
  const cur = parseHex32(text.slice(0, 8));
  if (cur === null) return rescan(file, nowMs);
  const got = await claim(file, cur);
  if (got === null) return rescan(file, nowMs);
  await writeValue(file, got);
  return got;
}
