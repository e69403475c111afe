/**
 * Dovecot 2.3's Maildir formats (src/store/dovecot): unit cases, the Dovecot-made fixture in
 * test/fixtures/dovecot-maildir read back equal to what doveadm reported, Dovecot's own answers
 * to CREATE for the name rules, dot-lock contention, and Dovecot (doveadm, from dovecot-core)
 * reading what this code wrote.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isMailError } from '../../src/errors.js';
import {
  acquireDotlock,
  addKeyword,
  appendUidlist,
  buildMaildirName,
  compareMaildirNames,
  createFolder,
  decodeMUtf7,
  decodeMUtf7Checked,
  dirToMailbox,
  DotlockTimeoutError,
  encodeMUtf7,
  findKeyword,
  formatKeywords,
  formatSubscriptions,
  formatUidlist,
  generateMailboxGuid,
  isValidMUtf7,
  keywordNames,
  listFolders,
  mailboxNameProblem,
  newUidlist,
  nextUid,
  nextUidValidity,
  normalizeInbox,
  parseKeywords,
  parseMailboxName,
  parseMaildirName,
  parseSubscriptions,
  parseUidlist,
  readKeywords,
  readSubscriptions,
  readUidlist,
  setMaildirFlags,
  setSubscribed,
  utf8ToMailboxName,
  writeKeywords,
  writeUidlist,
  type KeywordTable,
  type MaildirSystemFlag,
  type Uidlist,
} from '../../src/store/dovecot/index.js';
import { doveadmOn, requireDoveadm } from '../helpers/dovecot.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtureDir = path.join(here, '..', 'fixtures', 'dovecot-maildir');

interface DovecotReport {
  list: string[];
  subscribed: string[];
  status: Array<{ mailbox: string; messages: string; uidnext: string; uidvalidity: string }>;
  messages: Array<Record<string, string>>;
}
interface CreateAnswer {
  name: string;
  ok: boolean;
  response: string;
  created: string[];
}

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'maild-dovecot-'));
  temps.push(d);
  return d;
}

/** A copy of the fixture Maildir, with the empty folders git does not keep. */
async function copyFixture(): Promise<string> {
  const root = path.join(await tempDir(), 'Maildir');
  await cp(path.join(fixtureDir, 'Maildir'), root, { recursive: true });
  const empty = (await readFile(path.join(fixtureDir, 'empty-dirs.txt'), 'utf8')).split('\n').filter(Boolean);
  for (const d of empty) await mkdir(path.join(root, d), { recursive: true });
  return root;
}

const report: DovecotReport = JSON.parse(await readFile(path.join(fixtureDir, 'dovecot.json'), 'utf8'));
const createAnswers: Record<'/' | '.', CreateAnswer[]> = JSON.parse(await readFile(path.join(fixtureDir, 'imap-create.json'), 'utf8'));

// ---------------------------------------------------------------------------------------------

describe('modified UTF-7', () => {
  it('encodes and decodes the RFC 3501 and Dovecot examples', () => {
    assert.equal(encodeMUtf7('Entwürfe'), 'Entw&APw-rfe');
    assert.equal(decodeMUtf7('Entw&APw-rfe'), 'Entwürfe');
    assert.equal(decodeMUtf7('~peter/mail/&U,BTFw-/&ZeVnLIqe-'), '~peter/mail/台北/日本語');
    assert.equal(encodeMUtf7('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-');
    assert.equal(encodeMUtf7('R&D'), 'R&-D');
    assert.equal(decodeMUtf7('&-'), '&');
    assert.equal(encodeMUtf7('😀'), '&2D3eAA-');
    assert.equal(decodeMUtf7('&2D3eAA-'), '😀');
  });

  it('round-trips arbitrary text', () => {
    const alphabet = ['a', 'Z', ' ', '&', '-', '~', '/', '.', 'ä', 'ß', 'é', '日', '本', '😀', '\u00a0', '\u007f', '\u0001', '+', ','];
    let seed = 42;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let n = 0; n < 500; n++) {
      let s = '';
      const len = Math.floor(rnd() * 12);
      for (let i = 0; i < len; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      const enc = encodeMUtf7(s);
      assert.ok(/^[\x20-\x7e]*$/.test(enc), enc);
      if (s.includes('\u0000')) continue;
      assert.equal(decodeMUtf7(enc), s, `${JSON.stringify(s)} -> ${enc}`);
      assert.equal(encodeMUtf7(decodeMUtf7(enc)), enc);
    }
  });

  it('rejects what Dovecot rejects, with a reason', () => {
    const bad: Record<string, RegExp> = {
      '&AOQ': /not closed/,
      '&': /not closed/,
      'x&y': /not closed/,
      '&AEE-': /printable ASCII/,
      '&AGEAYgBj-': /printable ASCII/,
      '&AOQ-&AOQ-': /adjacent/,
      '&AAA-': /NUL/,
      '&3AA-': /surrogate/,
      '&2D3-': /surrogate/,
      '&A-': /length/,
      '&AB-': /half/,
      '&AO-': /half/,
      '&A*Q-': /base64 character/,
      Entwürfe: /non-ASCII/,
      'x\u0001': /control/,
      'x\u007f': /control/,
    };
    for (const [input, reason] of Object.entries(bad)) {
      const r = decodeMUtf7Checked(input);
      assert.equal(r.ok, false, JSON.stringify(input));
      assert.match((r as { reason: string }).reason, reason, JSON.stringify(input));
      assert.equal(isValidMUtf7(input), false);
    }
    assert.throws(() => decodeMUtf7('&AOQ'), TypeError);
    assert.throws(() => encodeMUtf7('\ud800'), TypeError);
    // Accepted like Dovecot: non-zero padding bits, '&-' after a run, control chars encoded.
    assert.equal(decodeMUtf7('&AOR-'), 'ä');
    assert.equal(decodeMUtf7('&Jjo-&-'), '☺&');
    assert.equal(decodeMUtf7('&AAE-'), '\u0001');
  });
});

// ---------------------------------------------------------------------------------------------

describe('Maildir file names', () => {
  it('parses Dovecot names with sizes, flags and keywords', () => {
    const n = parseMaildirName('1795327904.M670500P25412.vm,S=173,W=181:2,Fa');
    assert.equal(n.base, '1795327904.M670500P25412.vm,S=173,W=181');
    assert.equal(n.unique, '1795327904.M670500P25412.vm');
    assert.deepEqual(n.fields, [
      { key: 'S', value: '173' },
      { key: 'W', value: '181' },
    ]);
    assert.equal(n.size, 173);
    assert.equal(n.vsize, 181);
    assert.equal(n.info, '2,Fa');
    assert.deepEqual(n.flags, ['\\Flagged']);
    assert.deepEqual(n.keywords, [0]);
    const all = parseMaildirName('x:2,DFRST');
    assert.deepEqual(all.flags, ['\\Draft', '\\Flagged', '\\Answered', '\\Seen', '\\Deleted']);
    const none = parseMaildirName('1795327904.M775451P25433.vm,S=176,W=184');
    assert.equal(none.info, undefined);
    assert.deepEqual(none.flags, []);
  });

  it('keeps what Dovecot does not know: P, other letters, a second flag set, Courier names', () => {
    const p = parseMaildirName('1234.5678.host,S=1000:2,PS');
    assert.equal(p.size, 1000);
    assert.equal(p.vsize, undefined);
    assert.deepEqual(p.flags, ['\\Seen']);
    assert.equal(p.otherFlags, 'P'); // Dovecot 2.3 maps no flag to 'P'
    assert.equal(setMaildirFlags(p.name, ['\\Seen', '\\Flagged']), '1234.5678.host,S=1000:2,FPS');
    assert.equal(setMaildirFlags('x:2,S,extra', ['\\Draft']), 'x:2,D,extra');
    assert.equal(setMaildirFlags('x:1,something', ['\\Seen']), 'x:2,S');
    const odd = parseMaildirName('x,S=12a,W=99999999999999999999,Z=1,flag:2,S');
    assert.equal(odd.size, undefined);
    assert.equal(odd.vsize, undefined);
    assert.deepEqual(
      odd.fields.map((f) => f.key),
      ['S', 'W', 'Z', 'flag'],
    );
  });

  it('writes flags in ASCII order, merged around unknown letters like Dovecot', () => {
    assert.equal(setMaildirFlags('x', []), 'x:2,');
    assert.equal(setMaildirFlags('x', ['\\Seen', '\\Answered']), 'x:2,RS');
    assert.equal(setMaildirFlags('x:2,S', ['\\Seen'], [3, 1, 3]), 'x:2,Sbd');
    assert.equal(setMaildirFlags('x:2,FSab', ['\\Deleted'], [25]), 'x:2,Tz');
    assert.equal(setMaildirFlags('x:2,P_', ['\\Seen', '\\Draft'], [0]), 'x:2,DPS_a');
    assert.equal(setMaildirFlags('x:2,~', ['\\Seen'], [2]), 'x:2,Sc~');
    assert.equal(setMaildirFlags('y;2,S', ['\\Flagged'], [], { sep: ';' }), 'y;2,F');
    assert.throws(() => setMaildirFlags('x', ['\\Recent' as MaildirSystemFlag]), RangeError);
    assert.throws(() => setMaildirFlags('x', [], [26]), RangeError);
  });

  it('builds names and round-trips them', () => {
    const base = '1795327904.M1P2.vm,S=10,W=12';
    for (const flags of [[], ['\\Seen'], ['\\Draft', '\\Deleted']] as MaildirSystemFlag[][]) {
      for (const keywords of [[], [0], [4, 2, 25]]) {
        const name = buildMaildirName({ base, flags, keywords });
        const p = parseMaildirName(name);
        assert.equal(p.base, base);
        assert.deepEqual([...p.flags].sort(), [...flags].sort());
        assert.deepEqual(
          [...p.keywords].sort((a, b) => a - b),
          [...keywords].sort((a, b) => a - b),
        );
        assert.equal(setMaildirFlags(name, p.flags, p.keywords), name);
      }
    }
    assert.equal(buildMaildirName({ base, noInfo: true }), base);
    assert.equal(buildMaildirName({ base, flags: ['\\Seen'], otherFlags: 'P' }), `${base}:2,PS`);
    assert.throws(() => buildMaildirName({ base: 'a:b' }), RangeError);
  });

  it('orders names by delivery time as Dovecot does', () => {
    const names = ['1700000001.M5P1.h', '1700000000.M20P1.h:2,S', '1700000000.M3P1.h', '999999999.M1P1.h'];
    assert.deepEqual([...names].sort(compareMaildirNames), [
      '999999999.M1P1.h',
      '1700000000.M3P1.h',
      '1700000000.M20P1.h:2,S',
      '1700000001.M5P1.h',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------

const sampleUidlist = [
  '3 V1795327904 N1 G63c73726a087026b3e63000083ecc375 Pfoo',
  '1 :1.M1P1.vm,S=173,W=181',
  '2 W200 G1234 :2.M1P1.vm',
  '5 O3 Xnew :5.M1P1.vm,S=1:2,S',
  '',
].join('\n');

describe('dovecot-uidlist', () => {
  it('parses version 3 with extension fields, keeping unknown ones', () => {
    const r = parseUidlist(sampleUidlist);
    assert.equal(r.corrupt, false);
    assert.deepEqual(r.problems, []);
    const u = r.uidlist!;
    assert.equal(u.version, 3);
    assert.equal(u.uidValidity, 1795327904);
    assert.equal(u.headerNextUid, 1);
    assert.equal(nextUid(u), 6); // Dovecot appends without updating N
    assert.equal(u.guid, '63c73726a087026b3e63000083ecc375');
    assert.deepEqual(u.headerExt, [{ key: 'P', value: 'foo' }]);
    assert.deepEqual(
      u.records.map((r) => [r.uid, r.base, r.ext]),
      [
        [1, '1.M1P1.vm,S=173,W=181', []],
        [
          2,
          '2.M1P1.vm',
          [
            { key: 'W', value: '200' },
            { key: 'G', value: '1234' },
          ],
        ],
        [
          5,
          '5.M1P1.vm,S=1',
          [
            { key: 'O', value: '3' },
            { key: 'X', value: 'new' },
          ],
        ],
      ],
    );
  });

  it('accepts header fields in any order and version 1', () => {
    const u = parseUidlist('3 N7 Gabcdefabcdefabcdefabcdefabcdefab  V9\n3 :a\n').uidlist!;
    assert.equal(u.uidValidity, 9);
    assert.equal(nextUid(u), 7);
    const v1 = parseUidlist('1 1000 12\n3 1000.P1.host:2,S\n11 1001.P2.host\n');
    assert.equal(v1.corrupt, false);
    assert.equal(v1.uidlist!.version, 1);
    assert.deepEqual(
      v1.uidlist!.records.map((r) => [r.uid, r.base]),
      [
        [3, '1000.P1.host'],
        [11, '1001.P2.host'],
      ],
    );
    assert.equal(nextUid(v1.uidlist!), 12);
  });

  it('formats what it parses (round trip), writing the effective next UID', () => {
    const u = parseUidlist(sampleUidlist).uidlist!;
    const text = formatUidlist(u);
    assert.equal(text.split('\n')[0], '3 V1795327904 N6 G63c73726a087026b3e63000083ecc375 Pfoo');
    assert.equal(text.split('\n')[3], '5 O3 Xnew :5.M1P1.vm,S=1');
    const again = parseUidlist(text).uidlist!;
    assert.deepEqual({ ...again, headerNextUid: 0 }, { ...u, headerNextUid: 0 });
    assert.equal(formatUidlist(again), text);
  });

  it('tolerates malformed input without throwing', () => {
    const cases: Array<[string, (r: ReturnType<typeof parseUidlist>) => void]> = [
      ['', (r) => assert.equal(r.uidlist, null)],
      ['garbage\n1 :a\n', (r) => assert.equal(r.uidlist, null)],
      ['3 V1 N1', (r) => assert.equal(r.uidlist, null)], // header without LF: Dovecot reads nothing
      ['2 V1 N1\n', (r) => assert.match(r.problems[0]!, /unsupported version 2/)],
      ['3 V0 N1 G' + '0'.repeat(32) + '\n', (r) => assert.equal(r.uidlist, null)],
      ['3 V99999999999 N1\n', (r) => assert.equal(r.uidlist, null)],
      ['3 V1 N1 Gxyz\n', (r) => assert.match(r.problems[0]!, /GUID/)],
      ['\u0000\u0001\u00ff\n\n\n', (r) => assert.equal(r.uidlist, null)],
    ];
    for (const [text, check] of cases) {
      const r = parseUidlist(text);
      assert.equal(r.corrupt, true, JSON.stringify(text));
      check(r);
    }
    const body = (lines: string[]) => parseUidlist(['3 V5 N1', ...lines].join('\n'));
    // A truncated last line is an append in progress: not read, not corrupt.
    const partial = body(['1 :a', '2 :b', '3 :c,S=1']);
    assert.equal(partial.corrupt, false);
    assert.equal(partial.partialLine, '3 :c,S=1');
    assert.deepEqual(
      partial.uidlist!.records.map((r) => r.uid),
      [1, 2],
    );
    // Bad lines are skipped, good ones kept, and the file is flagged as Dovecot would.
    const bad = body(['1 :a', 'x :b', '0 :c', '4294967295 :huge', '99999999999999999999 :huger', '7 W1', '8 :d/e', '6 :f', '9 :g', '']);
    assert.equal(bad.corrupt, true);
    assert.deepEqual(
      bad.uidlist!.records.map((r) => [r.uid, r.base]),
      [
        [1, 'a'],
        [6, 'f'],
        [9, 'g'],
      ],
    );
    assert.ok(bad.problems.length >= 6, bad.problems.join('\n'));
    // Duplicates: the later line of a file wins (Dovecot drops the earlier UID).
    const dup = body(['1 :a', '2 :b', '3 :a:2,S', '']);
    assert.equal(dup.corrupt, false);
    assert.deepEqual(
      dup.uidlist!.records.map((r) => [r.uid, r.base]),
      [
        [2, 'b'],
        [3, 'a'],
      ],
    );
    assert.match(dup.problems[0]!, /duplicate/);
    // Invalid extension keys are dropped; CR before LF is ignored.
    const ext = body(['1 W10 x5 :a\r', '']);
    assert.deepEqual(ext.uidlist!.records[0], { uid: 1, base: 'a', ext: [{ key: 'W', value: '10' }] });
  });

  it('appends like Dovecot: header untouched, partial tail cut, order enforced', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'dovecot-uidlist');
    await writeFile(file, sampleUidlist + '6 :half-writt');
    const next = await appendUidlist(file, [
      { uid: 6, base: 'six', ext: [] },
      { uid: 10, base: 'ten:2,S', ext: [{ key: 'W', value: '5' }] },
    ]);
    assert.equal(next, 11);
    const text = await readFile(file, 'utf8');
    assert.equal(text, sampleUidlist + '6 :six\n10 W5 :ten\n');
    await assert.rejects(appendUidlist(file, [{ uid: 10, base: 'again', ext: [] }]), RangeError);
    await assert.rejects(appendUidlist(path.join(dir, 'missing'), []), /ENOENT/);
    await writeFile(file, 'broken\n');
    await assert.rejects(appendUidlist(file, [{ uid: 1, base: 'a', ext: [] }]), (e) => isMailError(e, 'STORAGE_ERROR'));
  });

  it('rewrites atomically through dovecot-uidlist.tmp, keeping the mode', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'dovecot-uidlist');
    await writeFile(file, sampleUidlist, { mode: 0o640 });
    const u = parseUidlist(sampleUidlist).uidlist!;
    u.records.splice(1, 1);
    await writeUidlist(file, u);
    assert.deepEqual((await readdir(dir)).sort(), ['dovecot-uidlist']);
    assert.equal((await stat(file)).mode & 0o777, 0o640);
    const back = (await readUidlist(file))!;
    assert.deepEqual(
      back.uidlist!.records.map((r) => r.uid),
      [1, 5],
    );
    assert.equal(back.uidlist!.headerNextUid, 6);
    assert.equal(await readUidlist(path.join(dir, 'none')), undefined);
    const fresh = newUidlist(1234);
    assert.equal(fresh.headerNextUid, 1);
    assert.match(formatUidlist(fresh), /^3 V1234 N1 G[0-9a-f]{32}\n$/);
    assert.throws(() =>
      formatUidlist({
        ...fresh,
        records: [
          { uid: 2, base: 'a', ext: [] },
          { uid: 2, base: 'b', ext: [] },
        ],
      }),
    );
    assert.throws(() => formatUidlist({ ...fresh, records: [{ uid: 1, base: 'a/b', ext: [] }] }));
  });

  it('generates Dovecot-style GUIDs: distinct, time and PID inside', () => {
    const g = new Set(Array.from({ length: 1000 }, () => generateMailboxGuid()));
    assert.equal(g.size, 1000);
    const one = Buffer.from([...g][0]!, 'hex');
    assert.ok(Math.abs(one.readUInt32LE(4) - Date.now() / 1000) < 5);
    assert.equal(one.readUInt32LE(8), process.pid);
  });
});

// ---------------------------------------------------------------------------------------------

describe('dovecot-keywords', () => {
  it('parses, skipping bad lines; the last line of an index wins', () => {
    const r = parseKeywords('0 $Forwarded\n1 Junk\nnospace\n26 TooFar\nx Name\n3 \n1 Junk2\r\n2 Projekt-X\n4 partial');
    assert.deepEqual(r.keywords, ['$Forwarded', 'Junk2', 'Projekt-X']);
    assert.equal(r.problems.length, 5);
    assert.equal(formatKeywords(r.keywords), '0 $Forwarded\n1 Junk2\n2 Projekt-X\n');
  });

  it('adds keywords at the first free letter, case-insensitively unique, at most 26', () => {
    const k: KeywordTable = ['a0', undefined, 'a2'];
    assert.equal(addKeyword(k, 'A0'), 0);
    assert.equal(addKeyword(k, 'new'), 1);
    assert.equal(findKeyword(k, 'NEW'), 1);
    for (let i = 3; i < 26; i++) assert.equal(addKeyword(k, `k${i}`), i);
    assert.equal(addKeyword(k, 'one-too-many'), null);
    assert.equal(addKeyword(k, 'k25'), 25);
    assert.throws(() => addKeyword([], 'bad name'), RangeError);
    assert.throws(() => addKeyword([], '\\Seen'), RangeError);
    assert.throws(() => addKeyword([], ''), RangeError);
    assert.throws(() => formatKeywords(new Array(27).fill('x')), RangeError);
  });

  it('names unknown letters as Dovecot does', () => {
    const k: KeywordTable = ['a', undefined, undefined, 'unknown-3'];
    assert.deepEqual(keywordNames(k, [0, 2, 3]), ['a', 'unknown-2', 'unknown-3']);
    const k2: KeywordTable = ['unknown-1'];
    assert.deepEqual(keywordNames(k2, [1]), ['unknown-1?']);
  });

  it('writes atomically and makes the mtime grow even within one second', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'dovecot-keywords');
    await writeKeywords(file, ['one']);
    const first = await readKeywords(file);
    assert.deepEqual(first.keywords, ['one']);
    await writeKeywords(file, ['one', 'two'], { previousMtimeSeconds: first.mtimeSeconds });
    const second = await readKeywords(file);
    assert.deepEqual(second.keywords, ['one', 'two']);
    assert.ok(second.mtimeSeconds > first.mtimeSeconds);
    await writeKeywords(file, ['one', 'two', 'three']);
    assert.ok((await readKeywords(file)).mtimeSeconds > second.mtimeSeconds);
    assert.deepEqual((await readdir(dir)).sort(), ['dovecot-keywords']);
    assert.deepEqual((await readKeywords(path.join(dir, 'none'))).keywords, []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('subscriptions', () => {
  it('reads version 2 (tabs between levels, tab-escaped) and version 1', () => {
    const v2 = parseSubscriptions('V\t2\n\nINBOX\nWork\tProjects\nEntw&APw-rfe\na\x01tb\x011\nlast');
    assert.equal(v2.version, 2);
    assert.deepEqual(v2.names, [['INBOX'], ['Work', 'Projects'], ['Entw&APw-rfe'], ['a\tb\x01'], ['last']]);
    assert.equal(formatSubscriptions(v2), 'V\t2\n\nINBOX\nWork\tProjects\nEntw&APw-rfe\na\x01tb\x011\nlast\n');
    const v1 = parseSubscriptions('INBOX\nWork.Projects\n\nSent\n');
    assert.equal(v1.version, 1);
    assert.deepEqual(v1.names, [['INBOX'], ['Work', 'Projects'], ['Sent']]);
    assert.equal(formatSubscriptions(v1), 'INBOX\nWork.Projects\nSent\n');
    assert.deepEqual(parseSubscriptions('').names, []);
  });

  it('changes the file as Dovecot does, keeping its version', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'subscriptions');
    assert.equal(await setSubscribed(file, ['inbox'], true), true);
    assert.equal(await setSubscribed(file, ['Work', 'Projects'], true), true);
    assert.equal(await setSubscribed(file, ['Work', 'Projects'], true), false);
    assert.equal(await readFile(file, 'utf8'), 'V\t2\n\nINBOX\nWork\tProjects\n');
    assert.equal(await setSubscribed(file, ['INBOX'], false), true);
    assert.equal(await setSubscribed(file, ['Nope'], false), false);
    assert.equal(await readFile(file, 'utf8'), 'V\t2\n\nWork\tProjects\n');
    await writeFile(file, 'Sent\nWork.Projects\n');
    assert.equal(await setSubscribed(file, ['Trash'], true), true);
    assert.equal(await readFile(file, 'utf8'), 'Sent\nWork.Projects\nTrash\n');
    await assert.rejects(setSubscribed(file, ['a.b'], true), RangeError);
    assert.deepEqual((await readdir(dir)).sort(), ['subscriptions']);
    assert.deepEqual(await readSubscriptions(path.join(dir, 'none')), { version: 2, names: [] });
  });
});

// ---------------------------------------------------------------------------------------------

describe('Maildir++ folder names', () => {
  it('agrees with Dovecot 2.3 on every name of imap-create.json, and on its directory', () => {
    const knownDifferences = new Set([
      'x\u0000y', // Dovecot's IMAP parser cuts the literal at the NUL and creates "x"
      '&AOQ-/', // Dovecot's CREATE cuts the trailing '/' by the mUTF-7 length, from the UTF-8 name: it stays
    ]);
    for (const separator of ['/', '.'] as const) {
      for (const a of createAnswers[separator]) {
        if (knownDifferences.has(a.name)) continue;
        // CREATE drops one trailing separator first (RFC 3501 6.3.3).
        const name = a.name.length > 1 && a.name.endsWith(separator) ? a.name.slice(0, -1) : a.name;
        const problem = mailboxNameProblem(name, { separator });
        assert.equal(problem === null, a.ok, `${separator} ${JSON.stringify(a.name)}: Dovecot "${a.response}", we ${problem}`);
        if (a.created.length === 1) assert.equal(parseMailboxName(name, { separator }).dir, a.created[0]);
        const dovecotReason = /(?:Invalid mailbox name: )?([^\]]*)$/.exec(a.response.replace(/^NO (\[\w+\] )?/, ''))![1]!;
        if (!a.ok && /separator|Begins with|Character not allowed|must not have|Control|Name is empty/.test(dovecotReason)) {
          assert.equal(problem, dovecotReason.replace('in new mailbox names', 'in new mailbox names'), a.name);
        }
      }
    }
  });

  it('validation table', () => {
    const table: Array<[string, '/' | '.', string | null]> = [
      ['INBOX', '/', null],
      ['iNbOx', '/', null],
      ['', '/', 'Name is empty'],
      ['/a', '/', 'Begins with hierarchy separator'],
      ['a/', '/', 'Ends with hierarchy separator'],
      ['a//b', '/', 'Has adjacent hierarchy separators'],
      ['.a', '.', 'Begins with hierarchy separator'],
      ['a..b', '.', 'Has adjacent hierarchy separators'],
      ['a/..', '/', "Character not allowed in mailbox name: '.'"],
      ['a.b', '/', "Character not allowed in mailbox name: '.'"],
      ['a/b', '.', "Name must not have '/' characters"],
      ['~a', '/', "Begins with '~'"],
      ['a/~b', '/', null],
      ['a\u0000b', '/', 'Control characters not allowed in mailbox names'],
      ['a\tb', '/', 'Control characters not allowed in mailbox names'],
      ['&AAE-', '/', 'Control characters not allowed in new mailbox names'],
      ['&AOQ', '/', "Mailbox name is not valid mUTF-7: an '&' is not closed by '-'"],
      ['&AGE-', '/', 'Mailbox name is not valid mUTF-7: encodes printable ASCII that must appear as itself'],
      ['Entwürfe', '/', 'Mailbox name is not valid mUTF-7: contains an unencoded non-ASCII character'],
      ['cur', '/', null],
      ['Work/new', '/', null],
      ['x'.repeat(254), '/', null],
      ['x'.repeat(255), '/', 'Mailbox name too long (its directory name would exceed 255 bytes)'],
      ['x'.repeat(256), '/', 'Mailbox name too long'],
    ];
    for (const [name, separator, reason] of table) {
      assert.equal(mailboxNameProblem(name, { separator }), reason, JSON.stringify(name));
    }
    assert.equal(mailboxNameProblem('Work/tmp', { rejectReserved: true }), 'Contains reserved name');
    assert.equal(mailboxNameProblem('&AAE-', { existing: true }), null);
    assert.equal(mailboxNameProblem('x'.repeat(300), { existing: true }), null);
    assert.throws(
      () => parseMailboxName('a//b'),
      (e) => isMailError(e, 'BAD_MAILBOX_NAME') && /adjacent/.test(e.message),
    );
  });

  it('maps names to directories, INBOX in any case', () => {
    assert.deepEqual(parseMailboxName('inbox'), { name: 'INBOX', display: 'INBOX', levels: ['INBOX'], dir: '' });
    assert.equal(parseMailboxName('Inbox/Sub').dir, '.INBOX.Sub');
    assert.equal(parseMailboxName('inboxes').dir, '.inboxes');
    assert.equal(normalizeInbox('inbox.x', '.'), 'INBOX.x');
    assert.equal(normalizeInbox('inbox.x', '/'), 'inbox.x');
    const e = parseMailboxName('Entw&APw-rfe/&AOR-');
    assert.deepEqual(e, {
      name: 'Entw&APw-rfe/&AOQ-',
      display: 'Entwürfe/ä',
      levels: ['Entw&APw-rfe', '&AOQ-'],
      dir: '.Entw&APw-rfe.&AOQ-',
    });
    assert.equal(parseMailboxName('Work.Projects', { separator: '.' }).dir, '.Work.Projects');
    assert.equal(utf8ToMailboxName('Entwürfe/日本'), 'Entw&APw-rfe/&ZeVnLA-');
    assert.deepEqual(dirToMailbox('.Work.Projects'), {
      name: 'Work/Projects',
      display: 'Work/Projects',
      levels: ['Work', 'Projects'],
      dir: '.Work.Projects',
      canonical: true,
    });
    for (const d of ['.', '..', '..DOVECOT-TRASHED', 'cur', '.a..b', '.INBOX', '.a.']) assert.equal(dirToMailbox(d), null, d);
    const raw = dirToMailbox('.Entwürfe')!;
    assert.deepEqual([raw.name, raw.display, raw.canonical], ['Entw&APw-rfe', 'Entwürfe', false]);
  });

  it('lists a Maildir with hierarchy, skipping files and internal names, and creates folders', async () => {
    const root = await tempDir();
    for (const d of ['cur', 'new', 'tmp', '.Sent', '.a.b.c', '.Entw&APw-rfe', '..DOVECOT-TRASHED', '.INBOX.x']) {
      await mkdir(path.join(root, d), { recursive: true });
    }
    await writeFile(path.join(root, '.notadir'), '');
    const made = await createFolder(root, 'Work/Projects', { uidlist: false });
    assert.equal(made.dir, '.Work.Projects');
    for (const f of ['cur', 'new', 'tmp', 'maildirfolder']) await stat(path.join(root, '.Work.Projects', f));
    const withList = await createFolder(root, 'Sent/Old');
    const u = (await readUidlist(path.join(root, '.Sent.Old', 'dovecot-uidlist')))!.uidlist!;
    assert.equal(u.uidValidity, withList.uidValidity);
    assert.equal(nextUid(u), 1);
    await rm(path.join(root, '.Sent.Old'), { recursive: true });
    await rm(path.join(root, 'dovecot-uidvalidity'));
    for (const f of await readdir(root)) if (f.startsWith('dovecot-uidvalidity.')) await rm(path.join(root, f));
    await assert.rejects(createFolder(root, 'Work/Projects'), (e) => isMailError(e, 'ALREADY_EXISTS'));
    await assert.rejects(createFolder(root, 'a.b'), (e) => isMailError(e, 'BAD_MAILBOX_NAME'));
    const list = await listFolders(root);
    assert.deepEqual(
      list.map((f) => [f.name, f.display, f.exists, f.hasChildren]),
      [
        ['INBOX', 'INBOX', true, true],
        ['Entw&APw-rfe', 'Entwürfe', true, false],
        ['INBOX/x', 'INBOX/x', true, false],
        ['Sent', 'Sent', true, false],
        ['Work', 'Work', false, true],
        ['Work/Projects', 'Work/Projects', true, false],
        ['a', 'a', false, true],
        ['a/b', 'a/b', false, true],
        ['a/b/c', 'a/b/c', true, false],
      ],
    );
    const dotted = await listFolders(root, { separator: '.' });
    assert.ok(dotted.some((f) => f.name === 'a.b.c' && f.dir === '.a.b.c'));
    assert.deepEqual(
      (await listFolders(path.join(root, 'missing'))).map((f) => f.name),
      ['INBOX'],
    );
  });

  it('gives UIDVALIDITY values as Dovecot: time first, then +1 per folder', async () => {
    const root = await tempDir();
    const now = Date.UTC(2030, 0, 1);
    const first = await nextUidValidity(root, now);
    assert.equal(first, now / 1000);
    assert.equal(await readFile(path.join(root, 'dovecot-uidvalidity'), 'utf8'), first.toString(16).padStart(8, '0'));
    const more = await Promise.all([1, 2, 3, 4, 5].map(() => nextUidValidity(root, now)));
    assert.deepEqual(
      [...more].sort(),
      [1, 2, 3, 4, 5].map((i) => first + i),
    );
    assert.deepEqual((await readdir(root)).sort(), ['dovecot-uidvalidity', `dovecot-uidvalidity.${(first + 5).toString(16)}`]);
    const fixture = await copyFixture();
    const last = parseInt(await readFile(path.join(fixture, 'dovecot-uidvalidity'), 'latin1'), 16);
    assert.equal(await nextUidValidity(fixture), last + 1);
    assert.ok((await readdir(fixture)).includes(`dovecot-uidvalidity.${(last + 1).toString(16)}`));
  });
});

// ---------------------------------------------------------------------------------------------

describe('the Dovecot-made fixture', () => {
  let root: string;
  before(async () => {
    root = await copyFixture();
  });

  it('reads every mailbox, UID, flag, keyword and size that Dovecot reported', async () => {
    const folders = await listFolders(root);
    assert.deepEqual(
      folders
        .filter((f) => f.exists)
        .map((f) => f.display)
        .sort(),
      [...report.list].sort(),
    );
    assert.ok(folders.some((f) => f.name === 'Work' && !f.exists && f.hasChildren));
    for (const status of report.status) {
      const mb = parseMailboxName(utf8ToMailboxName(status.mailbox));
      const dir = path.join(root, mb.dir);
      const parsed = (await readUidlist(path.join(dir, 'dovecot-uidlist')))!;
      assert.equal(parsed.corrupt, false, parsed.problems.join('; '));
      const u = parsed.uidlist!;
      assert.equal(u.uidValidity, Number(status.uidvalidity), status.mailbox);
      assert.equal(nextUid(u), Number(status.uidnext), status.mailbox);
      const { keywords } = await readKeywords(path.join(dir, 'dovecot-keywords'));
      const files = new Map<string, string>();
      for (const sub of ['new', 'cur']) {
        for (const f of await readdir(path.join(dir, sub))) files.set(parseMaildirName(f).base, f);
      }
      const ours = u.records
        .filter((r) => files.has(r.base))
        .map((r) => {
          const n = parseMaildirName(files.get(r.base)!);
          return {
            uid: String(r.uid),
            flags: [...n.flags, ...keywordNames(keywords, n.keywords)].sort().join(' '),
            guid: n.base,
            size: String(n.size),
            vsize: String(n.vsize),
          };
        });
      const theirs = report.messages
        .filter((m) => m.mailbox === status.mailbox)
        .map((m) => ({
          uid: m.uid!,
          flags: m
            .flags!.split(' ')
            .filter((f) => f !== '' && f !== '\\Recent')
            .sort()
            .join(' '),
          guid: m.guid!,
          size: m['size.physical']!,
          vsize: m['size.virtual']!,
        }));
      assert.deepEqual(ours, theirs, status.mailbox);
      assert.equal(ours.length, Number(status.messages));
    }
    // The expunged message's record is still in the uidlist, as Dovecot left it.
    const inbox = (await readUidlist(path.join(root, 'dovecot-uidlist')))!.uidlist!;
    assert.equal(inbox.headerNextUid, 1);
    assert.equal(inbox.records.length, 10);
  });

  it('reads the subscriptions Dovecot reported', async () => {
    const subs = await readSubscriptions(path.join(root, 'subscriptions'));
    assert.equal(subs.version, 2);
    assert.deepEqual(
      subs.names.map((levels) => parseMailboxName(levels.join('/')).display),
      report.subscribed,
    );
  });

  it('round-trips its files byte for byte where Dovecot would write the same', async () => {
    for (const f of ['dovecot-keywords', '.Work.Projects/dovecot-keywords']) {
      const text = await readFile(path.join(root, f), 'utf8');
      assert.equal(formatKeywords(parseKeywords(text).keywords), text);
    }
    const subs = await readFile(path.join(root, 'subscriptions'), 'utf8');
    assert.equal(formatSubscriptions(parseSubscriptions(subs)), subs);
    const sent = await readFile(path.join(root, '.Sent', 'dovecot-uidlist'), 'utf8');
    const u = parseUidlist(sent).uidlist!;
    assert.equal(formatUidlist({ ...u, headerNextUid: 0 }).replace(/ N3 /, ' N1 '), sent);
  });
});

// ---------------------------------------------------------------------------------------------

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  const pid = child.pid!;
  await new Promise((r) => child.on('exit', r));
  return pid;
}

describe('dot-locks', () => {
  it('excludes two async contenders from each other', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'dovecot-uidlist');
    let inside = 0;
    let max = 0;
    const order: string[] = [];
    const worker = async (name: string) => {
      for (let i = 0; i < 5; i++) {
        const lock = await acquireDotlock(file, { timeoutMs: 10_000 });
        inside++;
        max = Math.max(max, inside);
        assert.equal(await readFile(lock.lockPath, 'utf8'), `${process.pid}:${os.hostname()}`);
        order.push(name);
        await new Promise((r) => setTimeout(r, 5));
        inside--;
        assert.equal(await lock.release(), true);
      }
    };
    await Promise.all([worker('a'), worker('b'), worker('c')]);
    assert.equal(max, 1);
    assert.equal(order.length, 15);
    await assert.rejects(stat(`${file}.lock`), /ENOENT/);
  });

  it('works with the link() method too', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'subscriptions');
    const a = await acquireDotlock(file, { useExcl: false });
    const b = acquireDotlock(file, { useExcl: false, timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 50));
    await a.release();
    await (await b).release();
    assert.deepEqual(await readdir(dir), []);
  });

  it('breaks a lock whose process is gone', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'dovecot-uidlist');
    await writeFile(`${file}.lock`, `${await deadPid()}:${os.hostname()}`);
    const old = new Date(Date.now() - 10_000);
    await utimes(`${file}.lock`, old, old);
    const t0 = Date.now();
    const lock = await acquireDotlock(file, { timeoutMs: 5000 });
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(await readFile(lock.lockPath, 'utf8'), `${process.pid}:${os.hostname()}`);
    await lock.release();
  });

  it('breaks a leftover lock with our own PID that this process does not hold', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'x');
    await writeFile(`${file}.lock`, `${process.pid}:${os.hostname()}`);
    const old = new Date(Date.now() - 10_000);
    await utimes(`${file}.lock`, old, old);
    (await acquireDotlock(file, { timeoutMs: 3000 })).release();
  });

  it('waits for a live lock and times out with a clear error', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'dovecot-uidlist');
    await writeFile(`${file}.lock`, `${process.ppid}:${os.hostname()}`);
    const old = new Date(Date.now() - 10_000);
    await utimes(`${file}.lock`, old, old);
    const t0 = Date.now();
    await assert.rejects(acquireDotlock(file, { timeoutMs: 700, staleMs: 60_000 }), (e: unknown) => {
      assert.ok(e instanceof DotlockTimeoutError);
      assert.ok(isMailError(e, 'TEMP_FAIL'));
      assert.match(e.message, /timed out after 0\.\d s waiting for lock .*dovecot-uidlist\.lock \(held by pid \d+ on /);
      return true;
    });
    assert.ok(Date.now() - t0 >= 650);
    assert.equal(await readFile(`${file}.lock`, 'utf8'), `${process.ppid}:${os.hostname()}`);
    await assert.rejects(acquireDotlock(file, { timeoutMs: 0 }), DotlockTimeoutError);
  });

  it('breaks a lock from another host once nothing changed for stale_timeout', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'subscriptions');
    await writeFile(`${file}.lock`, '4242:some-other-host');
    const t0 = Date.now();
    const lock = await acquireDotlock(file, { timeoutMs: 10_000, staleMs: 600 });
    assert.ok(Date.now() - t0 >= 500);
    assert.equal(await lock.release(), true);
  });

  it('does not delete a lock that someone else took over', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'f');
    const lock = await acquireDotlock(file);
    await writeFile(`${file}.other`, '1:elsewhere'); // a new inode, renamed over ours
    await rename(`${file}.other`, lock.lockPath);
    assert.equal(await lock.isLocked(), false);
    assert.equal(await lock.release(), false);
    assert.equal(await readFile(lock.lockPath, 'utf8'), '1:elsewhere');
    await assert.rejects(acquireDotlock(path.join(dir, 'no', 'such', 'dir')), /ENOENT/);
  });
});

// ---------------------------------------------------------------------------------------------

const message = (n: number) => `From: a@example.org\nSubject: ours ${n}\n\nbody ${n}\n`;

// Without doveadm these fail (naming the dovecot-core package) rather than skip: CI installs it.
describe('Dovecot reads what this code wrote', () => {
  it('sees our folders, UIDs, flags, keywords and subscriptions', async () => {
    requireDoveadm();
    const root = await copyFixture();
    const separator = '/';
    // A new folder made entirely by this code.
    const mb = await createFolder(root, utf8ToMailboxName('Projekte/Übersicht'), { separator });
    const dir = path.join(root, mb.dir);
    const kw: KeywordTable = [];
    const wanted: Array<{ uid: number; flags: MaildirSystemFlag[]; keywords: string[] }> = [
      { uid: 5, flags: ['\\Seen'], keywords: [] },
      { uid: 7, flags: ['\\Answered', '\\Flagged'], keywords: ['$Forwarded', 'Team-A'] },
      { uid: 9, flags: [], keywords: ['Team-A'] },
    ];
    assert.ok(mb.uidValidity! > 0);
    const u: Uidlist = { ...newUidlist(123456789), headerNextUid: 20 };
    for (const w of wanted) {
      const body = message(w.uid);
      const base = `1700000000.M${w.uid}P1.test,S=${Buffer.byteLength(body)},W=${Buffer.byteLength(body) + 4}`;
      const name = buildMaildirName({ base, flags: w.flags, keywords: w.keywords.map((k) => addKeyword(kw, k)!) });
      await writeFile(path.join(dir, 'cur', name), body);
      u.records.push({ uid: w.uid, base, ext: [] });
    }
    const lock = await acquireDotlock(path.join(dir, 'dovecot-uidlist'));
    await writeUidlist(path.join(dir, 'dovecot-uidlist'), u);
    await writeKeywords(path.join(dir, 'dovecot-keywords'), kw);
    await lock.release();
    // INBOX: rewrite the uidlist (the expunged record dropped), append a new message, add a keyword.
    const inboxList = path.join(root, 'dovecot-uidlist');
    const inbox = (await readUidlist(inboxList))!.uidlist!;
    const present = new Set((await readdir(path.join(root, 'new'))).map((f) => parseMaildirName(f).base));
    await writeUidlist(inboxList, { ...inbox, records: inbox.records.filter((r) => present.has(r.base)) });
    const body = message(11);
    const base11 = `1800000000.M1P1.test,S=${Buffer.byteLength(body)},W=${Buffer.byteLength(body) + 4}`;
    await writeFile(path.join(root, 'new', base11), body);
    assert.equal(await appendUidlist(inboxList, [{ uid: 11, base: base11, ext: [] }]), 12);
    const inboxKw = await readKeywords(path.join(root, 'dovecot-keywords'));
    const ours = addKeyword(inboxKw.keywords, 'Ours')!;
    await writeKeywords(path.join(root, 'dovecot-keywords'), inboxKw.keywords);
    const tenBase = inbox.records.find((r) => r.uid === 10)!.base;
    const ten = (await readdir(path.join(root, 'new'))).find((f) => parseMaildirName(f).base === tenBase)!;
    const renamed = setMaildirFlags(ten, ['\\Seen'], [ours]);
    await cp(path.join(root, 'new', ten), path.join(root, 'cur', renamed));
    await rm(path.join(root, 'new', ten));
    // Subscriptions.
    assert.equal(await setSubscribed(path.join(root, 'subscriptions'), mb.levels, true), true);
    assert.equal(await setSubscribed(path.join(root, 'subscriptions'), ['Drafts'], false), true);

    const da = await doveadmOn(root);
    const list = (await da.json('mailbox', 'list')).map((m) => m.mailbox).sort();
    assert.deepEqual(list, [...report.list, 'Projekte/Übersicht'].sort());
    const subscribed = (await da.json('mailbox', 'list', '-s')).map((m) => m.mailbox);
    assert.deepEqual(subscribed, [...report.subscribed.filter((s) => s !== 'Drafts'), 'Projekte/Übersicht']);
    const [status] = await da.json('mailbox', 'status', 'messages uidnext uidvalidity', 'Projekte/Übersicht');
    assert.deepEqual(status, { mailbox: 'Projekte/Übersicht', messages: '3', uidnext: '20', uidvalidity: '123456789' });
    const fetched = await da.json('fetch', 'uid flags', 'mailbox', 'Projekte/Übersicht', 'all');
    assert.deepEqual(
      fetched.map((m) => ({
        uid: Number(m.uid),
        flags: m
          .flags!.split(' ')
          .filter((f) => f && f !== '\\Recent')
          .sort(),
      })),
      wanted.map((w) => ({ uid: w.uid, flags: [...w.flags, ...w.keywords].sort() })),
    );
    const inboxFetch = await da.json('fetch', 'uid flags', 'mailbox', 'INBOX', 'all');
    assert.deepEqual(
      inboxFetch.map((m) => Number(m.uid)),
      [1, 2, 3, 4, 5, 6, 8, 9, 10, 11],
    );
    assert.deepEqual(
      inboxFetch
        .find((m) => m.uid === '10')!
        .flags!.split(' ')
        .filter((f) => f !== '\\Recent')
        .sort(),
      ['Ours', '\\Seen'],
    );
    const [inboxStatus] = await da.json('mailbox', 'status', 'uidnext uidvalidity', 'INBOX');
    assert.equal(inboxStatus!.uidnext, '12');
    assert.equal(inboxStatus!.uidvalidity, String(inbox.uidValidity));
  });

  it('Dovecot waits for our dovecot-uidlist lock before giving a UID', async () => {
    requireDoveadm();
    const root = await copyFixture();
    const base = `1800000000.M1P1.test,S=${Buffer.byteLength(message(1))}`;
    await writeFile(path.join(root, '.Trash', 'new', base), message(1)); // delivered, no UID yet
    const da = await doveadmOn(root);
    const uidlist = path.join(root, '.Trash', 'dovecot-uidlist');
    const lock = await acquireDotlock(uidlist);
    let exited = false;
    // A sync must assign the new file a UID, so it takes the lock (doveadm save would not wait:
    // without UIDPLUS it only try-locks and leaves the file in new/ for the next sync).
    const fetching = da.spawn(['fetch', 'uid guid', 'mailbox', 'Trash', 'all']).then((code) => {
      exited = true;
      return code;
    });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(exited, false, 'doveadm went ahead while we held the lock');
    assert.equal(parseUidlist(await readFile(uidlist, 'utf8')).uidlist!.records.length, 0);
    await lock.release();
    assert.equal(await fetching, 0);
    const after = parseUidlist(await readFile(uidlist, 'utf8')).uidlist!;
    assert.deepEqual(
      after.records.map((r) => [r.uid, r.base]),
      [[1, base]],
    );
  });
});
