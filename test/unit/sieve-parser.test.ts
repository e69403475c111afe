import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tokenize } from '../../src/sieve/lexer.js';
import { parseSieve, MAX_BLOCK_NESTING } from '../../src/sieve/parser.js';
import { compileSieve } from '../../src/sieve/index.js';

function firstError(script: string, opts?: Parameters<typeof compileSieve>[1]) {
  const r = compileSieve(script, opts);
  assert.equal(r.ok, false, 'expected a compile error');
  return (r as { errors: { line: number; column: number; message: string }[] }).errors[0]!;
}

describe('sieve lexer', () => {
  it('reads numbers with K, M and G quantifiers (RFC 5228 2.4.1)', () => {
    const values = tokenize('1 2K 3m 4G')
      .filter((t) => t.kind === 'number')
      .map((t) => t.value);
    assert.deepEqual(values, [1, 2048, 3 * 1024 * 1024, 4 * 1024 ** 3]);
  });

  it('reads quoted strings with escapes: \\" and \\\\ kept, other backslashes dropped', () => {
    const [t] = tokenize('"a\\"b\\\\c\\d"');
    assert.equal(t!.text, 'a"b\\cd');
  });

  it('reads multi-line strings with dot-stuffing and a comment after text:', () => {
    const [t] = tokenize('text: # comment\r\nline one\r\n..dotted\r\n.\r\n');
    assert.equal(t!.text, 'line one\r\n.dotted\r\n');
  });

  it('skips hash and bracket comments and counts their lines', () => {
    const tokens = tokenize('# one\n/* two\nthree */ keep;');
    assert.equal(tokens[0]!.text, 'keep');
    assert.equal(tokens[0]!.line, 3);
    assert.equal(tokens[0]!.column, 10);
  });

  it('reports an unterminated quoted string at the end of the script, naming its start', () => {
    const e = firstError('keep;\nif header :is "subject" "abc { keep; }\n');
    assert.equal(e.line, 3);
    assert.match(e.message, /end of file before end of quoted string started at line 2/);
  });

  it('reports unterminated bracket comments and multi-line strings', () => {
    assert.match(firstError('keep; /* never closed').message, /bracket comment/);
    assert.match(firstError('require "reject";\nreject text:\nno end\n').message, /multi-line string started at line 2/);
  });

  it('refuses numbers beyond the safe range and stray characters, with positions', () => {
    assert.match(firstError('if size :over 99999999999999999999G { keep; }').message, /out of range/);
    const e = firstError('keep;\n  @');
    assert.deepEqual([e.line, e.column], [2, 3]);
  });
});

describe('sieve parser', () => {
  it('builds commands with arguments, tests, test lists and blocks, with positions', () => {
    const [cmd] = parseSieve('if anyof (true, header :is ["a","b"] "c") {\n  keep;\n}');
    assert.equal(cmd!.name, 'if');
    assert.equal(cmd!.tests[0]!.name, 'anyof');
    assert.equal(cmd!.tests[0]!.tests.length, 2);
    const header = cmd!.tests[0]!.tests[1]!;
    assert.deepEqual(
      header.args.map((a) => a.kind),
      ['tag', 'strings', 'strings'],
    );
    assert.equal(cmd!.block![0]!.line, 2);
    assert.equal(cmd!.block![0]!.column, 3);
  });

  it('reports a missing semicolon like Pigeonhole, on the line of the command', () => {
    const e = firstError('keep\ndiscard;\n');
    assert.equal(e.line, 1);
    assert.match(e.message, /missing semicolon ';' after keep command/);
  });

  it('bounds block nesting and test nesting (hostile input is an error, not a crash)', () => {
    const deepBlocks = 'if true {'.repeat(MAX_BLOCK_NESTING + 1) + '}'.repeat(MAX_BLOCK_NESTING + 1);
    assert.match(firstError(deepBlocks).message, /nest command blocks/);
    const deepTests = 'if ' + 'not '.repeat(100000) + 'true { keep; }';
    assert.match(firstError(deepTests).message, /nest tests/);
    const deepLists = 'if ' + 'anyof('.repeat(5000) + 'true' + ')'.repeat(5000) + ' { keep; }';
    assert.match(firstError(deepLists).message, /nest tests/);
  });

  it('refuses a script over the size limit before parsing it', () => {
    const big = 'keep;'.repeat(1000);
    assert.match(firstError(big, { limits: { maxScriptSize: 100 } }).message, /too large/);
  });

  it('accepts a huge string within the size limit', () => {
    const r = compileSieve(`require "reject"; reject "${'x'.repeat(500_000)}";`);
    assert.equal(r.ok, true);
  });

  it('stops at end of script inside an argument list or block with a position', () => {
    assert.equal(firstError('if true {\n keep;\n').line, 3);
    assert.match(firstError('if header ["a", ').message, /string list/);
  });
});

describe('sieve validator', () => {
  it('needs require for extension commands and names unknown capabilities', () => {
    assert.match(firstError('fileinto "A";').message, /unknown command 'fileinto'/);
    assert.match(firstError('require "nope";').message, /unknown Sieve capability `nope'/);
    assert.match(firstError('require "fileinto";\nfileinto :copy "A";').message, /unknown tagged argument ':copy'/);
  });

  it('refuses capabilities outside the configured ones', () => {
    assert.match(firstError('require "vacation";', { extensions: ['fileinto'] }).message, /unknown Sieve capability/);
  });

  it('checks argument counts and types, exclusive tags, comparators and relations', () => {
    assert.match(firstError('if header "subject" { keep; }').message, /requires 2 positional argument\(s\), but 1/);
    assert.match(
      firstError('if header :is "s" 5 { keep; }').message,
      /expects a string list as argument 2 \(key list\), but a number was found/,
    );
    assert.match(firstError('if header :is :contains "s" "a" { keep; }').message, /duplicate MATCH-TYPE argument \(:contains\)/);
    assert.match(firstError('if header :comparator "i;nope" "s" "a" { keep; }').message, /unknown comparator/);
    assert.match(
      firstError('require "relational";\nif header :value "xx" "s" "a" { keep; }').message,
      /:value match-type requires a constant string argument/,
    );
    assert.match(firstError('if size 100 { keep; }').message, /:under or the :over/);
  });

  it('orders require, if, elsif and else', () => {
    assert.match(firstError('keep;\nrequire "fileinto";').message, /require commands can only be placed at top level/);
    assert.match(firstError('else { keep; }').message, /must follow an if/);
    assert.match(firstError('if true keep;').message, /.+/);
  });

  it('checks redirect addresses, vacation :from and regular expressions at compile time', () => {
    assert.match(firstError('redirect "nobody";').message, /redirect address/);
    assert.match(firstError('require "vacation";\nvacation :from "x" "r";').message, /:from address/);
    assert.match(firstError('require "regex";\nif header :regex "s" "(" { keep; }').message, /regular expression/);
  });

  it('decodes encoded characters only when encoded-character is required', () => {
    const on = compileSieve('require ["encoded-character","fileinto"]; fileinto "${hex:41 42}${unicode:263a}";');
    assert.ok(on.ok);
    assert.deepEqual(on.script.nodes[0]!.args[0], ['AB\u263a']);
    const off = compileSieve('require "fileinto"; fileinto "${hex:41}";');
    assert.ok(off.ok);
    assert.deepEqual(off.script.nodes[0]!.args[0], ['${hex:41}']);
  });
});

describe('sieve regex keys', () => {
  it('translates POSIX classes and bracket expressions', async () => {
    const { compileRegex } = await import('../../src/sieve/regex.js');
    assert.ok(compileRegex('^[[:alpha:]]+ [[:digit:]]{4}$', false).test('Report 2026'));
    assert.ok(compileRegex('[]\\[]', false).test('a]'));
    assert.ok(compileRegex('a.b', false).test('a\nb'));
  });

  it('refuses patterns whose backtracking can explode, and back-references', () => {
    assert.match(firstError('require "regex";\nif header :regex "s" "(a+)+b" { keep; }').message, /nested repetition/);
    assert.match(firstError('require "regex";\nif header :regex "s" "(a|aa)*b" { keep; }').message, /nested repetition/);
    assert.match(firstError('require "regex";\nif header :regex "s" "(a)\\\\1" { keep; }').message, /back-references/);
    assert.ok(compileSieve('require "regex";\nif header :regex "s" "^(re|fwd?): (.*)$" { keep; }').ok);
  });

  it('refuses :contains and :matches with i;ascii-numeric, and address on non-address fields', () => {
    assert.match(
      firstError('require "comparator-i;ascii-numeric";\nif header :contains :comparator "i;ascii-numeric" "x" "1" { keep; }').message,
      /does not support sub-string matching/,
    );
    assert.match(firstError('if address "subject" "x" { keep; }').message, /not allowed for the address test/);
  });
});
