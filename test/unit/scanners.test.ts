/**
 * The scanner clients' pure parts: configuration, addresses, and the reading of replies in the
 * forms the daemons send (the interop tests, test/interop/scanner-*.test.ts, drive the daemons).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseClamdReply } from '../../src/inbound/scanners/clamd.js';
import { ScannerError, parseAddress, scannersConfigSchema } from '../../src/inbound/scanners/config.js';
import { parseRspamdReply, rspamdHeaders } from '../../src/inbound/scanners/rspamd.js';
import { parseSpamdReply, spamdHeaders } from '../../src/inbound/scanners/spamd.js';
import { spamtestValue } from '../../src/inbound/types.js';

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ScannerError && err.code === code);
}

describe('scanner configuration', () => {
  it('has no scanner unless one is configured, and fills in the defaults of one that is', () => {
    assert.deepEqual(scannersConfigSchema.parse(undefined), {});
    const cfg = scannersConfigSchema.parse({ rspamd: {}, spamd: {}, clamd: {} });
    assert.deepEqual(cfg.rspamd, {
      url: 'http://127.0.0.1:11333',
      timeout: 30_000,
      default_action: 'tempfail',
      max_size: 50 * 1024 * 1024,
      add_headers: true,
      greylist: 'tempfail',
    });
    assert.deepEqual(cfg.spamd, {
      address: '127.0.0.1:783',
      timeout: 30_000,
      max_size: 512_000,
      spam_action: 'junk',
      default_action: 'tempfail',
      add_headers: true,
    });
    assert.deepEqual(cfg.clamd, {
      address: '/run/clamav/clamd.ctl',
      timeout: 60_000,
      max_size: 25 * 1024 * 1024,
      default_action: 'tempfail',
    });
  });

  it('reads durations and sizes as the rest of the configuration does', () => {
    const cfg = scannersConfigSchema.parse({ spamd: { timeout: '500ms', max_size: '1M' }, clamd: { timeout: 5 } });
    assert.equal(cfg.spamd?.timeout, 500);
    assert.equal(cfg.spamd?.max_size, 1024 * 1024);
    assert.equal(cfg.clamd?.timeout, 5000);
  });

  it('refuses unknown keys, bad addresses, https URLs, a zero timeout and other default actions', () => {
    for (const bad of [
      { spamd: { adress: '127.0.0.1:783' } },
      { spamd: { address: 'localhost' } },
      { clamd: { address: '127.0.0.1:99999' } },
      { rspamd: { url: 'https://127.0.0.1:11333' } },
      { rspamd: { timeout: 0 } },
      { clamd: { default_action: 'reject' } },
      { spamd: { spam_action: 'discard' } },
    ]) {
      assert.equal(scannersConfigSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });

  it('parses host:port, [ipv6]:port and unix socket paths', () => {
    assert.deepEqual(parseAddress('127.0.0.1:783'), { host: '127.0.0.1', port: 783 });
    assert.deepEqual(parseAddress('spamd.internal:783'), { host: 'spamd.internal', port: 783 });
    assert.deepEqual(parseAddress('[::1]:3310'), { host: '::1', port: 3310 });
    assert.deepEqual(parseAddress('/run/clamav/clamd.ctl'), { path: '/run/clamav/clamd.ctl' });
    assert.deepEqual(parseAddress('unix:/run/clamav/clamd.ctl'), { path: '/run/clamav/clamd.ctl' });
    for (const bad of ['', '783', 'host:', 'host:0', '::1:783', 'clamd.ctl']) assert.equal(parseAddress(bad), undefined, bad);
  });
});

describe('clamd replies', () => {
  it('reads OK, FOUND and ERROR replies, and refuses anything else', () => {
    assert.deepEqual(parseClamdReply(Buffer.from('stream: OK\0')), { clean: true });
    assert.deepEqual(parseClamdReply(Buffer.from('stream: Win.Test.EICAR_HDB-1 FOUND\0')), {
      clean: false,
      virus: 'Win.Test.EICAR_HDB-1',
    });
    throwsCode(() => parseClamdReply(Buffer.from('INSTREAM size limit exceeded. ERROR\0')), 'REFUSED');
    throwsCode(() => parseClamdReply(Buffer.from('UNKNOWN COMMAND\0')), 'PROTOCOL');
    throwsCode(() => parseClamdReply(Buffer.alloc(0)), 'PROTOCOL');
  });
});

describe('spamd replies', () => {
  const reply = (head: string, body = '') => Buffer.from(`${head}\r\n\r\n${body}`, 'latin1');

  it('reads the Spam header and the symbols of a SYMBOLS reply', () => {
    const v = parseSpamdReply(
      reply('SPAMD/1.1 0 EX_OK\r\nContent-length: 25\r\nSpam: True ; 1000.3 / 5.0', 'GTUBE,MISSING_DATE,NO_RELAYS\r\n'),
    );
    assert.deepEqual(v, { spam: true, score: 1000.3, threshold: 5, symbols: ['GTUBE', 'MISSING_DATE', 'NO_RELAYS'] });
    assert.deepEqual(spamdHeaders(v), [
      ['X-Spam-Flag', 'YES'],
      ['X-Spam-Score', '1000.3'],
      ['X-Spam-Status', 'Yes, score=1000.3 required=5.0 tests=GTUBE,MISSING_DATE,NO_RELAYS'],
    ]);
    const ham = parseSpamdReply(reply('SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; -0.1 / 5.0'));
    assert.deepEqual(spamdHeaders(ham), [
      ['X-Spam-Score', '-0.1'],
      ['X-Spam-Status', 'No, score=-0.1 required=5.0 tests=none'],
    ]);
  });

  it('refuses an error status, a reply without Spam header, and garbage', () => {
    throwsCode(() => parseSpamdReply(reply('SPAMD/1.0 76 Bad header line: zINSTREAM')), 'REFUSED');
    throwsCode(() => parseSpamdReply(reply('SPAMD/1.1 0 EX_OK\r\nContent-length: 0')), 'PROTOCOL');
    throwsCode(() => parseSpamdReply(Buffer.from('SPAMD/1.1 0 EX_OK\r\nSpam: True ; 9.0 / 5.0')), 'PROTOCOL');
    throwsCode(() => parseSpamdReply(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')), 'PROTOCOL');
  });
});

describe('rspamd replies', () => {
  // The shape rspamd 3.4 sends with milter_headers' extended_spam_headers (values folded by rspamd).
  const withMilter = {
    action: 'add header',
    score: 9.5,
    required_score: 15,
    symbols: { MISSING_MID: { name: 'MISSING_MID', score: 2.5 }, MIME_GOOD: { score: -0.1, options: ['text/plain'] } },
    messages: {},
    milter: {
      remove_headers: { 'X-Spam': 0, 'X-Spamd-Result': 0 },
      add_headers: {
        'X-Rspamd-Queue-Id': { order: -1, value: 'QX1' },
        'X-Spamd-Result': {
          order: -1,
          value: 'default: False [9.50 / 15.00];\r\n\tMISSING_MID(2.50)[];\r\n\tMIME_GOOD(-0.10)[text/plain]',
        },
        'X-Extra': [{ order: 2, value: 'two' }, 'plain'],
      },
    },
  };

  it("takes rspamd's milter headers, unfolded, before its own and in their place", () => {
    const r = parseRspamdReply(Buffer.from(JSON.stringify(withMilter)));
    assert.deepEqual(r.removeHeaders, [
      ['X-Spam', 0],
      ['X-Spamd-Result', 0],
    ]);
    assert.deepEqual(rspamdHeaders(r), [
      ['X-Rspamd-Queue-Id', 'QX1'],
      ['X-Spamd-Result', 'default: False [9.50 / 15.00]; MISSING_MID(2.50)[]; MIME_GOOD(-0.10)[text/plain]'],
      ['X-Extra', 'two'],
      ['X-Extra', 'plain'],
      ['X-Spam', 'Yes'],
      ['X-Rspamd-Score', '9.50'],
    ]);
  });

  it('writes X-Spamd-Result itself when rspamd adds none: symbols by decreasing absolute score', () => {
    const r = parseRspamdReply(Buffer.from(JSON.stringify({ ...withMilter, action: 'reject', milter: undefined })));
    assert.deepEqual(rspamdHeaders(r), [
      ['X-Spam', 'Yes'],
      ['X-Spamd-Result', 'default: True [9.50 / 15.00]; MISSING_MID(2.50)[]; MIME_GOOD(-0.10)[text/plain]'],
      ['X-Rspamd-Score', '9.50'],
    ]);
  });

  it('keeps a printable, bounded smtp_message', () => {
    const r = parseRspamdReply(Buffer.from(JSON.stringify({ ...withMilter, messages: { smtp_message: 'Go\r\naway ' + 'x'.repeat(300) } })));
    assert.equal(r.smtpMessage?.startsWith('Go away x'), true);
    assert.equal(r.smtpMessage?.length, 200);
  });

  it('refuses a reply that is not JSON, not an object, or names an unknown action', () => {
    throwsCode(() => parseRspamdReply(Buffer.from('<html>')), 'PROTOCOL');
    throwsCode(() => parseRspamdReply(Buffer.from('null')), 'PROTOCOL');
    throwsCode(() => parseRspamdReply(Buffer.from('{"action":"quarantine","score":1}')), 'PROTOCOL');
    throwsCode(() => parseRspamdReply(Buffer.from('{"score":1}')), 'PROTOCOL');
  });
});

describe('RFC 5235 spamtest values from scanner scores', () => {
  it('maps 0 and below to 1, the threshold and above to 10, and evenly between', () => {
    assert.equal(spamtestValue(-3, 5), 1);
    assert.equal(spamtestValue(0, 5), 1);
    assert.equal(spamtestValue(2.5, 5), 6);
    assert.equal(spamtestValue(4.9, 5), 10);
    assert.equal(spamtestValue(1, 6.5), 2);
    assert.equal(spamtestValue(5, 5), 10);
    assert.equal(spamtestValue(1000, 5), 10);
    assert.equal(spamtestValue(Number.NaN, 5), 1);
    assert.equal(spamtestValue(3, 0), 10, 'no threshold: any positive score is spam');
  });
});
