/**
 * DNSBL, DNSWL and RHSBL checks (src/inbound/dnsbl.ts) through the process's resolver against the
 * test DNS server, which plays every list: listings by IPv4 and IPv6 address and by domain, the
 * match and ignore filters, TXT reasons in the reply, scores, allowlists, and lists that fail.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Dns } from '../../src/dns.js';
import { Dnsbl, dnsblConfigSchema, reversedIp, type DnsblResult } from '../../src/inbound/dnsbl.js';
import { startDnsServer, type DnsServer, type DnsZone } from '../helpers/dns-server.js';

/** 2001:db8::25 as a DNSBL name: 32 nibbles, last first (RFC 5782 section 2.4). */
const V6_NAME = '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2';

const ZONE: DnsZone = {
  // bl.test: a blocklist with reasons.
  '10.2.0.192.bl.test': { a: ['127.0.0.2'], txt: ['Listed: see https://bl.test/query/192.0.2.10'] },
  [`${V6_NAME}.bl.test`]: { a: ['127.0.0.3'], txt: [['IPv6 ', 'listed']] },
  // A Spamhaus error code ("query via a public resolver"), not a listing.
  '12.2.0.192.bl.test': { a: ['127.255.255.254'] },
  // An answer outside 127.0.0.0/8 (a parked or wildcarded zone), not a listing either.
  '13.2.0.192.bl.test': { a: ['192.0.2.99'] },
  '30.2.0.192.bl.test': { a: ['127.0.0.2'] },
  // filtered.test: only 127.0.0.2 and 127.0.0.10/31 count.
  '11.2.0.192.filtered.test': { a: ['127.0.0.4'] },
  '14.2.0.192.filtered.test': { a: ['127.0.0.4', '127.0.0.11'] },
  // dbl.test: a domain list (RHSBL).
  'spam.example.dbl.test': { a: ['127.0.1.2'], txt: ['https://dbl.test/spam.example'] },
  'bad-helo.example.dbl.test': { a: ['127.0.1.2'] },
  // Two scored lists.
  '20.2.0.192.score1.test': { a: ['127.0.0.2'] },
  '20.2.0.192.score2.test': { a: ['127.0.0.2'], txt: ['score two'] },
  '21.2.0.192.score1.test': { a: ['127.0.0.2'] },
  // wl.test: an allowlist (DNSWL) that lists 192.0.2.30, which bl.test lists as well.
  '30.2.0.192.wl.test': { a: ['127.0.10.1'] },
  // A list that never answers about 192.0.2.40, and one that fails.
  '40.2.0.192.slow.test': { drop: true },
  '40.2.0.192.broken.test': { servfail: true },
  '40.2.0.192.bl.test': { a: ['127.0.0.2'], txt: ['still listed'] },
  // A reason that tries to end the reply line, and one far too long for it.
  '50.2.0.192.bl.test': { a: ['127.0.0.2'], txt: ['bad\r\n250 OK \u00e9'] },
  '51.2.0.192.bl.test': { a: ['127.0.0.2'], txt: ['y'.repeat(400)] },
};

describe('DNSBL, DNSWL and RHSBL', () => {
  let server: DnsServer;
  let dns: Dns;
  before(async () => {
    server = await startDnsServer(ZONE);
    dns = new Dns({ servers: [`127.0.0.1:${server.port}`], timeoutMs: 500 });
  });
  after(async () => {
    dns.cancel();
    await server.close();
  });
  /** Log lines the checks wrote, parsed. */
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const dnsbl = (config: unknown) => new Dnsbl(dnsblConfigSchema.parse(config), dns, logger);
  /** Warnings logged from index `from` on, as "zone msg". */
  const warnings = (from: number) =>
    logs
      .slice(from)
      .filter((l) => l.level === 40)
      .map((l) => `${String(l.zone)} ${String(l.code ?? l.answers)}`);
  const asked = (name: string, type = 'A') => server.queries.filter((q) => q.name === name && q.type === type).length;
  const reply = (r: DnsblResult) => (r.status ? `${r.status.code} ${r.status.enhanced} ${r.status.text}` : r.action);

  it('reverses IPv4 octets and IPv6 nibbles', () => {
    assert.equal(reversedIp('192.0.2.10'), '10.2.0.192');
    assert.equal(reversedIp('::ffff:192.0.2.10'), '10.2.0.192', 'IPv4-mapped IPv6 as IPv4');
    assert.equal(reversedIp('2001:db8::25'), V6_NAME);
    assert.equal(reversedIp('2001:DB8:0:0:0:0:0:25'), V6_NAME);
    assert.equal(reversedIp(''), undefined);
    assert.equal(reversedIp('not-an-ip'), undefined);
  });

  it('refuses a listed IPv4 client with Postfix wording and the TXT reason', async () => {
    const result = await dnsbl({ lists: [{ zone: 'bl.test' }] }).check({ clientIp: '192.0.2.10' });
    assert.equal(result.action, 'reject');
    assert.equal(
      reply(result),
      '554 5.7.1 Service unavailable; client [192.0.2.10] blocked using bl.test; Listed: see https://bl.test/query/192.0.2.10',
    );
    assert.deepEqual(result.log, { dnsbl: 'listed', dnsbl_hits: ['bl.test=127.0.0.2'], dnsbl_zone: 'bl.test' });
  });

  it('refuses a listed IPv6 client (nibble name), the TXT record made of two strings', async () => {
    const result = await dnsbl({ lists: [{ zone: 'bl.test' }] }).check({ clientIp: '2001:db8::25' });
    assert.equal(reply(result), '554 5.7.1 Service unavailable; client [2001:db8::25] blocked using bl.test; IPv6 listed');
  });

  it('accepts a client that is not listed', async () => {
    const result = await dnsbl({ lists: [{ zone: 'bl.test' }] }).check({ clientIp: '192.0.2.1' });
    assert.deepEqual(result, { action: 'accept', hits: [], score: 0, log: { dnsbl: 'clean' } });
    assert.equal(asked('1.2.0.192.bl.test'), 1);
    assert.equal(asked('1.2.0.192.bl.test', 'TXT'), 0, 'no reason asked for without a listing');
  });

  it('counts only answers in the match list', async () => {
    const check = dnsbl({ lists: [{ zone: 'filtered.test', match: ['127.0.0.2', '127.0.0.10/31'] }] });
    assert.equal((await check.check({ clientIp: '192.0.2.11' })).action, 'accept', '127.0.0.4 is not matched');
    const both = await check.check({ clientIp: '192.0.2.14' });
    assert.equal(both.action, 'reject');
    assert.deepEqual(both.hits[0]!.answers, ['127.0.0.11']);
    assert.equal(reply(both), '554 5.7.1 Service unavailable; client [192.0.2.14] blocked using filtered.test', 'no TXT record: no reason');
  });

  it('ignores Spamhaus error codes (127.255.255.x) and answers outside 127.0.0.0/8, and logs them', async () => {
    const check = dnsbl({ lists: [{ zone: 'bl.test' }] });
    const l0 = logs.length;
    const refused = await check.check({ clientIp: '192.0.2.12' });
    assert.deepEqual(warnings(l0), ['bl.test 127.255.255.254']);
    assert.equal(refused.action, 'accept');
    assert.deepEqual(refused.log, { dnsbl: 'clean', dnsbl_ignored: ['bl.test=127.255.255.254'] });
    assert.equal((await check.check({ clientIp: '192.0.2.13' })).action, 'accept');
    // Even a match list that takes all of 127.0.0.0/8 does not make the error code a listing.
    const wide = await dnsbl({ lists: [{ zone: 'bl.test', match: ['127.0.0.0/8'] }] }).check({ clientIp: '192.0.2.12' });
    assert.equal(wide.action, 'accept');
  });

  it("refuses a listed sender's domain (RHSBL), and a listed HELO name when asked to", async () => {
    const check = dnsbl({ lists: [{ zone: 'dbl.test', type: 'domain' }] });
    const sender = await check.check({ clientIp: '192.0.2.1', sender: 'Someone@Spam.Example', helo: 'bad-helo.example' });
    assert.equal(
      reply(sender),
      '554 5.7.1 Service unavailable; Sender address [spam.example] blocked using dbl.test; https://dbl.test/spam.example',
    );
    assert.equal(
      (await check.check({ sender: 'a@good.example', helo: 'bad-helo.example' })).action,
      'accept',
      'HELO not looked up by default',
    );
    assert.equal((await check.check({ sender: '', helo: 'x' })).action, 'accept', 'null sender: nothing to look up');

    const helo = await dnsbl({ lists: [{ zone: 'dbl.test', type: 'domain', helo: true }] }).check({
      sender: 'a@good.example',
      helo: 'bad-helo.example',
    });
    assert.equal(reply(helo), '554 5.7.1 Service unavailable; Helo command [bad-helo.example] blocked using dbl.test');
  });

  it('keeps a reason from DNS to one printable line of bounded length', async () => {
    const check = dnsbl({ lists: [{ zone: 'bl.test' }] });
    const bad = await check.check({ clientIp: '192.0.2.50' });
    assert.equal(
      bad.status?.text,
      'Service unavailable; client [192.0.2.50] blocked using bl.test; bad??250 OK ??',
      'CR, LF and each octet of the UTF-8 é replaced',
    );
    const long = await check.check({ clientIp: '192.0.2.51' });
    assert.equal(long.status?.text.length, 200);
    assert.match(long.status!.text, /; y+\.\.\.$/);
  });

  it("takes the reply from the list's message template", async () => {
    const result = await dnsbl({
      lists: [{ zone: 'bl.test', message: 'Blocked by $rbl_domain: ${rbl_reason} (client $client_address)' }],
    }).check({ clientIp: '192.0.2.10' });
    assert.equal(result.status?.text, 'Blocked by bl.test: Listed: see https://bl.test/query/192.0.2.10 (client 192.0.2.10)');
  });

  it('adds the scores of scored lists and refuses at reject_score', async () => {
    const check = dnsbl({
      lists: [
        { zone: 'score1.test', action: 'score', score: 1.5 },
        { zone: 'score2.test', action: 'score', score: 2 },
      ],
      reject_score: 3.5,
    });
    const both = await check.check({ clientIp: '192.0.2.20' });
    assert.equal(both.score, 3.5);
    assert.equal(
      reply(both),
      '554 5.7.1 Service unavailable; client [192.0.2.20] blocked using score2.test; score two',
      'named after the highest score',
    );
    const one = await check.check({ clientIp: '192.0.2.21' });
    assert.equal(one.action, 'accept');
    assert.equal(one.score, 1.5);
    assert.deepEqual(one.log, { dnsbl: 'clean', dnsbl_hits: ['score1.test=127.0.0.2'], dnsbl_score: 1.5 });
  });

  it('accepts an allowlisted client although a blocklist lists it, and says so', async () => {
    const check = dnsbl({ lists: [{ zone: 'bl.test' }, { zone: 'wl.test', allow: true }] });
    const result = await check.check({ clientIp: '192.0.2.30' });
    assert.equal(result.action, 'accept');
    assert.equal(result.allowlisted, 'wl.test');
    assert.equal(result.log?.dnsbl, 'allowlisted');
    assert.equal((await check.check({ clientIp: '192.0.2.10' })).action, 'reject', 'not allowlisted: the blocklist applies');
  });

  it('skips a list that does not answer in time or fails, and logs it', async () => {
    const check = dnsbl({ lists: [{ zone: 'slow.test' }, { zone: 'broken.test' }] });
    const l0 = logs.length;
    const result = await check.check({ clientIp: '192.0.2.40' });
    assert.deepEqual(warnings(l0).sort(), ['broken.test ESERVFAIL', 'slow.test ETIMEOUT']);
    assert.equal(result.action, 'accept');
    assert.deepEqual(result.log, { dnsbl: 'clean', dnsbl_failed: ['slow.test: ETIMEOUT', 'broken.test: ESERVFAIL'] });
    const withBlocklist = await dnsbl({ lists: [{ zone: 'slow.test' }, { zone: 'bl.test' }] }).check({ clientIp: '192.0.2.40' });
    assert.equal(
      reply(withBlocklist),
      '554 5.7.1 Service unavailable; client [192.0.2.40] blocked using bl.test; still listed',
      'the other lists still count',
    );
  });

  it('asks each list once for repeated checks (the resolver caches)', async () => {
    const check = dnsbl({ lists: [{ zone: 'bl.test' }, { zone: 'dbl.test', type: 'domain' }] });
    const before = asked('10.2.0.192.bl.test') + asked('spam.example.dbl.test');
    for (let i = 0; i < 3; i++) await check.check({ clientIp: '192.0.2.10', sender: 'x@spam.example' });
    assert.ok(before >= 2, 'asked by earlier tests already');
    assert.equal(asked('10.2.0.192.bl.test') + asked('spam.example.dbl.test'), before, 'answered from the cache');
    const fresh = new Dnsbl(dnsblConfigSchema.parse({ lists: [{ zone: 'bl.test' }] }), new Dns({ servers: [`127.0.0.1:${server.port}`] }));
    const n = asked('10.2.0.192.bl.test');
    const t = asked('10.2.0.192.bl.test', 'TXT');
    for (let i = 0; i < 3; i++) await fresh.check({ clientIp: '192.0.2.10' });
    assert.equal(asked('10.2.0.192.bl.test'), n + 1, 'one question for three checks');
    assert.equal(asked('10.2.0.192.bl.test', 'TXT'), t + 1, 'and one for the reason');
  });

  it('checks its configuration', () => {
    const config = dnsblConfigSchema.parse({ lists: [{ zone: 'Zen.Spamhaus.org.' }] });
    assert.equal(config.lists[0]!.zone, 'zen.spamhaus.org');
    assert.deepEqual(config.lists[0]!.match, ['127.0.0.0/8']);
    assert.equal(config.reject_score, 1);
    assert.throws(() => dnsblConfigSchema.parse({ lists: [{ zone: 'bl.test', match: ['127.0.0.0/33'] }] }), /IPv4 address or range/);
    assert.throws(() => dnsblConfigSchema.parse({ lists: [{ zone: 'bl test' }] }), /DNS zone name/);
    assert.throws(() => dnsblConfigSchema.parse({ lists: [{ zone: 'bl.test', action: 'junk' }] }));
    assert.throws(() => dnsblConfigSchema.parse({ lists: [{ zone: 'bl.test', weight: 2 }] }));
  });
});
