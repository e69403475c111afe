import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileSieve, runSieve, type SieveResult } from '../../src/sieve/index.js';
import { wildcardMatch } from '../../src/sieve/match.js';
import { decodeMimeWords, parseAddresses } from '../../src/sieve/message.js';
import { renderSieveResult } from '../../src/sieve/render.js';

const MESSAGE = [
  'From: "Alice (home)" <alice+news@Example.ORG>',
  'To: Friends: anne@example.com, ben@example.com;, user@example.com',
  'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from =?ISO-8859-1?B?Q2Fm6Q==?=',
  'X-Spam-Score: 12',
  'Received: a',
  'Received: b',
  'Content-Type: multipart/alternative; boundary=b1',
  '',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: base64',
  '',
  Buffer.from('plain text part with a secret word').toString('base64'),
  '--b1',
  'Content-Type: text/html',
  '',
  '<p>html part</p>',
  '--b1--',
  '',
].join('\r\n');

function run(script: string, opts: { message?: string; from?: string; limits?: Record<string, number> } = {}): SieveResult {
  const c = compileSieve(script);
  if (!c.ok) throw new Error(JSON.stringify(c.errors));
  return runSieve(
    c.script,
    { message: Buffer.from(opts.message ?? MESSAGE), envelope: { from: opts.from ?? 'bounce@example.org', to: 'user+box@example.com' } },
    { limits: opts.limits ?? {} },
  );
}
const types = (r: SieveResult): string[] => r.actions.map((a) => (a.type === 'fileinto' ? `fileinto:${a.mailbox}` : a.type));

describe('sieve interpreter', () => {
  it('keeps implicitly when nothing cancels the keep (RFC 5228 2.10.2)', () => {
    const r = run('if false { discard; }');
    assert.deepEqual(r, { actions: [{ type: 'keep' }], implicitKeep: true });
  });

  it('cancels the implicit keep by discard, fileinto and redirect but not by :copy', () => {
    assert.equal(run('discard;').implicitKeep, false);
    assert.equal(run('require "fileinto"; fileinto "A";').implicitKeep, false);
    assert.equal(run('redirect "a@b.c";').implicitKeep, false);
    assert.deepEqual(types(run('require ["fileinto","copy"]; fileinto :copy "A";')), ['fileinto:A', 'keep']);
  });

  it('carries out the same fileinto, keep or redirect once (RFC 5228 2.10.3)', () => {
    assert.deepEqual(types(run('require "fileinto"; fileinto "A"; fileinto "A"; keep; fileinto "INBOX";')), ['fileinto:A', 'keep']);
    assert.equal(run('redirect "a@b.c"; redirect "<a@b.c>";').actions.length, 1);
  });

  it('stops at stop and chooses one branch of if/elsif/else', () => {
    assert.deepEqual(
      types(run('require "fileinto"; if false { fileinto "A"; } elsif true { fileinto "B"; } else { fileinto "C"; } stop; discard;')),
      ['fileinto:B'],
    );
  });

  it('decodes RFC 2047 header values (UTF-8 and ISO-8859-1, adjacent words)', () => {
    assert.equal(decodeMimeWords('=?UTF-8?Q?a?= =?UTF-8?Q?b?= c'), 'ab c');
    assert.deepEqual(types(run('if header :is "subject" "Grüße from Café" { discard; }')), ['discard']);
  });

  it('parses addresses in groups and with comments; address parts and subaddress', () => {
    assert.deepEqual(parseAddresses('Friends: anne@example.com, "B, C" <ben@example.com>;, x@y (z)'), [
      'anne@example.com',
      'ben@example.com',
      'x@y',
    ]);
    assert.deepEqual(types(run('if address :is "to" "ben@example.com" { discard; }')), ['discard']);
    assert.deepEqual(types(run('if address :domain :is "from" "example.org" { discard; }')), ['discard']);
    assert.deepEqual(types(run('require "subaddress"; if address :detail "from" "news" { discard; }')), ['discard']);
    assert.deepEqual(types(run('require ["subaddress","envelope"]; if envelope :user "to" "user" { discard; }')), ['discard']);
    assert.deepEqual(types(run('require ["subaddress"]; if address :detail "to" "" { discard; }')), ['keep']);
  });

  it('matches the null envelope sender with "" (RFC 5228 5.4)', () => {
    assert.deepEqual(types(run('require "envelope"; if envelope :is "from" "" { discard; }', { from: '' })), ['discard']);
  });

  it(':matches follows RFC 5228 2.7.1 (a literal after "?" must match), with escapes and captures', () => {
    assert.equal(wildcardMatch('Monthly report', '?e*', 'i;ascii-casemap'), undefined);
    assert.deepEqual(wildcardMatch('Hello world', '?e*', 'i;ascii-casemap'), ['H', 'llo world']);
    assert.deepEqual(wildcardMatch('a*b', 'a\\*?', 'i;octet'), ['b']);
    assert.equal(wildcardMatch('A', 'a', 'i;octet'), undefined);
  });

  it('answers a pattern of many "*" on a long value without backtracking', () => {
    const message = `X-Long: ${'a'.repeat(100_000)}\r\n\r\nbody\r\n`;
    assert.deepEqual(types(run(`if header :matches "x-long" "${'*a'.repeat(1000)}b" { discard; }`, { message })), ['keep']);
    assert.deepEqual(types(run(`if header :matches "x-long" "${'*a'.repeat(1000)}" { discard; }`, { message })), ['discard']);
    assert.deepEqual(types(run(`if header :matches "x-long" "${'?'.repeat(100_000)}" { discard; }`, { message })), ['discard']);
  });

  it('stops a :matches over its compare budget with a runtime error and keeps the message', () => {
    const segment = 'a'.repeat(100) + 'b*';
    const r = run(`if header :matches "x-long" "*${segment.repeat(3)}" { discard; }`, {
      message: `X-Long: ${'a'.repeat(100_000)}\r\n\r\nbody\r\n`,
    });
    assert.match(r.error!, /cost limit/);
    assert.deepEqual(r.actions, [{ type: 'keep' }]);
    assert.equal(r.implicitKeep, true);
  });

  it('relational :count and :value with i;ascii-numeric (RFC 5231)', () => {
    const req = 'require ["relational","comparator-i;ascii-numeric"];';
    assert.deepEqual(types(run(`${req} if header :count "eq" :comparator "i;ascii-numeric" "received" "2" { discard; }`)), ['discard']);
    assert.deepEqual(types(run(`${req} if header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "9" { discard; }`)), ['discard']);
    // as a string, "12" < "9"
    assert.deepEqual(types(run(`${req} if header :value "gt" "x-spam-score" "9" { discard; }`)), ['keep']);
  });

  it('body :text, :content and :raw (RFC 5173)', () => {
    assert.deepEqual(types(run('require "body"; if body :contains "secret word" { discard; }')), ['discard']);
    assert.deepEqual(types(run('require "body"; if body :content "text/html" :contains "secret" { discard; }')), ['keep']);
    assert.deepEqual(types(run('require "body"; if body :raw :contains "secret" { discard; }')), ['keep']);
  });

  it('imap4flags: internal variable, :flags, hasflag', () => {
    const r = run(
      'require ["imap4flags","fileinto"]; addflag ["\\\\Seen", "a b"]; removeflag "a"; fileinto "X"; if hasflag "b" { keep :flags "\\\\Flagged"; }',
    );
    assert.deepEqual(r.actions, [
      { type: 'fileinto', mailbox: 'X', create: false, copy: false, flags: ['\\Seen', 'b'] },
      { type: 'keep', flags: ['\\Flagged'] },
    ]);
  });

  it('variables: set modifiers, ${N} from :matches, unknown names empty (RFC 5229)', () => {
    const r = run(
      'require ["variables","fileinto"]; set :upperfirst "a" "box"; if header :matches "from" "*<*@*>" { fileinto "${a}-${2}-${nope}"; }',
    );
    assert.deepEqual(types(r), ['fileinto:Box-alice+news-']);
  });

  it('vacation: arguments as the action, :days in seconds, the default handle from the arguments as written', () => {
    const r = run('require ["vacation","variables"]; set "s" "Away"; vacation :days 3 :subject "${s}" :addresses ["me@x.y"] "gone";');
    assert.deepEqual(r.actions[0], {
      type: 'vacation',
      reason: 'gone',
      mime: false,
      addresses: ['me@x.y'],
      subject: 'Away',
      period: 259200,
      handle: 'gone${s}<default-from><NO-MIME>',
    });
  });

  it('duplicates keep the first action with the later flags and do not cancel the implicit keep', () => {
    const r = run('require ["fileinto","copy","imap4flags"]; fileinto :copy :flags "a" "A"; fileinto :flags "b" "A";');
    assert.deepEqual(r.actions, [{ type: 'fileinto', mailbox: 'A', create: false, copy: true, flags: ['b'] }, { type: 'keep' }]);
    assert.equal(r.implicitKeep, true);
  });

  it('reject conflicts with redirect :copy too (as Pigeonhole)', () => {
    assert.match(run('require ["reject","copy"]; redirect :copy "a@b.c"; reject "no";').error!, /conflicts/);
  });

  it('reject conflicts with keep: runtime error, implicit keep', () => {
    const r = run('require "reject"; keep; reject "no";');
    assert.match(r.error!, /conflicts/);
    assert.deepEqual(r.actions, [{ type: 'keep' }]);
  });

  it('enforces the redirect and action limits at run time', () => {
    assert.match(run('redirect "a@b.c"; redirect "b@b.c";', { limits: { maxRedirects: 1 } }).error!, /redirect/);
    assert.match(run('require "fileinto"; fileinto "a"; fileinto "b"; fileinto "c";', { limits: { maxActions: 2 } }).error!, /actions/);
  });

  it('enforces the CPU time limit between commands', () => {
    const script = 'if false { discard; } keep;';
    const r = run(script, { limits: { maxCpuMs: 0 } });
    assert.match(r.error!, /CPU time/);
  });

  it('renders results as sieve-test prints them', () => {
    const text = renderSieveResult(
      run('require ["imap4flags","fileinto","copy"]; fileinto :flags "\\\\Seen $x" "A"; redirect :copy "a@b.c";'),
    );
    assert.equal(
      text,
      '\nPerformed actions:\n\n * store message in folder: A\n        + add IMAP flags: \\seen $x\n * redirect message to: <a@b.c>\n        + preserve implicit keep\n\nImplicit keep:\n\n  (none)\n',
    );
  });
});

describe('sieve editheader (RFC 5293)', () => {
  it('adds fields first or last and later tests see them; actions carry the edits in order', () => {
    const r = run(
      'require ["editheader","fileinto"]; addheader "X-A" "1"; addheader :last "X-B" "2"; if allof (exists "x-a", exists "x-b") { fileinto "Both"; }',
    );
    assert.deepEqual(r.actions.slice(0, 3), [
      { type: 'addheader', name: 'X-A', value: '1', last: false },
      { type: 'addheader', name: 'X-B', value: '2', last: true },
      { type: 'fileinto', mailbox: 'Both', create: false, copy: false },
    ]);
  });

  it('deletes matching occurrences by index, as delivery can replay them', () => {
    const message = 'X: one\r\nX: two\r\nX: three\r\n\r\nbody\r\n';
    const r = run('require "editheader"; deleteheader :matches "x" ["one", "thr*"];', { message });
    assert.deepEqual(r.actions.slice(0, 2), [
      { type: 'deleteheader', name: 'x', index: 1 },
      { type: 'deleteheader', name: 'x', index: 2 },
    ]);
    const all = run('require "editheader"; deleteheader "X"; if exists "x" { discard; }', { message });
    assert.deepEqual(all.actions, [{ type: 'deleteheader', name: 'X' }, { type: 'keep' }]);
  });

  it('never deletes Received or Auto-Submitted', () => {
    const r = run('require "editheader"; deleteheader "received"; if exists "received" { discard; }');
    assert.deepEqual(types(r), ['discard']);
  });
});

describe('sieve spamtest and virustest (RFC 5235)', () => {
  const runScores = (script: string, spamScore?: number, virusScore?: number): string[] => {
    const c = compileSieve(script);
    if (!c.ok) throw new Error(JSON.stringify(c.errors));
    const input = { message: Buffer.from(MESSAGE), envelope: { from: 'a@b.c', to: 'd@e.f' }, spamScore, virusScore };
    return types(runSieve(c.script, input));
  };
  const spam =
    'require ["spamtest","relational","comparator-i;ascii-numeric","fileinto"]; if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto "Junk"; } elsif spamtest :is "0" { fileinto "Untested"; }';

  it('compares the spam score numerically and reports an unknown score as "0"', () => {
    assert.deepEqual(runScores(spam, 8), ['fileinto:Junk']);
    assert.deepEqual(runScores(spam, 3), ['keep']);
    assert.deepEqual(runScores(spam), ['fileinto:Untested']);
  });

  it('uses i;ascii-numeric by default ("10" is over "9")', () => {
    assert.deepEqual(runScores('require ["spamtest","relational"]; if spamtest :value "gt" "9" { discard; }', 10), ['discard']);
  });

  it(':percent (spamtestplus) maps 1..10 onto 0..100', () => {
    assert.deepEqual(runScores('require ["spamtestplus","relational"]; if spamtest :percent :value "eq" "50" { discard; }', 5.5), [
      'discard',
    ]);
  });

  it('virustest: 5 is infected', () => {
    const script =
      'require ["virustest","relational","comparator-i;ascii-numeric"]; if virustest :value "eq" :comparator "i;ascii-numeric" "5" { discard; }';
    assert.deepEqual(runScores(script, undefined, 5), ['discard']);
    assert.deepEqual(runScores(script, undefined, 1), ['keep']);
  });
});

describe('sieve include (RFC 6609)', () => {
  const scripts: Record<string, string> = {
    'personal:a':
      'require ["include","variables","fileinto"]; global "g"; set "g" "from-a"; set "local" "x"; fileinto "A"; return; discard;',
    'personal:self': 'require "include"; include "self";',
    'global:g': 'require ["fileinto"]; fileinto "G";',
  };
  const include = (name: string, location: 'personal' | 'global'): string | undefined => scripts[`${location}:${name}`];

  it('runs included scripts on one result; return ends only the included script; global variables are shared', () => {
    const c = compileSieve(
      'require ["include","variables","fileinto"]; include "a"; include :global "g"; include :once "a"; global "g"; fileinto "${g}-${local}";',
      { include },
    );
    assert.ok(c.ok, JSON.stringify(!c.ok && c.errors));
    const r = runSieve(c.script, { message: Buffer.from(MESSAGE), envelope: { from: '', to: 'u@x' } });
    assert.deepEqual(types(r), ['fileinto:A', 'fileinto:G', 'fileinto:from-a-']);
  });

  it('refuses missing, circular and too deep includes at compile time', () => {
    const missing = compileSieve('require "include"; include "nope";', { include });
    assert.ok(!missing.ok && /does not exist/.test(missing.errors[0]!.message));
    const loop = compileSieve('require "include"; include "self";', { include });
    assert.ok(!loop.ok && /circular include/.test(loop.errors[0]!.message));
    const chain = (name: string): string | undefined => `require "include"; include "${name}x";`;
    const deep = compileSieve('require "include"; include "x";', { include: chain, limits: { maxIncludeDepth: 3 } });
    assert.ok(!deep.ok && /deeper than 3/.test(deep.errors[0]!.message));
    assert.ok(compileSieve('require "include"; include :optional "nope";', { include }).ok);
  });
});

describe('sieve variables on hostile scripts', () => {
  it('stops an expansion that would grow past 1 MiB with a runtime error (implicit keep)', () => {
    const refs = '${x}'.repeat(2000);
    const r = run(`require ["variables","fileinto"]; set "x" "${'a'.repeat(4000)}"; fileinto "${refs}";`);
    assert.match(r.error!, /too long/);
    assert.deepEqual(r.actions, [{ type: 'keep' }]);
  });

  it('truncates a variable at 4 KiB', () => {
    const r = run(
      `require ["variables","fileinto"]; set :length "n" "${'a'.repeat(5000)}"; set "x" "${'b'.repeat(5000)}"; set :length "m" "\${x}"; fileinto "\${n}-\${m}";`,
    );
    assert.deepEqual(types(r), ['fileinto:5000-4096']);
  });
});

describe('sieve duplicate (RFC 7352)', () => {
  const message = 'Message-ID: <m1@x>\r\nSubject: s\r\n\r\nbody\r\n';
  it('asks the caller about the key and lists a tracking action for delivery to record', () => {
    const c = compileSieve('require ["duplicate","fileinto"]; if duplicate :seconds 600 { fileinto "Dup"; }');
    assert.ok(c.ok);
    const seen = new Set<string>();
    const input = { message: Buffer.from(message), envelope: { from: '', to: 'u@x' } };
    const first = runSieve(c.script, input, { isDuplicate: (k) => seen.has(k) });
    assert.equal(first.actions[0]!.type, 'duplicate');
    const track = first.actions[0] as { key: string; period: number; last: boolean };
    assert.equal(track.period, 600);
    assert.equal(track.last, false);
    assert.deepEqual(types(first).slice(1), ['keep']);
    seen.add(track.key);
    assert.deepEqual(types(runSieve(c.script, input, { isDuplicate: (k) => seen.has(k) })), ['duplicate', 'fileinto:Dup']);
  });

  it('is never a duplicate without the unique ID, and keys differ by handle', () => {
    const c = compileSieve(
      'require "duplicate"; if duplicate :header "x-none" { discard; } if duplicate :handle "a" { discard; } if duplicate :handle "b" { discard; }',
    );
    assert.ok(c.ok);
    const r = runSieve(c.script, { message: Buffer.from(message), envelope: { from: '', to: 'u@x' } }, { isDuplicate: () => false });
    const keys = r.actions.filter((a) => a.type === 'duplicate').map((a) => (a as { key: string }).key);
    assert.equal(keys.length, 2);
    assert.notEqual(keys[0], keys[1]);
  });
});

describe('sieve mailboxexists (RFC 5490)', () => {
  it('asks the caller whether every named mailbox exists', () => {
    const c = compileSieve('require ["mailbox","fileinto"]; if mailboxexists ["Lists", "Work"] { fileinto "Lists"; }');
    assert.ok(c.ok);
    const input = { message: Buffer.from(MESSAGE), envelope: { from: '', to: 'u@x' } };
    assert.deepEqual(types(runSieve(c.script, input, { mailboxExists: (m) => ['Lists', 'Work'].includes(m) })), ['fileinto:Lists']);
    assert.deepEqual(types(runSieve(c.script, input, { mailboxExists: (m) => m === 'Lists' })), ['keep']);
    assert.deepEqual(types(runSieve(c.script, input)), ['keep']);
  });
});
