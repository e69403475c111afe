import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  bodyStructure,
  envelope,
  extractSection,
  formatSectionSpec,
  headerFields,
  parseSectionSpec,
  parseStructure,
  toCrlf,
  type MimePart,
} from '../../src/imap/mime/index.js';
import { Literal, encodeToBuffer, type ImapValue } from '../../src/imap/values.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'mime');

interface Expected {
  message: string;
  dovecot: string;
  items: Record<string, string>;
  sections: Record<string, string>;
}

function loadCorpus(): Array<{ name: string; raw: Buffer; expected: Expected }> {
  return readdirSync(join(FIXTURES, 'expected'))
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const expected = JSON.parse(readFileSync(join(FIXTURES, 'expected', f), 'utf8')) as Expected;
      return { name: f.replace(/\.json$/, ''), raw: readFileSync(join(FIXTURES, 'messages', expected.message)), expected };
    });
}

/**
 * Items where we deliberately answer differently from Dovecot, with the reason. Keys are
 * "<fixture> <item>". Empty: every recorded answer is matched byte for byte.
 */
const DELIBERATE_DIFFERENCES: Record<string, string> = {};

/** The wire form of a FETCH item's value, as latin1 text (the JSON holds it that way). */
function wire(value: ImapValue): string {
  return encodeToBuffer(value).toString('latin1');
}

function answer(msg: Buffer, root: MimePart, item: string): string {
  switch (item) {
    case 'ENVELOPE':
      return wire(envelope(msg, root));
    case 'BODY':
      return wire(bodyStructure(msg, root, false));
    case 'BODYSTRUCTURE':
      return wire(bodyStructure(msg, root, true));
    case 'RFC822.SIZE':
      return wire(msg.length);
  }
  throw new Error(`unknown item ${item}`);
}

function sectionAnswer(msg: Buffer, root: MimePart, section: string): string {
  const spec = parseSectionSpec(section);
  if (spec === null) return '<invalid section>';
  const data = extractSection(msg, root, spec);
  return wire(new Literal(data ?? Buffer.alloc(0)));
}

describe('IMAP MIME structure against Dovecot 2.3', () => {
  const corpus = loadCorpus();
  let compared = 0;
  let matched = 0;

  it('has the corpus', () => {
    assert.ok(corpus.length >= 40, `only ${corpus.length} fixtures`);
  });

  for (const { name, raw, expected } of corpus) {
    it(`${name}: ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE and ${Object.keys(expected.sections).length} sections`, () => {
      const msg = toCrlf(raw);
      const root = parseStructure(msg);
      const mismatches: string[] = [];
      const check = (item: string, ours: string, theirs: string): void => {
        compared++;
        if (ours === theirs) {
          matched++;
          return;
        }
        const key = `${name} ${item}`;
        if (DELIBERATE_DIFFERENCES[key] !== undefined) return;
        mismatches.push(`${item}\n  dovecot: ${JSON.stringify(theirs.slice(0, 2000))}\n  ours:    ${JSON.stringify(ours.slice(0, 2000))}`);
      };
      for (const [item, theirs] of Object.entries(expected.items)) check(item, answer(msg, root, item), theirs);
      for (const [section, theirs] of Object.entries(expected.sections)) {
        check(`BODY[${section}]`, sectionAnswer(msg, root, section), theirs);
      }
      assert.deepEqual(mismatches, [], `${mismatches.length} answers differ from Dovecot:\n${mismatches.join('\n')}`);
    });
  }

  it('matched every recorded answer byte for byte', () => {
    const differences = Object.keys(DELIBERATE_DIFFERENCES).length;
    console.log(`# ${matched}/${compared} Dovecot answers matched byte for byte; ${differences} deliberate differences`);
    assert.equal(matched + differences, compared);
  });
});

describe('toCrlf', () => {
  it('adds CR to bare LFs only, and leaves a bare CR alone (as Dovecot istream-crlf)', () => {
    const cases: Array<[string, string]> = [
      ['a\nb\n', 'a\r\nb\r\n'],
      ['\n', '\r\n'],
      ['a\r\nb', 'a\r\nb'],
      ['a\rb\r', 'a\rb\r'],
      ['a\r\r\n', 'a\r\r\n'],
      ['\r\n\n\r', '\r\n\r\n\r'],
      ['', ''],
    ];
    for (const [input, output] of cases) {
      assert.equal(toCrlf(Buffer.from(input, 'latin1')).toString('latin1'), output, JSON.stringify(input));
    }
    const already = Buffer.from('x\r\n');
    assert.equal(toCrlf(already), already, 'no copy when nothing changes');
  });
});

describe('section specs', () => {
  it('parses what Dovecot accepts and rejects what it answers BAD to', () => {
    assert.deepEqual(parseSectionSpec(''), { path: [] });
    assert.deepEqual(parseSectionSpec('1.2.3'), { path: [1, 2, 3] });
    assert.deepEqual(parseSectionSpec('header'), { path: [], text: 'HEADER' });
    assert.deepEqual(parseSectionSpec('2.MIME'), { path: [2], text: 'MIME' });
    assert.deepEqual(parseSectionSpec('1.TEXT'), { path: [1], text: 'TEXT' });
    assert.deepEqual(parseSectionSpec('HEADER.FIELDS (From "X-Y" to)'), {
      path: [],
      text: 'HEADER.FIELDS',
      fields: ['FROM', 'X-Y', 'TO'],
    });
    assert.deepEqual(parseSectionSpec('3.HEADER.FIELDS.NOT (Received)'), {
      path: [3],
      text: 'HEADER.FIELDS.NOT',
      fields: ['RECEIVED'],
    });
    for (const bad of [
      'MIME',
      '1.',
      '1..2',
      '.1',
      '1MIME',
      'HEADER.FIELDS',
      'HEADER.FIELDS ()',
      'HEADERS',
      'TEXT.1',
      '1.FOO',
      'HEADER.FIELDS (a',
    ]) {
      assert.equal(parseSectionSpec(bad), null, bad);
    }
    assert.equal(formatSectionSpec(parseSectionSpec('1.header.fields (from "x y")')!), '1.HEADER.FIELDS (FROM "X Y")');
  });
});

describe('headerFields', () => {
  it('gives the raw fields of a part, folding kept in raw and removed in value', () => {
    const msg = toCrlf(
      Buffer.from(
        'Subject: a\n  folded\nX-A:b\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=z\n\n--z\nContent-Type: text/plain\nX-Part:  1\n\nbody\n--z--\n',
      ),
    );
    const root = parseStructure(msg);
    const top = headerFields(msg, root);
    assert.deepEqual(
      top.map((f) => [f.name, f.raw.toString(), f.value.toString()]),
      [
        ['Subject', 'Subject: a\r\n  folded', 'a  folded'],
        ['X-A', 'X-A:b', 'b'],
        ['MIME-Version', 'MIME-Version: 1.0', '1.0'],
        ['Content-Type', 'Content-Type: multipart/mixed; boundary=z', 'multipart/mixed; boundary=z'],
      ],
    );
    const part = headerFields(msg, root.children[0]!);
    assert.deepEqual(
      part.map((f) => [f.name, f.value.toString()]),
      [
        ['Content-Type', 'text/plain'],
        ['X-Part', '1'],
      ],
    );
  });
});

/** Checks that bytes are one well-formed IMAP value (lists, NIL, numbers, quoted, literals). */
function assertImapSyntax(bytes: Buffer): void {
  let pos = 0;
  const fail = (why: string): never =>
    assert.fail(`${why} at ${pos}: ${JSON.stringify(bytes.toString('latin1', Math.max(0, pos - 40), pos + 40))}`);
  const value = (): void => {
    const c = bytes[pos];
    if (c === 0x28) {
      pos++;
      let first = true;
      for (;;) {
        if (bytes[pos] === 0x29) {
          pos++;
          return;
        }
        if (!first && bytes[pos] === 0x20) pos++;
        if (pos >= bytes.length) fail('unterminated list');
        first = false;
        value();
      }
    } else if (c === 0x22) {
      pos++;
      while (bytes[pos] !== 0x22) {
        if (pos >= bytes.length) fail('unterminated quoted string');
        const d = bytes[pos]!;
        if (d === 0x0d || d === 0x0a || d >= 0x80 || d === 0) fail('bad char in quoted string');
        if (d === 0x5c) {
          pos++;
          if (bytes[pos] !== 0x22 && bytes[pos] !== 0x5c) fail('bad escape');
        }
        pos++;
      }
      pos++;
    } else if (c === 0x7b) {
      const close = bytes.indexOf('}\r\n', pos, 'latin1');
      if (close < 0) fail('bad literal');
      const n = Number(bytes.toString('latin1', pos + 1, close));
      if (!Number.isInteger(n) || n < 0) fail('bad literal size');
      pos = close + 3 + n;
      if (pos > bytes.length) fail('short literal');
      const data = bytes.subarray(close + 3, pos);
      if (data.indexOf(0) >= 0) fail('NUL in literal');
    } else {
      const start = pos;
      while (pos < bytes.length && ![0x20, 0x28, 0x29].includes(bytes[pos]!)) pos++;
      const atom = bytes.toString('latin1', start, pos);
      if (atom !== 'NIL' && !/^\d+$/.test(atom)) fail(`unexpected atom ${JSON.stringify(atom)}`);
    }
  };
  value();
  if (pos !== bytes.length) fail('trailing bytes');
}

/** The tree's ranges are inside the message and inside their parents. */
function assertRanges(msg: Buffer, part: MimePart, lo: number, hi: number): void {
  const ok =
    lo <= part.headerStart &&
    part.headerStart <= part.headerEnd &&
    part.headerEnd <= part.bodyStart &&
    part.bodyStart <= part.bodyEnd &&
    part.bodyEnd <= hi &&
    hi <= msg.length;
  assert.ok(ok, `bad ranges ${JSON.stringify([lo, part.headerStart, part.headerEnd, part.bodyStart, part.bodyEnd, hi])}`);
  for (const c of part.children) assertRanges(msg, c, part.bodyStart, part.bodyEnd);
}

const FUZZ_SECTIONS = [
  '',
  'HEADER',
  'TEXT',
  '1',
  '1.MIME',
  '1.HEADER',
  '1.TEXT',
  '2.1',
  '1.1.1',
  'HEADER.FIELDS (From Subject)',
  'HEADER.FIELDS.NOT (Received)',
  '2.HEADER.FIELDS (To)',
].map((s) => parseSectionSpec(s)!);

function exercise(msg: Buffer): void {
  const root = parseStructure(msg);
  assertRanges(msg, root, 0, msg.length);
  assertImapSyntax(encodeToBuffer(envelope(msg, root)));
  assertImapSyntax(encodeToBuffer(envelope(msg)));
  assertImapSyntax(encodeToBuffer(bodyStructure(msg, root, false)));
  assertImapSyntax(encodeToBuffer(bodyStructure(msg, root, true)));
  for (const spec of FUZZ_SECTIONS) {
    const data = extractSection(msg, root, spec);
    if (data !== null) assert.equal(data.indexOf(0), -1, 'NUL in section data');
  }
  headerFields(msg, root);
}

describe('hostile input', () => {
  it('survives random mutations of the corpus for 2 seconds: no throw, no hang, valid IMAP values', () => {
    const corpus = loadCorpus().map((c) => c.raw);
    // deterministic PRNG, so a failure can be replayed from the printed seed
    let seed = Number(process.env.MIME_FUZZ_SEED ?? Date.now() % 1_000_000);
    const firstSeed = seed;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const snippets = [
      '\n',
      '\r\n',
      '\r',
      '--',
      '\n--',
      '"',
      '\\',
      '(',
      ')',
      '<',
      '>',
      ';',
      ':',
      ',',
      '@',
      '=',
      '*',
      '\0',
      '\t',
      ' ',
      'Content-Type: multipart/mixed; boundary=',
      'Content-Type: message/rfc822\n',
      'boundary',
      '=?',
      '?=',
      '\n\n',
      'MIME-Version: 1.0\n',
      '\xff',
    ];
    const deadline = Date.now() + 2000;
    let runs = 0;
    let slowest = 0;
    while (Date.now() < deadline) {
      const base = corpus[rand(corpus.length)]!;
      let buf = Buffer.from(base);
      const edits = 1 + rand(20);
      for (let e = 0; e < edits; e++) {
        const at = rand(buf.length + 1);
        switch (rand(5)) {
          case 0: // flip a byte
            if (buf.length > 0) buf[Math.min(at, buf.length - 1)] = rand(256);
            break;
          case 1: // delete a run
            buf = Buffer.concat([buf.subarray(0, at), buf.subarray(Math.min(buf.length, at + rand(40)))]);
            break;
          case 2: // insert a snippet
            buf = Buffer.concat([buf.subarray(0, at), Buffer.from(snippets[rand(snippets.length)]!, 'latin1'), buf.subarray(at)]);
            break;
          case 3: {
            // duplicate a run (nesting, repeated boundaries)
            const len = rand(200);
            buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at, at + len), buf.subarray(at)]);
            break;
          }
          case 4: // truncate
            buf = buf.subarray(0, at);
            break;
        }
      }
      const t0 = performance.now();
      try {
        exercise(toCrlf(buf));
        exercise(buf); // not CRLF-normalised input must not break anything either
      } catch (err) {
        throw new Error(`seed ${firstSeed}, run ${runs}: ${(err as Error).message}\ninput: ${JSON.stringify(buf.toString('latin1'))}`);
      }
      slowest = Math.max(slowest, performance.now() - t0);
      runs++;
    }
    console.log(`# fuzz: ${runs} mutated messages (seed ${firstSeed}), slowest ${slowest.toFixed(1)} ms`);
    assert.ok(runs > 50);
    assert.ok(slowest < 1000, `a mutated message took ${slowest} ms`);
  });

  it('parses pathological structures into bounded, valid results', () => {
    // 100 nested multiparts whose bodies are lines of "--" that prefix-match no boundary
    const parts: string[] = ['MIME-Version: 1.0\n'];
    for (let i = 0; i < 100; i++)
      parts.push(
        `Content-Type: multipart/mixed; boundary=b${i}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\n--b${i}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n`,
      );
    parts.push('\n', '--b0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n'.repeat(100_000));
    const deep = toCrlf(Buffer.from(parts.join('')));
    // 10000 parts (the limit) and then more boundaries
    const many = toCrlf(
      Buffer.from('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n' + '--x\n\nbody\n'.repeat(20_000) + '--x--\n'),
    );
    // a header of 100000 addresses and a 1 MB header line
    const addresses = toCrlf(Buffer.from(`To: ${'a@b, '.repeat(100_000)}c@d\nSubject: ${'s'.repeat(1_000_000)}\n\nbody\n`));
    for (const [label, msg] of [
      ['deep', deep],
      ['many', many],
      ['addresses', addresses],
    ] as const) {
      const t0 = performance.now();
      exercise(msg);
      const ms = performance.now() - t0;
      // A figure to read, not a timed assertion: the benchmark scripts own speed.
      console.log(`# ${label}: ${(msg.length / 1e6).toFixed(1)} MB in ${ms.toFixed(0)} ms`);
    }
    const root = parseStructure(many);
    assert.equal(root.children.length, 9999, 'Dovecot stops at 10000 parts in all');
  });
});

describe('performance', () => {
  it('parses a 50 MB message with a 30 MB base64 attachment in reasonable time and memory', () => {
    const b64Line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n';
    const textLine = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n';
    const head =
      'From: a@example.com\nTo: b@example.com\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=BIG\n\n' +
      '--BIG\nContent-Type: text/plain\n\n';
    const mid =
      '--BIG\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=big.bin\n\n';
    const stored = Buffer.concat([
      Buffer.from(head),
      Buffer.from(textLine.repeat(Math.ceil(20e6 / textLine.length))),
      Buffer.from(mid),
      Buffer.from(b64Line.repeat(Math.ceil(30e6 / b64Line.length))),
      Buffer.from('--BIG--\n'),
    ]);
    if (global.gc) global.gc();
    const heap0 = process.memoryUsage();
    const t0 = performance.now();
    const msg = toCrlf(stored);
    const t1 = performance.now();
    const root = parseStructure(msg);
    const t2 = performance.now();
    const bs = encodeToBuffer(bodyStructure(msg, root, true));
    const section = extractSection(msg, root, parseSectionSpec('2')!)!;
    const t3 = performance.now();
    const heap1 = process.memoryUsage();
    console.log(
      `# ${(msg.length / 1e6).toFixed(1)} MB message: toCrlf ${(t1 - t0).toFixed(0)} ms, parseStructure ${(t2 - t1).toFixed(0)} ms, ` +
        `BODYSTRUCTURE + BODY[2] ${(t3 - t2).toFixed(0)} ms; buffers +${((heap1.arrayBuffers - heap0.arrayBuffers) / 1e6).toFixed(1)} MB (the CRLF copy)`,
    );
    assert.equal(root.children.length, 2);
    assert.match(
      bs.toString(),
      /^\(\("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" \d+ \d+ NIL NIL NIL NIL\)\("application" "octet-stream" NIL NIL NIL "base64" \d+ NIL \("attachment" \("filename" "big.bin"\)\) NIL NIL\) "mixed"/,
    );
    assert.ok(section.length > 30e6);
    assert.ok(t2 - t1 < 10_000, `parse took ${t2 - t1} ms`);
  });
});
