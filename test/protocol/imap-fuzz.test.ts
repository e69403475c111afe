/**
 * Seeded, bounded-time fuzzing of the IMAP command layer, then its limits.
 *
 * Unit level: generated commands (atoms, quoted strings with escapes, {n} and {n+} literals,
 * nested lists, sequence sets, BODY[...]<...> sections, 8-bit bytes, NULs, huge numbers), valid
 * ones and mutated ones, go through the reader (reader.ts) in random chunks and then the parser
 * (parser.ts): the parser returns a well-formed command or throws its ParseError, nothing else;
 * valid commands come back as the tokens they were made of; the chunking never matters; sequence
 * sets survive format -> parse.
 *
 * Wire level: many concurrent sessions on a started server send random and mutated command
 * streams before login, after it and with a mailbox selected. Each must end (tagged response,
 * BYE or close) before its deadline, every response line must be well formed, the server logs no
 * error, and afterwards a normal LOGIN/SELECT/FETCH works.
 *
 * Limits: nesting ("((((((" is BAD, no stack overflow) and a client that never reads its output
 * (the server bounds what it buffers and drops the client).
 *
 * The fuzzing runs for a fixed time (about 1.3 s unit, 2.5 s wire; MAILD_FUZZ_SCALE multiplies it).
 * Every run prints its seed; MAILD_FUZZ_SEED=<seed> repeats it (the wire part only roughly: the
 * sessions run concurrently), and a failure names the seed (and the failing session's seed).
 */
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import { MAX_NESTING, ParseError, parseCommand, type ParsedCommand, type Token } from '../../src/imap/parser.js';
import { ImapReader, type Segment } from '../../src/imap/reader.js';
import { formatSet, parseSequenceSet, selectIndexes } from '../../src/imap/sequence.js';
import type { ImapSession } from '../../src/imap/session.js';
import { ImapTestClient, loggedIn } from '../helpers/imap-client.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/server.js';
import { seededRandom as rng } from '../helpers/prng.js';

const SEED = Number(process.env.MAILD_FUZZ_SEED ?? Date.now() % 1_000_000);
/** MAILD_FUZZ_SCALE=10 fuzzes ten times as long (for a hunt; CI runs the default). */
const SCALE = Number(process.env.MAILD_FUZZ_SCALE ?? 1);

type Rng = () => number;
const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)]!;
const chance = (r: Rng, p: number) => r() < p;

/** Runs a fuzz body; a failure carries the seed that repeats it. */
async function seeded(t: TestContext, salt: number, body: (r: Rng) => Promise<void> | void): Promise<void> {
  t.diagnostic(`seed ${SEED} (MAILD_FUZZ_SEED=${SEED} repeats this run)`);
  try {
    await body(rng(SEED * 7919 + salt));
  } catch (err) {
    if (err instanceof Error) err.message = `[MAILD_FUZZ_SEED=${SEED}] ${err.message}`;
    throw err;
  }
}

const show = (b: Buffer | string, max = 300) => JSON.stringify((typeof b === 'string' ? b : b.toString('latin1')).slice(0, max));

// ---- generators -------------------------------------------------------------------------------

const ATOM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&'+,-./:;<=>?@^_`|~*%\\}";
const TAG_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&',-./:;<=>?@^_`|~}[";
const BRACKET_ATOMS = ['[Gmail]/Sent', 'a]b', 'x[1]', ']', '[', 'RFC822[x]', 'foo[bar]baz'];
const UTF8_WORDS = ['é', 'Entwürfe', '日本語', '😀', 'ß'];
const COMMAND_NAMES = [
  'NOOP',
  'CAPABILITY',
  'LOGIN',
  'SELECT',
  'LIST',
  'FETCH',
  'STORE',
  'SEARCH',
  'APPEND',
  'ID',
  'X-FUZZ',
  'uid',
  'Fetch',
];
const UID_SUBS = ['FETCH', 'store', 'COPY', 'MOVE', 'Search', 'EXPUNGE'];
const SECTIONS = [
  '',
  'HEADER',
  'TEXT',
  '1',
  '1.2.MIME',
  '2.HEADER',
  'HEADER.FIELDS (SUBJECT FROM)',
  'HEADER.FIELDS.NOT (X-A "q]uo\\"te" ((Y)))',
  '4.1.TEXT',
];

interface Gen {
  wire: Buffer;
  token: Token;
}

function genAtom(r: Rng): Gen {
  if (chance(r, 0.1)) {
    const value = pick(r, BRACKET_ATOMS);
    return { wire: Buffer.from(value), token: { type: 'atom', value } };
  }
  let value = '';
  const n = 1 + int(r, 12);
  for (let i = 0; i < n; i++) value += chance(r, 0.05) ? pick(r, UTF8_WORDS) : ATOM_CHARS[int(r, ATOM_CHARS.length)];
  // A run of digits and ':' / '*' / ',' makes a sequence set: fine, it is an atom as well.
  if (chance(r, 0.15)) value = pick(r, ['1:*', '*', '1,3:5,7', '4294967295', '99999999999999999999', '0', '*:1']);
  return { wire: Buffer.from(value, 'utf8'), token: { type: 'atom', value } };
}

function genQuoted(r: Rng): Gen {
  const bytes: number[] = [];
  const n = int(r, 16);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.6) bytes.push(0x20 + int(r, 0x5f));
    else if (k < 0.75) bytes.push(pick(r, [0x22, 0x5c]));
    else if (k < 0.9) bytes.push(0x80 + int(r, 0x80));
    else bytes.push(pick(r, [0x01, 0x09, 0x7f, 0x7b, 0x7d, 0x28, 0x29]));
  }
  const escaped: number[] = [0x22];
  for (const b of bytes) {
    if (b === 0x22 || b === 0x5c) escaped.push(0x5c);
    escaped.push(b);
  }
  escaped.push(0x22);
  return { wire: Buffer.from(escaped), token: { type: 'string', value: Buffer.from(bytes), literal: false } };
}

function genLiteral(r: Rng): Gen {
  const n = chance(r, 0.2) ? 0 : int(r, 40);
  const data = chance(r, 0.5)
    ? Buffer.from(Array.from({ length: n }, () => int(r, 256)))
    : Buffer.from(Array.from({ length: n }, () => pick(r, ['a', ' ', '\r\n', '{5}\r\n', '"', '(', ')', '\0', '\\'])).join(''), 'latin1');
  const marker = `{${data.length}${chance(r, 0.5) ? '+' : ''}}\r\n`;
  return { wire: Buffer.concat([Buffer.from(marker), data]), token: { type: 'string', value: data, literal: true } };
}

function genSection(r: Rng): Gen {
  const name = pick(r, ['BODY', 'body.peek', 'BODY.PEEK', 'BINARY', 'Binary.Peek', 'BINARY.SIZE']);
  const section = pick(r, SECTIONS);
  let value = `${name}[${section}]`;
  const token: Token = { type: 'atom', value, section, sectionOf: name.toUpperCase() };
  if (chance(r, 0.5)) {
    const start = pick(r, [0, 1, 17, 4294967295, 9999999999]);
    if (chance(r, 0.5)) {
      const length = pick(r, [1, 5, 4294967296]);
      value += `<${start}.${length}>`;
      token.partial = { start, length };
    } else {
      value += `<${start}>`;
      token.partial = { start };
    }
    token.value = value;
  }
  return { wire: Buffer.from(value, 'latin1'), token };
}

function genList(r: Rng, depth: number): Gen {
  const items: Gen[] = [];
  const n = int(r, 5);
  for (let i = 0; i < n; i++) items.push(genToken(r, depth + 1));
  const parts: Buffer[] = [Buffer.from('(')];
  items.forEach((g, i) => {
    if (i > 0) parts.push(Buffer.from(' '));
    parts.push(g.wire);
  });
  parts.push(Buffer.from(')'));
  return { wire: Buffer.concat(parts), token: { type: 'list', items: items.map((g) => g.token) } };
}

/** A valid token; lists nest at most MAX_NESTING deep, as the parser allows. */
function genToken(r: Rng, depth = 0): Gen {
  const k = r();
  if (k < 0.3) return genAtom(r);
  if (k < 0.5) return genQuoted(r);
  if (k < 0.65) return genLiteral(r);
  if (k < 0.75) return genSection(r);
  if (depth < MAX_NESTING - 1 && k < (depth < 3 ? 0.95 : 0.8)) return genList(r, depth);
  if (depth < MAX_NESTING - 1 && chance(r, 0.05)) {
    // Straight down to the deepest level the parser accepts.
    let g = genAtom(r);
    for (let d = MAX_NESTING - 1; d >= depth; d--)
      g = { wire: Buffer.concat([Buffer.from('('), g.wire, Buffer.from(')')]), token: { type: 'list', items: [g.token] } };
    return g;
  }
  return genAtom(r);
}

function genTag(r: Rng): string {
  let tag = '';
  const n = 1 + int(r, 8);
  for (let i = 0; i < n; i++) tag += TAG_CHARS[int(r, TAG_CHARS.length)];
  return tag;
}

/** A valid command with what the parser must make of it. */
function genCommand(r: Rng): { wire: Buffer; expected: ParsedCommand } {
  const tag = genTag(r);
  let wireName = pick(r, COMMAND_NAMES);
  let name = wireName.toUpperCase();
  if (name === 'UID') {
    const sub = pick(r, UID_SUBS);
    wireName += ` ${sub}`;
    name = `UID ${sub.toUpperCase()}`;
  }
  const args: Gen[] = [];
  const n = int(r, 6);
  for (let i = 0; i < n; i++) args.push(genToken(r));
  const parts: Buffer[] = [Buffer.from(`${tag} ${wireName}`)];
  for (const a of args) parts.push(Buffer.from(' '), a.wire);
  parts.push(Buffer.from('\r\n'));
  return { wire: Buffer.concat(parts), expected: { tag, name, args: args.map((a) => a.token) } };
}

// ---- mutation ---------------------------------------------------------------------------------

const SNIPPETS = [
  '(',
  ')',
  '((((((((((((((((((((((((((((((((((((((((',
  ')))))',
  '"',
  '\\',
  '\\"',
  '{',
  '}',
  '{0}\r\n',
  '{5}\r\n',
  '{3+}\r\n',
  '{0+}\r\n',
  '{99999999999999999999}\r\n',
  '{4294967296+}\r\n',
  '{18446744073709551616}\r\n',
  '[',
  ']',
  '<',
  '>',
  '<0.0>',
  '<4294967296.1>',
  '<1.>',
  '\0',
  '\r',
  '\n',
  '\r\n',
  ' ',
  '  ',
  '\xff',
  '\xc3',
  '\xc3\xa9',
  '*',
  '+',
  ':',
  ',',
  '1:*',
  '*:*',
  '0:0',
  '4294967296',
  '99999999999999999999',
  '-1',
  '1e9',
  'BODY[',
  'BODY[]<',
  'BODY.PEEK[HEADER.FIELDS (',
  'BINARY[1]',
  'UID ',
  'NIL',
  '"\\x"',
  '\t',
  '\x7f',
  '%',
  '~',
  'x'.repeat(300),
];

function mutate(r: Rng, input: Buffer): Buffer {
  let b = input;
  const rounds = 1 + int(r, 4);
  for (let i = 0; i < rounds; i++) {
    const pos = int(r, b.length + 1);
    const k = r();
    if (k < 0.35) b = Buffer.concat([b.subarray(0, pos), Buffer.from(pick(r, SNIPPETS), 'latin1'), b.subarray(pos)]);
    else if (k < 0.55 && b.length > 0) {
      const c = Buffer.from(b);
      c[Math.min(pos, c.length - 1)] = chance(r, 0.5)
        ? int(r, 256)
        : pick(r, [0x28, 0x29, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x20, 0x00, 0x0d, 0x0a]);
      b = c;
    } else if (k < 0.75) b = Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + int(r, 8)))]);
    else if (k < 0.85) b = Buffer.concat([b.subarray(0, pos), b.subarray(pos, pos + int(r, 20)), b.subarray(pos)]);
    else if (k < 0.93) b = b.subarray(0, pos);
    else b = Buffer.concat([b, Buffer.from(Array.from({ length: int(r, 30) }, () => int(r, 256)))]);
  }
  return b;
}

// ---- reader + parser harness ----------------------------------------------------------------

type ReaderEvent = { command: Segment[] } | { literal: number; nonSync: boolean } | { event: 'line-too-long' | 'protocol-error' };

const LIMITS = { maxLineLength: 2048, maxDiscard: 4096 };
const LITERAL_MAX = 1024;

/** Feeds bytes to a reader in the given chunk sizes; the hooks behave as the session's do. */
function runReader(bytes: Buffer, chunkSizes: number[] = [bytes.length]): ReaderEvent[] {
  const events: ReaderEvent[] = [];
  const reader = new ImapReader(
    {
      onCommand: (segments) => events.push({ command: segments }),
      onLiteral: (req) => {
        events.push({ literal: req.size, nonSync: req.nonSync });
        assert.ok(Number.isSafeInteger(req.size) && req.size >= 0, `literal size ${req.size}`);
        return req.size <= LITERAL_MAX && req.sizeSoFar + req.size <= 4 * LITERAL_MAX ? { accept: true } : { accept: false };
      },
      onLineTooLong: () => events.push({ event: 'line-too-long' }),
      onProtocolError: () => events.push({ event: 'protocol-error' }),
    },
    LIMITS,
  );
  let pos = 0;
  for (const size of chunkSizes) {
    if (pos >= bytes.length) break;
    reader.push(bytes.subarray(pos, pos + Math.max(1, size)));
    pos += Math.max(1, size);
  }
  if (pos < bytes.length) reader.push(bytes.subarray(pos));
  return events;
}

function randomChunks(r: Rng, length: number): number[] {
  const out: number[] = [];
  let left = length;
  while (left > 0) {
    const n = chance(r, 0.3) ? 1 : 1 + int(r, 64);
    out.push(n);
    left -= n;
  }
  return out;
}

/** A token as the parser may produce it: the types it documents, nothing else. */
function checkToken(t: Token, depth: number, where: string): void {
  assert.ok(depth <= MAX_NESTING, `${where}: nested ${depth} deep`);
  if (t.type === 'atom') {
    assert.equal(typeof t.value, 'string', where);
    assert.ok(t.value.length > 0, `${where}: empty atom`);
    if (t.section !== undefined) {
      assert.match(t.section, /^[\x20-\x7e]*$/, `${where}: the section is echoed in the response, so 7-bit text only`);
      assert.match(t.sectionOf ?? '', /^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)$/, where);
      if (t.partial) {
        assert.ok(Number.isSafeInteger(t.partial.start) && t.partial.start >= 0, where);
        if (t.partial.length !== undefined) assert.ok(Number.isSafeInteger(t.partial.length) && t.partial.length > 0, where);
      }
    } else {
      assert.equal(t.sectionOf, undefined, where);
      assert.equal(t.partial, undefined, where);
    }
  } else if (t.type === 'string') {
    assert.ok(Buffer.isBuffer(t.value), where);
    assert.equal(typeof t.literal, 'boolean', where);
  } else {
    assert.equal(t.type, 'list', where);
    assert.ok(Array.isArray(t.items), where);
    for (const i of t.items) checkToken(i, depth + 1, where);
  }
}

/** Parses one assembled command: a well-formed command or a ParseError, never anything else. */
function parseChecked(segments: Segment[], where: string): ParsedCommand | ParseError {
  let parsed: ParsedCommand;
  try {
    parsed = parseCommand(segments);
  } catch (err) {
    if (!(err instanceof ParseError)) {
      assert.fail(`${where}: parseCommand threw ${(err as Error)?.name}: ${(err as Error)?.message}\n${(err as Error)?.stack}`);
    }
    assert.ok(err.tag === undefined || /^[\x21-\x7e]+$/.test(err.tag), `${where}: error tag ${show(String(err.tag))}`);
    return err;
  }
  assert.match(parsed.tag, /^[\x21-\x7e]+$/, `${where}: tag`);
  assert.ok(!parsed.tag.includes('+') && !parsed.tag.includes('*'), `${where}: tag ${parsed.tag}`);
  assert.equal(parsed.name, parsed.name.toUpperCase(), where);
  assert.ok(parsed.name.length > 0, where);
  for (const a of parsed.args) checkToken(a, 0, where);
  return parsed;
}

/**
 * What a sequence set selects, straight from RFC 3501 section 9 (seq-number, seq-range): `*` is
 * the largest number in use (the last UID, or the number of messages), a range goes either way.
 * Indexes into `values` (the mailbox's UIDs in order), ascending.
 */
function referenceSelect(text: string, values: readonly number[], uid: boolean): number[] {
  if (values.length === 0) return [];
  const largest = uid ? values[values.length - 1]! : values.length;
  const picked = new Set<number>();
  for (const part of text.split(',')) {
    const [a, b = a] = part.split(':').map((x) => (x === '*' ? largest : Number(x)));
    const [lo, hi] = [Math.min(a!, b!), Math.max(a!, b!)];
    values.forEach((v, i) => {
      if ((uid ? v : i + 1) >= lo && (uid ? v : i + 1) <= hi) picked.add(i);
    });
  }
  return [...picked].sort((x, y) => x - y);
}

// ---- unit level -------------------------------------------------------------------------------

describe('IMAP parser fuzzing (reader + parser)', () => {
  it('gives back the tokens a valid command was made of, however its bytes arrive', async (t) => {
    await seeded(t, 1, (r) => {
      const deadline = Date.now() + 400 * SCALE;
      let n = 0;
      while (Date.now() < deadline) {
        const { wire, expected } = genCommand(r);
        const where = `valid command #${n} ${show(wire)}`;
        const whole = runReader(wire);
        const chunked = runReader(wire, randomChunks(r, wire.length));
        assert.deepEqual(chunked, whole, `${where}: chunking changed what the reader assembled`);
        const commands = whole.filter((e): e is { command: Segment[] } => 'command' in e);
        assert.equal(commands.length, 1, `${where}: ${JSON.stringify(whole.map((e) => ('command' in e ? 'command' : e)))}`);
        const parsed = parseChecked(commands[0]!.command, where);
        assert.ok(!(parsed instanceof ParseError), `${where}: ${(parsed as ParseError).message}`);
        assert.deepEqual(parsed, expected, where);
        n++;
      }
      t.diagnostic(`${n} valid commands round-tripped`);
      assert.ok(n > 0);
    });
  });

  it('answers mutated and random input with a command or a ParseError, nothing else', async (t) => {
    await seeded(t, 2, (r) => {
      const deadline = Date.now() + 700 * SCALE;
      const tally = { commands: 0, parsed: 0, errors: 0, inputs: 0 };
      while (Date.now() < deadline) {
        let input: Buffer;
        const k = r();
        if (k < 0.7) {
          // A few valid commands, pipelined, then mutated.
          const lines = Array.from({ length: 1 + int(r, 3) }, () => genCommand(r).wire);
          input = mutate(r, Buffer.concat(lines));
        } else if (k < 0.85) {
          input = Buffer.from(Array.from({ length: int(r, 300) }, () => (chance(r, 0.1) ? 0x0a : int(r, 256))));
        } else {
          // Token soup: pieces that are each lexically odd.
          input = Buffer.from(
            `${genTag(r)} ${Array.from({ length: int(r, 12) }, () => pick(r, SNIPPETS)).join(pick(r, [' ', '']))}\r\n`,
            'latin1',
          );
        }
        tally.inputs++;
        const where = `input #${tally.inputs} ${show(input, 600)}`;
        let whole: ReaderEvent[];
        try {
          whole = runReader(input);
        } catch (err) {
          assert.fail(`${where}: the reader threw ${(err as Error).stack}`);
        }
        const chunked = runReader(input, randomChunks(r, input.length));
        assert.deepEqual(chunked, whole, `${where}: chunking changed what the reader assembled`);
        for (const e of whole) {
          if (!('command' in e)) continue;
          tally.commands++;
          const res = parseChecked(e.command, where);
          if (res instanceof ParseError) tally.errors++;
          else tally.parsed++;
        }
      }
      t.diagnostic(`${tally.inputs} inputs, ${tally.commands} commands: ${tally.parsed} parsed, ${tally.errors} ParseErrors`);
      assert.ok(tally.parsed > 0 && tally.errors > 0, 'both outcomes were exercised');
    });
  });

  it('sequence sets: format -> parse selects the same numbers; random text parses to sane ranges or a ParseError', async (t) => {
    await seeded(t, 3, (r) => {
      const deadline = Date.now() + 250 * SCALE;
      let n = 0;
      while (Date.now() < deadline) {
        n++;
        // format -> parse round trip over a random set of numbers.
        const set = new Set<number>();
        const count = 1 + int(r, 30);
        let v = 1 + int(r, 5);
        for (let i = 0; i < count; i++) {
          set.add(v);
          v += chance(r, 0.6) ? 1 : 1 + int(r, chance(r, 0.1) ? 2 ** 31 : 20);
          if (v > 0xffffffff) break;
        }
        if (chance(r, 0.1)) set.add(0xffffffff);
        const text = formatSet(set);
        assert.match(text, /^\d+(:\d+)?(,\d+(:\d+)?)*$/, text);
        const ranges = parseSequenceSet(text);
        const sorted = [...set].sort((a, b) => a - b);
        for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]!.from > ranges[i - 1]!.to + 1, `${text}: ranges not merged`);
        const universe = [...new Set([...sorted, ...sorted.map((x) => x + 1), ...sorted.map((x) => x - 1)])]
          .filter((x) => x >= 1 && x <= 0xffffffff)
          .sort((a, b) => a - b);
        const picked = selectIndexes(ranges, universe, true).map((i) => universe[i]!);
        assert.deepEqual(picked, sorted, `round trip of ${text}`);

        // Random text: a ParseError or ranges within bounds; the selection is stable under format -> parse.
        const alphabet = chance(r, 0.9) ? '0123456789:*,' : '0123456789:*, -+x';
        let s = '';
        const len = 1 + int(r, 20);
        for (let i = 0; i < len; i++)
          s += chance(r, 0.1) ? pick(r, ['4294967295', '4294967296', '99999999999999999999', '0']) : alphabet[int(r, alphabet.length)];
        let parsed;
        try {
          parsed = parseSequenceSet(s);
        } catch (err) {
          assert.ok(err instanceof ParseError, `${show(s)}: ${(err as Error).stack}`);
          continue;
        }
        for (const range of parsed) {
          assert.ok(range.from >= 1 && range.from <= range.to, `${show(s)}: ${JSON.stringify(range)}`);
          assert.ok(range.to === Infinity || range.to <= 0xffffffff, show(s));
          assert.ok(range.from === Infinity || range.from <= 0xffffffff, show(s));
        }
        const values = [1, 2, 3, 5, 8, 13, 21, 1000, 4294967295].slice(int(r, 3), 1 + int(r, 9));
        for (const uid of [true, false]) {
          const sel = selectIndexes(parsed, values, uid);
          assert.deepEqual(
            sel,
            referenceSelect(s, values, uid),
            `${show(s)} over ${JSON.stringify(values)} (${uid ? 'UIDs' : 'sequence numbers'})`,
          );
          assert.ok(
            sel.every((i, j) => i >= 0 && i < values.length && (j === 0 || i > sel[j - 1]!)),
            `${show(s)}: ${JSON.stringify(sel)}`,
          );
          if (sel.length === 0) continue;
          const again = formatSet(uid ? sel.map((i) => values[i]!) : sel.map((i) => i + 1));
          assert.deepEqual(selectIndexes(parseSequenceSet(again), values, uid), sel, `${show(s)} -> ${again}`);
        }
      }
      t.diagnostic(`${n} sequence-set rounds`);
    });
  });

  it('takes * as the number of messages for sequence numbers and as the last UID for UIDs', () => {
    const uids = [10, 20, 30];
    const pick = (set: string, uid: boolean) => selectIndexes(parseSequenceSet(set), uids, uid);
    assert.deepEqual(pick('*', false), [2]);
    assert.deepEqual(pick('1,*', false), [0, 2]);
    assert.deepEqual(pick('*:2', false), [1, 2]);
    assert.deepEqual(pick('4:*', false), [2]);
    assert.deepEqual(pick('4', false), []);
    assert.deepEqual(pick('*', true), [2]);
    assert.deepEqual(pick('25:*', true), [2]);
    assert.deepEqual(pick('31:*', true), [2]);
    assert.deepEqual(pick('3', true), []);
  });

  it('refuses lists and sections nested too deeply with a ParseError, without recursing into them', () => {
    const parse = (text: string) => parseCommand([{ text: Buffer.from(text, 'latin1') }]);
    const nested = (depth: number) => `${'('.repeat(depth)}x${')'.repeat(depth)}`;
    assert.equal(parse(`a ID ${nested(MAX_NESTING)}`).args.length, 1);
    assert.throws(
      () => parse(`a ID ${nested(MAX_NESTING + 1)}`),
      (e: unknown) => e instanceof ParseError && /nested/.test(e.message) && e.tag === 'a',
    );
    for (const depth of [1000, 100_000, 1_000_000]) {
      assert.throws(
        () => parse(`a LIST ${'('.repeat(depth)}`),
        (e: unknown) => e instanceof ParseError && /nested/.test(e.message),
      );
      assert.throws(
        () => parse(`a FETCH 1 (BODY[HEADER.FIELDS ${'('.repeat(depth)}])`),
        (e: unknown) => e instanceof ParseError && /nested/.test(e.message),
      );
    }
    // Through the reader too: a line over the limit is refused before anything is parsed.
    assert.deepEqual(runReader(Buffer.from(`a LIST ${'('.repeat(5000)}\r\n`)), [{ event: 'line-too-long' }]);
  });

  it('keeps tags to ATOM-CHARs without "+" and reads brackets as astring characters outside FETCH sections', () => {
    const parse = (text: string) => parseCommand([{ text: Buffer.from(text, 'latin1') }]);
    for (const tag of ['a+1', '*', 'a]', 'a%', 'a*', 'a\\b', '\xe9', '"a"', '(a)', 'BODY[]']) {
      assert.throws(
        () => parse(`${tag} NOOP`),
        (e: unknown) => e instanceof ParseError && e.message === 'invalid tag' && e.tag === undefined,
        tag,
      );
    }
    assert.equal(parse('a}[~ NOOP').tag, 'a}[~');
    assert.deepEqual(parse('a SELECT [Gmail]/Sent').args, [{ type: 'atom', value: '[Gmail]/Sent' }]);
    assert.deepEqual(parse('a LIST "" [Gmail]*').args[1], { type: 'atom', value: '[Gmail]*' });
    assert.deepEqual(parse('a FETCH 1 body.peek[1]<0.5>').args[1], {
      type: 'atom',
      value: 'body.peek[1]<0.5>',
      section: '1',
      sectionOf: 'BODY.PEEK',
      partial: { start: 0, length: 5 },
    });
  });
});

// ---- wire level -------------------------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s).toString('base64');
const message = (n: number, extra = '') =>
  `From: Fuzz <fuzz@example.org>\r\nTo: alice@example.test\r\nSubject: fuzz ${n}${extra}\r\nDate: Sun, 1 Mar 2026 10:00:00 +0000\r\nMessage-ID: <fuzz-${n}@example.org>\r\n\r\nBody ${n}.\r\n`;
const MULTIPART =
  'From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\r\nSubject: multipart \xe9\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHällo\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--b--\r\n';

/** APPEND with a non-synchronising literal (the text goes out as UTF-8). */
function appendCommand(mailbox: string, body: string, extra = ''): string {
  return `APPEND ${mailbox}${extra} {${Buffer.byteLength(body, 'utf8')}+}\r\n${body}`;
}

/** Valid commands for every state; the fuzz mutates them. */
const CORPUS = [
  'CAPABILITY',
  'NOOP',
  'CHECK',
  'ID NIL',
  'ID ("name" "fuzz" "version" "1.0")',
  'NAMESPACE',
  'ENABLE CONDSTORE QRESYNC',
  'ENABLE UTF8=ACCEPT X-NONE',
  'LOGIN alice@example.test alice-pw',
  'LOGIN "alice@example.test" {8+}\r\nalice-pw',
  'LOGIN {18}\r\nalice@example.test {8}\r\nalice-pw',
  'LOGIN alice@example.test wrong',
  `AUTHENTICATE PLAIN ${b64('\0alice@example.test\0alice-pw')}`,
  `AUTHENTICATE PLAIN\r\n${b64('\0alice@example.test\0alice-pw')}`,
  `AUTHENTICATE LOGIN\r\n${b64('alice@example.test')}\r\n${b64('alice-pw')}`,
  'AUTHENTICATE PLAIN\r\n*',
  'AUTHENTICATE CRAM-MD5',
  'STARTTLS',
  'SELECT INBOX',
  'EXAMINE INBOX',
  'SELECT fuzz',
  'SELECT INBOX (CONDSTORE)',
  'SELECT INBOX (QRESYNC (1 1 1:5 (1:3 1:3)))',
  'SELECT [Gmail]/Sent',
  'SELECT "Entw&APw-rfe"',
  'CREATE fuzz/a',
  'CREATE "fuzz/b" (USE (\\Archive))',
  'CREATE [Gmail]/Sent',
  'DELETE fuzz/a',
  'RENAME fuzz/b fuzz/c',
  'RENAME fuzz/c fuzz/b',
  'SUBSCRIBE fuzz',
  'UNSUBSCRIBE fuzz',
  'LIST "" *',
  'LIST "" %',
  'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))',
  'LIST "" ""',
  'LIST "fuzz/" %',
  'LSUB "" *',
  'STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)',
  'STATUS fuzz (MESSAGES)',
  appendCommand('fuzz', message(90)),
  appendCommand('INBOX', message(91), ' (\\Seen $Fuzz) " 1-Jan-2020 10:00:00 +0100"'),
  appendCommand('INBOX', MULTIPART),
  'GETQUOTAROOT INBOX',
  'GETQUOTA ""',
  'SETQUOTA "" (STORAGE 10)',
  'FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)',
  'FETCH 1 ALL',
  'FETCH * FULL',
  'FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.20> BODYSTRUCTURE ENVELOPE)',
  'FETCH 1 BODY[]',
  'FETCH 1:* (BODY[1] BODY[1.MIME] BODY[TEXT]<5> BODY.PEEK[2.HEADER] BODY[2.1])',
  'FETCH 1:* (MODSEQ) (CHANGEDSINCE 1)',
  'UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)',
  'FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT)',
  'FETCH 1 BINARY[1]',
  'STORE 1:* +FLAGS.SILENT (\\Seen)',
  'STORE 1 FLAGS (\\Flagged $Fuzz)',
  'UID STORE 1:* -FLAGS (\\Seen $Fuzz)',
  'STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Answered)',
  'STORE 2 +FLAGS (\\Deleted)',
  'SEARCH ALL',
  'SEARCH CHARSET UTF-8 SUBJECT {5+}\r\nhello',
  'UID SEARCH RETURN (MIN MAX COUNT ALL) 1:* NOT DELETED',
  'SEARCH OR (FROM "a" TO "b") (LARGER 10 SMALLER 100000) SINCE 1-Jan-2000',
  'SEARCH HEADER Subject fuzz BODY x TEXT y KEYWORD $Fuzz',
  'SEARCH MODSEQ 1',
  'SEARCH UID 1:5,7 SEEN UNSEEN NEW OLD RECENT',
  'SEARCH NOT NOT NOT ALL',
  'SEARCH BEFORE 1-Feb-1994 ON 31-Dec-9999 SENTSINCE 01-Jan-1970',
  'COPY 1:* fuzz',
  'UID COPY 1 fuzz',
  'MOVE 1 fuzz',
  'UID MOVE 1:2 fuzz',
  'EXPUNGE',
  'UID EXPUNGE 1:3',
  'CLOSE',
  'UNSELECT',
  'IDLE\r\nDONE',
  'IDLE\r\nNOPE',
  'LOGOUT',
];

function commandLine(r: Rng, n: number): Buffer {
  const tag = chance(r, 0.9) ? `F${n}` : pick(r, ['*', '+', 'a]b', '', '\xe9', 'x'.repeat(200), genTag(r)]);
  const k = r();
  // The tag's bytes as they are (some are 8-bit on purpose), the command as UTF-8.
  const corpusLine = () => Buffer.concat([Buffer.from(`${tag} `, 'latin1'), Buffer.from(`${pick(r, CORPUS)}\r\n`, 'utf8')]);
  if (k < 0.45) return corpusLine();
  if (k < 0.8) return mutate(r, corpusLine());
  if (k < 0.9) return genCommand(r).wire;
  if (k < 0.97) return Buffer.from(Array.from({ length: int(r, 200) }, () => (chance(r, 0.05) ? 0x0a : int(r, 256))));
  // Rare and heavy: deep nesting, an over-long line, a literal that is never sent in full.
  return Buffer.from(
    pick(r, [
      `${tag} LIST ${'('.repeat(3000)}\r\n`,
      `${tag} FETCH 1 (BODY[HEADER.FIELDS ${'('.repeat(300)}])\r\n`,
      `${tag} SEARCH ${'NOT '.repeat(2000)}ALL\r\n`,
      `${tag} SEARCH ${'OR ALL '.repeat(500)}ALL\r\n`,
      `${tag} NOOP ${'x'.repeat(70_000)}\r\n`,
      `${tag} LOGIN {50}\r\nshort`,
      `${tag} APPEND INBOX {9999999999+}\r\n`,
      `${tag} ID (${'"a" {0}\r\n '.repeat(50)}"b" "c")\r\n`,
    ]),
    'latin1',
  );
}

/**
 * Checks the server's output: lines of printable ASCII, each untagged ("* "), a continuation
 * ("+ ") or a tagged completion (OK/NO/BAD), literals only where a line announces one.
 * Returns the last complete line, or a problem.
 */
function checkResponses(data: Buffer): { last: string | undefined; problem?: string } {
  let pos = 0;
  let last: string | undefined;
  let current = '';
  while (pos < data.length) {
    const nl = data.indexOf('\r\n', pos);
    if (nl === -1) return { last, problem: `an unterminated line at the end: ${show(data.subarray(pos))}` };
    const piece = data.subarray(pos, nl).toString('latin1');
    if (!/^[\x20-\x7e]*$/.test(piece)) return { last, problem: `a byte outside printable ASCII in ${show(piece)}` };
    current += piece;
    pos = nl + 2;
    const literal = /\{(\d+)\}$/.exec(piece);
    if (literal && /^\* /.test(current)) {
      const size = Number(literal[1]);
      if (pos + size > data.length) return { last, problem: `a literal cut short in ${show(current)}` };
      pos += size;
      current += '<literal>';
      continue;
    }
    if (!/^(\* [A-Z0-9]|\+( |$)|[\x21-\x7e]+ (OK|NO|BAD)( |$))/.test(current))
      return { last, problem: `a malformed response line ${show(current)}` };
    // RFC 3501 section 9: UIDVALIDITY is an nz-number.
    if (/\[UIDVALIDITY 0\]|\(.*UIDVALIDITY 0[ )]/.test(current)) return { last, problem: `UIDVALIDITY 0 in ${show(current)}` };
    last = current;
    current = '';
  }
  return { last };
}

interface SessionOutcome {
  seed: number;
  sent: Buffer;
  received: Buffer;
  reset: boolean;
  hung: boolean;
}

const SESSION_DEADLINE_MS = 15_000;

async function fuzzSession(srv: TestServer, seed: number): Promise<SessionOutcome> {
  const r = rng(seed);
  const secure = chance(r, 0.8);
  const socket: net.Socket = secure
    ? tls.connect({ port: srv.imapsPort, host: '127.0.0.1', rejectUnauthorized: false })
    : net.connect(srv.imapPort, '127.0.0.1');
  const received: Buffer[] = [];
  const sent: Buffer[] = [];
  let reset = false;
  let closed = false;
  socket.on('data', (d: Buffer) => received.push(d));
  socket.on('error', () => {
    reset = true;
  });
  const closing = new Promise<void>((resolve) => socket.on('close', () => ((closed = true), resolve())));
  // The whole session, handshake included, has a deadline: past it the server is hanging.
  let hung = false;
  const deadline = setTimeout(() => {
    hung = true;
    socket.destroy();
  }, SESSION_DEADLINE_MS);
  await Promise.race([new Promise((resolve) => socket.once(secure ? 'secureConnect' : 'connect', resolve)), closing]);

  const lines: Buffer[] = [];
  const plan = r();
  if (plan > 0.3) lines.push(Buffer.from('L LOGIN alice@example.test alice-pw\r\n'));
  if (plan > 0.6) lines.push(Buffer.from(`S ${pick(r, ['SELECT INBOX', 'EXAMINE INBOX', 'SELECT fuzz', 'SELECT INBOX (CONDSTORE)'])}\r\n`));
  const count = 1 + int(r, 25);
  for (let i = 0; i < count; i++) lines.push(commandLine(r, i));
  // The end: leave IDLE or an exchange if one is running, then LOGOUT.
  lines.push(Buffer.from(`\r\nDONE\r\nZZ LOGOUT\r\n`));

  for (let i = 0; i < lines.length && !closed;) {
    const n = 1 + int(r, 6);
    const burst = Buffer.concat(lines.slice(i, i + n));
    i += n;
    let pos = 0;
    for (const size of randomChunks(r, burst.length)) {
      if (closed) break;
      const piece = burst.subarray(pos, pos + size);
      pos += size;
      sent.push(piece);
      socket.write(piece);
    }
    if (chance(r, 0.5)) await new Promise((resolve) => setTimeout(resolve, int(r, 4)));
  }
  // Then the server must answer and close (LOGOUT, BYE, or an idle timeout while it waits).
  await closing;
  clearTimeout(deadline);
  return { seed, sent: Buffer.concat(sent), received: Buffer.concat(received), reset, hung };
}

/** Message files (cur/, new/) this process has open, from /proc (Linux). */
function openMessageFiles(srv: TestServer): string[] {
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((p) => p.startsWith(srv.mailRoot) && /\/(cur|new)\/[^/]+$/.test(p));
}

/** The session of the most recent connection (sessions are kept in the order they started). */
function lastSession(srv: TestServer): ImapSession {
  const sessions = [...srv.runtime.imapSessions];
  assert.ok(sessions.length > 0, 'a session is open');
  return sessions[sessions.length - 1]!;
}

describe('IMAP wire fuzzing', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      config: {
        limits: { connections: 1000, connections_per_ip: 1000, message_size: '1M', idle_timeout: '30s' },
        imap: { connections_per_user_ip: 1000, idle_timeout: '1s', idle_timeout_before_login: '1s' },
        auth: { failure_delay: '1ms', failure_delay_max: '20ms' },
      },
    });
    for (const user of ['alice', 'carol']) {
      const c = await loggedIn(srv, `${user}@example.test`, `${user}-pw`);
      for (const body of [message(1), message(2, ' \u00e9'), MULTIPART, message(4)])
        assert.equal((await c.cmd(appendCommand('INBOX', body))).status, 'OK');
      assert.equal((await c.cmd('CREATE fuzz')).status, 'OK');
      await c.logout();
    }
  });
  after(async () => {
    await srv.stop();
  });

  it('ends every random session with a response or a close, and keeps serving', async (t) => {
    await seeded(t, 4, async (r) => {
      // 12 sessions at a time; new ones start until the time is up.
      const deadline = Date.now() + 2500 * SCALE;
      const outcomes: SessionOutcome[] = [];
      const worker = async () => {
        while (Date.now() < deadline) outcomes.push(await fuzzSession(srv, int(r, 2 ** 31)));
      };
      await Promise.all(Array.from({ length: 12 }, worker));
      const text = outcomes.map((o) => o.received.toString('latin1')).join('');
      const count = (re: RegExp) => (text.match(re) ?? []).length;
      t.diagnostic(
        `${outcomes.length} sessions, ${outcomes.reduce((n, o) => n + o.sent.length, 0)} bytes sent; answers: ` +
          `${count(/^\S+ OK /gm)} OK, ${count(/^\S+ NO /gm)} NO, ${count(/^\S+ BAD /gm)} BAD, ${count(/^\* BYE /gm)} BYE; ` +
          `${count(/^S OK \[READ-/gm)} selected, ${count(/^\* \d+ FETCH /gm)} FETCH responses`,
      );
      t.diagnostic(`${outcomes.filter((o) => !o.reset).length} sessions closed cleanly and had all their responses checked`);
      for (const o of outcomes) {
        const where = `session seed ${o.seed}; sent ${show(o.sent.subarray(-800), 800)}; received ${show(o.received.subarray(-600), 600)}`;
        assert.equal(o.hung, false, `the server neither answered nor closed within ${SESSION_DEADLINE_MS} ms: ${where}`);
        const { last, problem } = checkResponses(o.received);
        if (!o.reset) {
          assert.equal(problem, undefined, `${problem}: ${where}`);
          assert.match(
            last ?? '',
            /^(\* BYE |[\x21-\x7e]+ (OK|NO|BAD)( |$))/,
            `the session did not end with BYE or a tagged response: ${where}`,
          );
        }
      }
      // Only maild touches this Maildir: a UIDVALIDITY that changes under a mailbox is its own doing
      // (a folder read while CREATE was still writing its dovecot-uidlist, say).
      const suspicious = (l: Record<string, unknown>) => (l.level as number) >= 50 || l.msg === 'UIDVALIDITY changed on disk';
      const errors = srv.logs.filter(suspicious);
      assert.deepEqual(
        errors.map((l) => `${l.msg}: ${JSON.stringify(l.err ?? l.command ?? '')}`.slice(0, 400)),
        [],
        'no error-level log lines (nor UIDVALIDITY changes)',
      );

      // A normal session afterwards, on an account the fuzz never touched, and on the fuzzed one.
      const carol = await loggedIn(srv, 'carol@example.test', 'carol-pw');
      const sel = await carol.cmd('SELECT INBOX');
      assert.equal(sel.status, 'OK');
      assert.ok(sel.untagged.includes('4 EXISTS'), JSON.stringify(sel.untagged));
      const fetched = await carol.cmd('FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
      assert.equal(fetched.status, 'OK');
      assert.equal(fetched.untagged.length, 4);
      assert.match(fetched.untagged[0]!, /^1 FETCH \(UID 1 BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: fuzz 1\r\n\r\n\)$/);
      await carol.logout();
      const alice = await loggedIn(srv);
      const appended = await alice.cmd(appendCommand('INBOX', message(99)));
      assert.equal(appended.status, 'OK', appended.text);
      const uid = /^APPENDUID \d+ (\d+)$/.exec(appended.code ?? '')?.[1];
      assert.ok(uid, appended.text);
      assert.equal((await alice.cmd('SELECT INBOX')).status, 'OK');
      const body = await alice.cmd(`UID FETCH ${uid} BODY.PEEK[]`);
      assert.equal(body.status, 'OK');
      assert.ok(
        body.untagged.some((l) => l.includes('Subject: fuzz 99') && l.includes(`UID ${uid}`)),
        JSON.stringify(body.untagged),
      );
      await alice.logout();
    });
  });

  it('selects the same messages for a random sequence set in FETCH, SEARCH and their UID forms', async (t) => {
    await seeded(t, 5, async (r) => {
      // UIDs with gaps (1 3 4 6), so that sequence numbers, UIDs and `*` all differ.
      const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
      assert.equal((await c.cmd('CREATE gaps')).status, 'OK');
      for (let i = 1; i <= 6; i++) assert.equal((await c.cmd(appendCommand('gaps', message(100 + i)))).status, 'OK');
      assert.equal((await c.cmd('SELECT gaps')).status, 'OK');
      assert.equal((await c.cmd('UID STORE 2,5 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
      assert.equal((await c.cmd('EXPUNGE')).status, 'OK');
      const uids = [1, 3, 4, 6];
      const numbers = (lines: string[], re: RegExp) =>
        lines.flatMap((l) => [...(re.exec(l)?.[1] ?? '').matchAll(/\d+/g)].map((m) => Number(m[0])));
      // Sequence numbers within 1..4 (larger ones are a client error, RFC 3501 section 9); UIDs
      // anywhere, `n:*` beyond the last UID included (RFC 3501 section 6.4.8).
      const randomSet = (largest: number) =>
        Array.from({ length: 1 + int(r, 3) }, () => {
          const one = () => (chance(r, 0.25) ? '*' : String(1 + int(r, largest)));
          return chance(r, 0.5) ? one() : `${one()}:${one()}`;
        }).join(',');
      for (let n = 0; n < 40; n++) {
        const seqSet = randomSet(uids.length);
        const bySeq = referenceSelect(seqSet, uids, false).map((i) => i + 1);
        assert.deepEqual(numbers((await c.cmd(`FETCH ${seqSet} (UID)`)).untagged, /^(\d+) FETCH/), bySeq, `FETCH ${seqSet}`);
        assert.deepEqual(numbers((await c.cmd(`SEARCH ${seqSet}`)).untagged, /^SEARCH((?: \d+)*)$/), bySeq, `SEARCH ${seqSet}`);
        const uidSet = randomSet(8);
        const byUid = referenceSelect(uidSet, uids, true).map((i) => uids[i]!);
        assert.deepEqual(numbers((await c.cmd(`UID FETCH ${uidSet} (UID)`)).untagged, /UID (\d+)\)$/), byUid, `UID FETCH ${uidSet}`);
        assert.deepEqual(
          numbers((await c.cmd(`UID SEARCH UID ${uidSet}`)).untagged, /^SEARCH((?: \d+)*)$/),
          byUid,
          `UID SEARCH UID ${uidSet}`,
        );
      }
      await c.logout();
    });
  });

  it('answers lists and search keys nested too deeply with BAD, and goes on', async () => {
    const logsBefore = srv.logs.length;
    const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
    assert.equal((await c.cmd('SELECT INBOX')).status, 'OK');
    for (const command of [
      `LIST ${'('.repeat(60_000)}`,
      `LIST "" ${'('.repeat(MAX_NESTING + 1)}x${')'.repeat(MAX_NESTING + 1)}`,
      `FETCH 1 (BODY[HEADER.FIELDS ${'('.repeat(10_000)}])`,
      `SEARCH ${'('.repeat(40)}ALL${')'.repeat(40)}`,
      `SEARCH ${'NOT '.repeat(10_000)}ALL`,
      `SEARCH ${'OR ALL '.repeat(5000)}ALL`,
    ]) {
      const r = await c.cmd(command);
      assert.equal(r.status, 'BAD', `${command.slice(0, 40)}: ${r.text}`);
    }
    assert.equal((await c.cmd('NOOP')).status, 'OK');
    await c.logout();
    assert.ok(!srv.logs.slice(logsBefore).some((l) => (l.level as number) >= 50), 'no error-level log lines');
  });
});

// ---- output that nobody reads -----------------------------------------------------------------

describe('IMAP output bound', () => {
  let srv: TestServer;
  // Messages far larger than the high-water mark: the client is found stalled in the middle of a literal.
  const BIG = 900 * 1024;
  before(async () => {
    srv = await startTestServer({ config: { limits: { connections_per_ip: 100, message_size: '1M', idle_timeout: '30s' } } });
    const c = await loggedIn(srv);
    const line = `${'x'.repeat(98)}\r\n`;
    for (let i = 0; i < 5; i++) {
      const body = `Subject: big ${i}\r\n\r\n${line.repeat(Math.ceil(BIG / line.length))}`;
      assert.equal((await c.cmd(appendCommand('INBOX', body))).status, 'OK');
    }
    // The limits are not in the configuration file: a test-sized high-water mark and stall time
    // on the running settings (every session created from now on takes them).
    const limits = lastSession(srv).ctx.settings().limits;
    limits.outputHighWater = 64 * 1024;
    limits.outputStallMs = 1000;
    await c.logout();
  });
  after(async () => {
    await srv.stop();
  });

  /** A logged-in TLS connection (INBOX selected, or not) that has stopped reading. */
  async function nonReader(select: boolean): Promise<{ socket: tls.TLSSocket; session: ImapSession; closed: Promise<void> }> {
    const socket = tls.connect({ port: srv.imapsPort, host: '127.0.0.1', rejectUnauthorized: false });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    let seen = '';
    socket.on('data', (d: Buffer) => (seen += d.toString('latin1')));
    socket.write(`a LOGIN alice@example.test alice-pw\r\nb ${select ? 'SELECT INBOX' : 'NOOP'}\r\n`);
    await waitFor(() => /\r\nb OK /.test(seen), 10_000, 'login');
    const session = lastSession(srv);
    socket.removeAllListeners('data');
    socket.pause();
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    return { socket, session, closed };
  }

  /** Reads what is left and waits for the end: a dropped client sees its connection close. */
  async function drain(socket: tls.TLSSocket, closed: Promise<void>): Promise<number> {
    let bytes = 0;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.resume();
    await Promise.race([
      closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error('the connection stayed open')), 20_000).unref()),
    ]);
    return bytes;
  }

  it('drops a client that asks for whole messages again and again and never reads them', async () => {
    const { socket, session, closed } = await nonReader(true);
    const requests = 200;
    for (let i = 0; i < requests; i++) socket.write(`f${i} FETCH 1:* BODY[]\r\n`);
    await waitFor(() => session.closed, 20_000, 'the session to be dropped');
    const asked = requests * 5 * BIG;
    assert.ok(session.writer.bytesOut < 64 * 1024 * 1024, `${session.writer.bytesOut} bytes written of ${asked} asked for`);
    assert.ok(srv.logs.some((l) => l.session === session.id && l.msg === 'client stopped reading output; closing'));
    // The message file whose literal was cut short is closed with the session, not left to the GC.
    await waitFor(() => openMessageFiles(srv).length === 0, 1000, `message files closed (open: ${openMessageFiles(srv).join(', ')})`);
    await drain(socket, closed);
  });

  it('drops a client that pipelines cheap commands and never reads the answers', async () => {
    // Not selected: nothing but the answers is written, every command completes at once.
    const { socket, session, closed } = await nonReader(false);
    // CAPABILITY answers with about 20 times its own size.
    const chunk = Buffer.from('c CAPABILITY\r\n'.repeat(5000));
    let sent = 0;
    while (!session.closed && sent < 8 * 1024 * 1024) {
      if (!socket.write(chunk))
        await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), new Promise((resolve) => setTimeout(resolve, 50))]);
      sent += chunk.length;
    }
    await waitFor(() => session.closed, 20_000, 'the session to be dropped');
    const answers = (sent / 14) * 300;
    assert.ok(
      session.writer.bytesOut < 32 * 1024 * 1024,
      `${session.writer.bytesOut} bytes written for ${sent} bytes of commands (answers: ${answers})`,
    );
    await drain(socket, closed);
    assert.ok(!srv.logs.some((l) => (l.level as number) >= 50), 'no error-level log lines');
  });
});

describe('IMAP idle timeout', () => {
  it('counts only the time the server waits for the client, not a slow command', async () => {
    // The second LOGIN waits out a 1.5 s failure delay, three times the idle timeout.
    const srv = await startTestServer({
      config: { imap: { idle_timeout_before_login: '500ms' }, auth: { failure_delay: '1500ms', failure_delay_max: '1500ms' } },
    });
    try {
      const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await c.greeting();
      assert.equal((await c.login('alice@example.test', 'wrong')).code, 'AUTHENTICATIONFAILED');
      const ok = await c.login('alice@example.test', 'alice-pw');
      assert.equal(ok.status, 'OK', ok.text);
      assert.equal((await c.cmd('NOOP')).status, 'OK');
      await c.logout();
      // Silence is still timed: before login, a client that says nothing is logged out.
      const quiet = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
      await quiet.greeting();
      assert.equal((await quiet.cmd('NOOP')).status, 'OK');
      assert.match((await quiet.line()) ?? '', /^\* BYE Autologout/);
      assert.ok(await quiet.waitClosed(2000));
      // STARTTLS, then no handshake (what followed the command in cleartext is dropped): the wait
      // for the ClientHello is the client's silence too.
      const mute = await ImapTestClient.connect(srv.imapPort);
      await mute.greeting();
      mute.write('T1 STARTTLS\r\nT2 NOOP\r\n');
      assert.match((await mute.line()) ?? '', /^T1 OK /);
      assert.ok(await mute.waitClosed(10_000), 'the connection was closed');
    } finally {
      await srv.stop();
    }
  });
});
