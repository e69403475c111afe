/**
 * maild-cache (src/store/mail/cache.ts): the file format, what a torn tail or a damaged record
 * costs (a miss for that record only), foreign headers and schemas, compaction (other writers'
 * records kept), rebuild after deletion, concurrent appenders and the shared memory budget; and
 * the IMAP side's encoding of the SEARCH fields (src/imap/message-cache.ts).
 */
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CACHE_FILE, MetaCache, crc32, encodeRecord, headerLine, setCacheMemoryBudget } from '../../src/store/mail/cache.js';
import { lfToCrlf } from '../../src/store/line-ends.js';
import {
  CACHED_HEADERS,
  FIELD_ENVELOPE,
  FIELD_SEARCH,
  SearchMeta,
  cacheFields,
  decodedHeaders,
  storedOffset,
} from '../../src/imap/message-cache.js';
import { parseStructure } from '../../src/imap/mime/index.js';
import type { Token } from '../../src/imap/parser.js';
import { SearchParser, SearchRunner } from '../../src/imap/search.js';
import { silentLogger } from '../../src/log.js';
import { DirectorySyncer } from '../../src/store/dir-sync.js';
import { Mailbox, messageFileAccess } from '../../src/store/mail/mailbox.js';

const SCHEMA = 'test 1';
const all = () => true;

function fieldsFor(i: number): Array<[number, Buffer]> {
  return [
    [1, Buffer.from(`envelope of ${i} with "quotes" and\r\na CRLF {3}\r\nabc`)],
    [3, Buffer.from(`structure ${i} `.repeat(1 + (i % 7)))],
    [4, Buffer.from([0, 10, 13, 255, i & 0xff])],
  ];
}

function key(i: number): string {
  return `17000000${String(i).padStart(2, '0')}.M${i}P42Q${i}.host.example,S=${100 + i},W=${105 + i}`;
}

async function filled(dir: string, n: number, from = 0): Promise<MetaCache> {
  const c = new MetaCache(dir);
  await c.load(SCHEMA, all);
  for (let i = from; i < from + n; i++) c.put(key(i), 100 + i, fieldsFor(i));
  await c.flush();
  return c;
}

async function reopened(dir: string, isLive: (k: string) => boolean = all): Promise<MetaCache> {
  const c = new MetaCache(dir);
  await c.load(SCHEMA, isLive);
  return c;
}

function assertEntry(c: MetaCache, i: number): void {
  const e = c.lookup(key(i), 100 + i);
  assert.ok(e, `record ${i} present`);
  for (const [id, data] of fieldsFor(i)) assert.deepEqual(e.field(id), data, `field ${id} of ${i}`);
  assert.equal(e.field(2), undefined);
  assert.equal(e.size, 100 + i);
}

describe('metadata cache file', () => {
  let root: string;
  let n = 0;
  const fresh = async () => {
    const dir = path.join(root, `mb${++n}`);
    await import('node:fs/promises').then((f) => f.mkdir(dir));
    return dir;
  };
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'maild-cache-'));
  });
  after(async () => {
    setCacheMemoryBudget(512 * 1024 * 1024);
    await rm(root, { recursive: true, force: true });
  });

  it('writes a header line and length-prefixed, checksummed records, and reads them back', async () => {
    const dir = await fresh();
    const c = await filled(dir, 20);
    for (let i = 0; i < 20; i++) assertEntry(c, i);
    const file = await readFile(path.join(dir, CACHE_FILE));
    assert.equal(file.toString('latin1', 0, headerLine(SCHEMA).length), 'maild-cache 1 test 1\n');
    // The first record, byte for byte.
    const first = encodeRecord(key(0), 100, fieldsFor(0), crc32(SCHEMA))!;
    assert.match(first.toString('latin1'), /^\+\d+ [0-9a-f]{8} /);
    assert.equal(file.indexOf(first), headerLine(SCHEMA).length + 1, 'after the batch newline');
    const again = await reopened(dir);
    for (let i = 0; i < 20; i++) assertEntry(again, i);
    assert.equal(again.stats().records, 20);
    assert.equal(again.lookup('nope'), undefined);
  });

  it('a later record replaces an earlier one, merging fields', async () => {
    const dir = await fresh();
    const c = await filled(dir, 3);
    c.put(key(1), 101, [[2, Buffer.from('body')]]);
    await c.flush();
    const again = await reopened(dir);
    const e = again.lookup(key(1))!;
    assert.deepEqual(e.field(2), Buffer.from('body'));
    assert.deepEqual(e.field(1), fieldsFor(1)[0]![1], 'earlier fields merged in');
    assertEntry(again, 0);
  });

  it('a record made for another size is a miss', async () => {
    const dir = await fresh();
    const c = await filled(dir, 2);
    assert.equal(c.lookup(key(0), 999), undefined);
    assert.ok(c.lookup(key(1), -1), 'unknown size: no check');
  });

  it('drops a torn tail, and records appended after it are read', async () => {
    const dir = await fresh();
    await filled(dir, 5);
    const file = path.join(dir, CACHE_FILE);
    const torn = encodeRecord(key(5), 105, fieldsFor(5), crc32(SCHEMA))!;
    await appendFile(file, Buffer.concat([Buffer.from('\n'), torn.subarray(0, torn.length - 7)]));
    const c = await reopened(dir);
    for (let i = 0; i < 5; i++) assertEntry(c, i);
    assert.equal(c.lookup(key(5)), undefined, 'the torn record is a miss');
    // The next writer starts on a line of its own.
    c.put(key(5), 105, fieldsFor(5));
    c.put(key(6), 106, fieldsFor(6));
    await c.flush();
    const again = await reopened(dir);
    for (let i = 0; i < 7; i++) assertEntry(again, i);
  });

  it('a damaged record is a miss; the others and later ones are read', async () => {
    const dir = await fresh();
    await filled(dir, 10);
    const file = path.join(dir, CACHE_FILE);
    const buf = await readFile(file);
    // Flip a byte inside record 3's payload, and mangle record 6's length prefix.
    const at3 = buf.indexOf(Buffer.from(`structure 3`));
    buf[at3] = buf[at3]! ^ 0x20;
    const r6 = buf.indexOf(Buffer.from(key(6))) - 2;
    const line6 = buf.lastIndexOf(0x2b /* + */, r6);
    buf[line6 + 1] = 0x39; // '9...' : the framing no longer fits
    // Garbage lines between records.
    await writeFile(file, Buffer.concat([buf, Buffer.from('\nrandom garbage\n+12 zzzzzzzz nothing\n\n\n+5 00000000 ab\n')]));
    const c = await reopened(dir);
    assert.equal(c.lookup(key(3)), undefined, 'checksum mismatch');
    assert.equal(c.lookup(key(6)), undefined, 'framing broken');
    for (const i of [0, 1, 2, 4, 5, 7, 8, 9]) assertEntry(c, i);
    // Rebuilt lazily: the protocol layer parses again and puts.
    c.put(key(3), 103, fieldsFor(3));
    c.put(key(6), 106, fieldsFor(6));
    await c.flush();
    const again = await reopened(dir);
    for (let i = 0; i < 10; i++) assertEntry(again, i);
  });

  it('records of another schema are misses; a file of another schema or format is replaced', async () => {
    const dir = await fresh();
    await filled(dir, 3);
    const file = path.join(dir, CACHE_FILE);
    // An older maild appends with its own schema: its records fail the seeded checksum.
    const other = new MetaCache(dir);
    other.adopt('test 0');
    other.put(key(7), 107, fieldsFor(7));
    await other.flush();
    const c = await reopened(dir);
    assert.equal(c.lookup(key(7)), undefined);
    assertEntry(c, 0);
    // A whole file of another schema: everything is a miss and the next flush replaces it.
    const newer = new MetaCache(dir);
    await newer.load('test 2', all);
    assert.equal(newer.lookup(key(0)), undefined);
    newer.put(key(9), 109, fieldsFor(9));
    await newer.flush();
    const text = await readFile(file, 'latin1');
    assert.ok(text.startsWith('maild-cache 1 test 2\n'), text.slice(0, 40));
    assert.equal((await reopened(dir)).stats().records, 0, 'the old schema reads nothing now');
    // Garbage instead of a header: same.
    await writeFile(file, 'not a cache at all\n+3 abc\n');
    const g = await reopened(dir);
    assert.equal(g.stats().records, 0);
    g.put(key(1), 101, fieldsFor(1));
    await g.flush();
    assertEntry(await reopened(dir), 1);
  });

  it('rebuilds a deleted file, including under a loaded cache', async () => {
    const dir = await fresh();
    const c = await filled(dir, 3);
    const file = path.join(dir, CACHE_FILE);
    await rm(file);
    assertEntry(c, 0); // memory is unaffected
    c.put(key(3), 103, fieldsFor(3));
    await c.flush();
    const text = await readFile(file, 'latin1');
    assert.ok(text.startsWith(headerLine(SCHEMA)));
    const again = await reopened(dir);
    assertEntry(again, 3);
    assert.equal(again.lookup(key(0)), undefined, 'what the deleted file had is gone');
    // An empty file as well.
    await writeFile(file, '');
    const e = await reopened(dir);
    e.put(key(4), 104, fieldsFor(4));
    await e.flush();
    assertEntry(await reopened(dir), 4);
  });

  it('keeps both writers of two processes appending to one file', async () => {
    const dir = await fresh();
    const a = await filled(dir, 1);
    const b = await reopened(dir);
    for (let round = 0; round < 5; round++) {
      a.put(key(10 + round), 110 + round, fieldsFor(10 + round));
      b.put(key(20 + round), 120 + round, fieldsFor(20 + round));
      await Promise.all([a.flush(), b.flush()]);
    }
    const c = await reopened(dir);
    for (const i of [0, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24]) assertEntry(c, i);
  });

  it('compacts when expunged records dominate, keeping other writers\u2019 live records', async () => {
    const dir = await fresh();
    const file = path.join(dir, CACHE_FILE);
    const big = (i: number): Array<[number, Buffer]> => [[1, Buffer.alloc(4096, 0x41 + (i % 26))]];
    const c = new MetaCache(dir);
    const live = new Set<string>();
    await c.load(SCHEMA, (k) => live.has(k));
    for (let i = 0; i < 200; i++) {
      live.add(key(i));
      c.put(key(i), 100 + i, big(i));
    }
    await c.flush();
    // Another process appends a record for a live message this one never parsed.
    live.add(key(500));
    const other = await reopened(dir);
    other.put(key(500), 600, fieldsFor(500));
    await other.flush();
    assert.equal(c.needsCompaction, false);
    // 150 of 200 expunged: garbage dominates.
    for (let i = 0; i < 150; i++) {
      live.delete(key(i));
      c.forget(key(i));
    }
    assert.equal(c.needsCompaction, true);
    const before = (await stat(file)).size;
    assert.equal(await c.compact((k) => live.has(k)), true);
    const after = (await stat(file)).size;
    assert.ok(after < before / 3, `${before} -> ${after}`);
    assert.equal(c.stats().compactions, 1);
    assert.equal(c.needsCompaction, false);
    for (let i = 150; i < 200; i++) assert.deepEqual(c.lookup(key(i))!.field(1), big(i)[0]![1]);
    const again = await reopened(dir, (k) => live.has(k));
    assert.equal(again.stats().records, 51);
    for (let i = 150; i < 200; i++) assert.ok(again.lookup(key(i)));
    assert.ok(again.lookup(key(500)), 'the other writer\u2019s record survived');
    assert.equal(again.lookup(key(0)), undefined);
    // No temp file or lock left behind.
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(dir), [CACHE_FILE]);
    // Appends continue after the compaction.
    c.put(key(300), 400, fieldsFor(300));
    live.add(key(300));
    await c.flush();
    assertEntry2(await reopened(dir, (k) => live.has(k)), 300);
  });

  it('keeps records in memory when the file cannot be written', async () => {
    const dir = await fresh();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.join(dir, CACHE_FILE)); // EISDIR for every open, even as root
    const c = new MetaCache(dir);
    await c.load(SCHEMA, all);
    c.put(key(1), 101, fieldsFor(1));
    await c.flush();
    assertEntry(c, 1);
    c.put(key(2), 102, fieldsFor(2));
    await c.flush();
    assertEntry(c, 2);
    assert.equal(c.stats().pending, 0);
    assert.equal(c.needsCompaction, false);
  });

  it('does not compact while another process holds the lock', async () => {
    const dir = await fresh();
    const c = await filled(dir, 3);
    await writeFile(path.join(dir, `${CACHE_FILE}.lock`), `${process.pid + 1}:elsewhere`);
    assert.equal(await c.compact(all, true), false);
    await rm(path.join(dir, `${CACHE_FILE}.lock`));
    assert.equal(await c.compact(all, true), true);
  });

  it('survives a file truncated in the middle of a record', async () => {
    const dir = await fresh();
    await filled(dir, 10);
    const file = path.join(dir, CACHE_FILE);
    const size = (await stat(file)).size;
    await truncate(file, Math.floor(size / 2));
    const c = await reopened(dir);
    const present = [...Array(10).keys()].filter((i) => c.lookup(key(i)));
    assert.ok(present.length >= 3 && present.length < 10, String(present));
    for (const i of present) assertEntry(c, i);
  });

  it('loads lazily and drops the least recently used caches beyond the memory budget', async () => {
    const d1 = await fresh();
    const d2 = await fresh();
    await filled(d1, 50);
    await filled(d2, 50);
    const c1 = await reopened(d1);
    assert.ok(c1.loaded);
    setCacheMemoryBudget(c1.memoryBytes + 100);
    const c2 = await reopened(d2);
    assert.equal(c1.loaded, false, 'the older cache was dropped');
    assert.ok(c2.loaded);
    assert.equal(c1.lookup(key(1)), undefined, 'unloaded: a miss, not an error');
    await c1.load(SCHEMA, all);
    assertEntry(c1, 1);
    assert.equal(c2.loaded, false);
    setCacheMemoryBudget(512 * 1024 * 1024);
  });
});

function assertEntry2(c: MetaCache, i: number): void {
  const e = c.lookup(key(i));
  assert.ok(e, `record ${i}`);
  assert.deepEqual(e.field(1), fieldsFor(i)[0]![1]);
}

describe('IMAP fields in the cache', () => {
  const message = [
    'Received: from a by b',
    'From: =?UTF-8?Q?Zo=C3=AB?= <zoe@remote.example>',
    'To: alice@example.test,',
    '  "Bob" <bob@example.test>',
    'Subject: =?UTF-8?B?R3LDvMOfZQ==?= again',
    'Date: Sun, 22 Nov 2026 04:01:00 +0000',
    'Date: Mon, 23 Nov 2026 04:01:00 +0000',
    'X-Other: value',
    '',
    'body line',
    '',
  ].join('\n');

  it('stores the decoded header values SEARCH compares, and the header length', () => {
    const raw = Buffer.from(message);
    const data = lfToCrlf(raw);
    const root = parseStructure(data);
    const headers = decodedHeaders(data, root);
    const fields = new Map(cacheFields(raw, data, root));
    const meta = SearchMeta.from(fields.get(FIELD_SEARCH)!)!;
    assert.ok(meta);
    assert.equal(SearchMeta.from(fields.get(FIELD_SEARCH)!.subarray(0, 20)), undefined, 'a truncated field is refused');
    for (const h of CACHED_HEADERS) assert.deepEqual(meta.values(h), headers.get(h) ?? [], h);
    assert.deepEqual(meta.values('from'), ['Zoë <zoe@remote.example>']);
    assert.deepEqual(meta.values('to'), ['alice@example.test,  "Bob" <bob@example.test>']);
    assert.deepEqual(meta.values('subject'), ['Grüße again']);
    assert.equal(meta.values('date').length, 2);
    assert.equal(meta.headerBytes, message.indexOf('\n\n') + 2);
    assert.ok(fields.get(FIELD_ENVELOPE)!.toString('latin1').startsWith('("Mon, 23 Nov 2026'), 'the last Date, as Dovecot');
  });

  it('maps CRLF offsets back to the stored form', () => {
    const raw = Buffer.from('a\nbb\r\nccc\n\nx');
    const data = lfToCrlf(raw);
    for (let i = 0; i <= raw.length; i++) {
      const crlf = lfToCrlf(raw.subarray(0, i)).length;
      assert.equal(storedOffset(raw, crlf), i, `offset ${i}`);
    }
    assert.equal(storedOffset(raw, data.length), raw.length);
  });
});

describe('SEARCH from the cache', () => {
  let dir: string;
  const syncer = new DirectorySyncer();
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-cache-search-'));
  });
  after(async () => {
    await syncer.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers exactly as the files do, for random messages and criteria', async () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pick = <T>(list: readonly T[]): T => list[rnd(list.length)]!;
    const words = ['Alpha', 'beta', 'Grüße', 'ÄÖÜ', 'report', 'x', 'Zoë', 'mixed CASE', 'tab\there', 'a"quote'];
    const encoded = (w: string) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`;
    const value = () =>
      Array.from({ length: 1 + rnd(3) }, () => {
        const w = pick(words);
        return rnd(3) === 0 ? encoded(w) : w;
      }).join(rnd(4) === 0 ? '\n ' : ' ');
    const names = ['From', 'FROM', 'To', 'cc', 'Bcc', 'Subject', 'subject ', 'Date', 'Message-ID', 'In-Reply-To', 'X-Other', 'Received'];
    const dates = ['Sun, 22 Nov 2026 04:01:00 +0000', 'Sat, 1 Mar 2025 23:59:00 -1100', 'garbage date', '1 Jan 2000 00:00 +1400'];
    const mailbox = await Mailbox.open(dir, 'INBOX', { logger: silentLogger, syncer, root: dir }, true);
    for (let i = 0; i < 60; i++) {
      const lines: string[] = [];
      for (let h = rnd(7); h >= 0; h--) {
        const name = pick(names);
        lines.push(`${name}: ${name.trim().toLowerCase() === 'date' ? pick(dates) : value()}`);
      }
      await mailbox.append(Buffer.from(`${lines.join('\n')}\n\nbody ${i}\n`), 0, []);
    }
    const atom = (value: string): Token => ({ type: 'atom', value });
    const str = (value: string): Token => ({ type: 'string', value: Buffer.from(value), literal: false });
    const run = (tokens: Token[]) => new SearchRunner(mailbox, new SearchParser(tokens).parseAll()).run(mailbox.uids, () => false);
    await run([atom('FROM'), str('fill the cache')]);
    const criteria: Token[][] = [];
    for (let i = 0; i < 120; i++) {
      const kind = rnd(4);
      if (kind === 0)
        criteria.push([
          atom(pick(['FROM', 'TO', 'CC', 'BCC', 'SUBJECT'])),
          str(
            rnd(5) === 0
              ? ''
              : pick(words)
                  .slice(rnd(2), 4 + rnd(4))
                  .toLowerCase(),
          ),
        ]);
      else if (kind === 1)
        criteria.push([
          atom('HEADER'),
          str(pick(['message-id', 'IN-REPLY-TO', 'Date', 'subject'])),
          str(rnd(3) === 0 ? '' : pick(words).slice(0, 3)),
        ]);
      else if (kind === 2)
        criteria.push([
          atom(pick(['SENTBEFORE', 'SENTON', 'SENTSINCE'])),
          atom(pick(['22-Nov-2026', '1-Mar-2025', '2-Mar-2025', '1-Jan-2000', '31-Dec-1999'])),
        ]);
      else
        criteria.push([atom('OR'), atom('FROM'), str(pick(words).slice(0, 2)), atom('NOT'), atom('SUBJECT'), str(pick(words).slice(1, 3))]);
    }
    let matched = 0;
    for (const c of criteria) {
      const opens = messageFileAccess.opens;
      const cached = await run(c);
      assert.equal(messageFileAccess.opens, opens, 'answered from the cache');
      // BODY "" matches every message and makes the runner read and parse each file.
      const fromFiles = await run([...c, atom('BODY'), str('')]);
      assert.ok(messageFileAccess.opens > opens);
      assert.deepEqual(
        cached,
        fromFiles,
        JSON.stringify(c.map((t) => (t.type === 'string' ? t.value.toString() : t.type === 'atom' ? t.value : '()'))),
      );
      matched += cached.length;
    }
    assert.ok(matched > 100, `the criteria match something (${matched})`);
    // Other fields read only headers, with the same answers.
    const opens = messageFileAccess.opens;
    const other = await run([atom('HEADER'), str('x-other'), str('a')]);
    assert.equal(messageFileAccess.opens, opens + mailbox.count);
    assert.deepEqual(other, await run([atom('HEADER'), str('x-other'), str('a'), atom('BODY'), str('')]));
  });
});
