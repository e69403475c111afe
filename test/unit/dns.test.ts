/**
 * The process's DNS resolver (src/dns.ts) against the test DNS server: answers of every type, the
 * error codes callers (mailauth, the queue) tell apart, the hard deadline on unanswered questions,
 * and the cache (the server's query log shows what reached it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, mock } from 'node:test';
import type { DNSResolver } from 'mailauth';
import { spf } from 'mailauth/lib/spf/index.js';
import { Dns, DnsError, dnsConfigSchema, dnsOptions, isServerAddress } from '../../src/dns.js';
import { MxResolver } from '../../src/queue/mx.js';
import { startDnsServer, type DnsServer, type DnsZone } from '../helpers/dns-server.js';

const ZONE: DnsZone = {
  'host.example': {
    a: ['192.0.2.1'],
    aaaa: ['2001:db8::1'],
    mx: [{ preference: 10, exchange: 'mx.host.example' }],
    txt: [['v=spf1 ', 'ip4:192.0.2.0/24 -all'], 'hello'],
  },
  'mx.host.example': { a: ['192.0.2.25'] },
  'www.host.example': { cname: 'host.example' },
  '1.2.0.192.in-addr.arpa': { ptr: ['host.example'] },
  'long.example': { txt: ['x'.repeat(700)] },
  'broken.example': { servfail: true },
  'silent.example': { drop: true },
  'cached.example': { a: ['192.0.2.7'] },
  // SPF: three "a" terms naming nothing are three void lookups, one more than RFC 7208 section 4.6.4 allows.
  'voids.example': { txt: ['v=spf1 a:none1.voids.example a:none2.voids.example a:none3.voids.example -all'] },
  'tempfail.example': { txt: ['v=spf1 a:broken.example -all'] },
};

const codeOf = (err: unknown) => (err as DnsError).code;

describe('DNS resolver', () => {
  let server: DnsServer;
  let dns: Dns;
  before(async () => {
    server = await startDnsServer(ZONE);
    dns = new Dns({ servers: [`127.0.0.1:${server.port}`], timeoutMs: 2000 });
  });
  after(async () => {
    dns.cancel();
    await server.close();
  });
  /** Questions about `name` that reached the server. */
  const asked = (name: string, type?: string) => server.queries.filter((q) => q.name === name && (!type || q.type === type)).length;

  it('answers A, AAAA, MX, TXT, PTR and CNAME in the shapes of dns.promises.resolve', async () => {
    const { resolve } = dns; // a bound function, as mailauth calls it
    assert.deepEqual(await resolve('host.example'), ['192.0.2.1'], 'A by default');
    assert.deepEqual(await resolve('HOST.example.', 'A'), ['192.0.2.1']);
    assert.deepEqual(await resolve('host.example', 'AAAA'), ['2001:db8::1']);
    assert.deepEqual(await resolve('host.example', 'MX'), [{ exchange: 'mx.host.example', priority: 10 }]);
    const txt = await resolve('host.example', 'TXT');
    assert.deepEqual(
      txt.sort((a, b) => a.length - b.length),
      [['hello'], ['v=spf1 ', 'ip4:192.0.2.0/24 -all']],
    );
    assert.deepEqual(await resolve('1.2.0.192.in-addr.arpa', 'PTR'), ['host.example']);
    assert.deepEqual(await resolve('www.host.example', 'CNAME'), ['host.example']);
    assert.deepEqual(await dns.resolve4('www.host.example'), ['192.0.2.1'], 'an alias is followed');
  });

  it('gets answers over 512 octets (over TCP)', async () => {
    const txt = await dns.resolveTxt('long.example');
    assert.equal(txt[0]!.join(''), 'x'.repeat(700));
  });

  it('rejects with ENOTFOUND for NXDOMAIN, ENODATA for NODATA, ESERVFAIL for SERVFAIL', async () => {
    await assert.rejects(dns.resolve('nowhere.example', 'A'), (err) => err instanceof DnsError && codeOf(err) === 'ENOTFOUND');
    await assert.rejects(dns.resolve('mx.host.example', 'TXT'), (err) => codeOf(err) === 'ENODATA');
    await assert.rejects(dns.resolve('broken.example', 'A'), (err) => codeOf(err) === 'ESERVFAIL');
    await assert.rejects(dns.resolve('host.example', 'SOA' as 'A'), (err) => codeOf(err) === 'EBADQUERY');
    await assert.rejects(dns.resolve('host.example', 'constructor' as 'A'), (err) => codeOf(err) === 'EBADQUERY');
  });

  it('fails an unanswered lookup with ETIMEOUT', async () => {
    const quick = new Dns({ servers: [`127.0.0.1:${server.port}`], timeoutMs: 300 });
    await assert.rejects(quick.resolve4('silent.example'), (err) => codeOf(err) === 'ETIMEOUT');
  });

  it('ends the lookup at its deadline, whatever the nameserver library still waits for', async () => {
    // The deadline's timer is mocked; c-ares runs on real time and answers nothing meanwhile.
    const slow = new Dns({ servers: [`127.0.0.1:${server.port}`], timeoutMs: 60_000, tries: 1 });
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const before = asked('silent.example', 'TXT');
      let outcome: string | undefined;
      void slow.resolveTxt('silent.example').then(
        () => (outcome = 'answered'),
        (err: unknown) => (outcome = codeOf(err)),
      );
      const turn = () => new Promise((resolve) => setImmediate(resolve));
      while (asked('silent.example', 'TXT') === before) await turn();
      mock.timers.tick(59_999);
      await turn();
      assert.equal(outcome, undefined, 'still waiting just before the deadline');
      mock.timers.tick(1);
      await turn();
      assert.equal(outcome, 'ETIMEOUT', 'settled when the deadline passed');
    } finally {
      mock.timers.reset();
      slow.cancel();
    }
  });

  it('answers again from the cache, positive and negative, but asks again after a failure', async () => {
    const before = { a: asked('cached.example'), nx: asked('never.example'), fail: asked('broken.example', 'MX') };
    const hits = dns.stats.hits;
    assert.deepEqual(await dns.resolve4('cached.example'), ['192.0.2.7']);
    assert.deepEqual(await dns.resolve4('cached.example'), ['192.0.2.7']);
    assert.equal(asked('cached.example'), before.a + 1, 'one question for two lookups');
    for (let i = 0; i < 2; i++) await assert.rejects(dns.resolve4('never.example'), (err) => codeOf(err) === 'ENOTFOUND');
    assert.equal(asked('never.example'), before.nx + 1, 'NXDOMAIN is cached');
    for (let i = 0; i < 2; i++) await assert.rejects(dns.resolveMx('broken.example'), (err) => codeOf(err) === 'ESERVFAIL');
    assert.equal(asked('broken.example', 'MX'), before.fail + 2, 'SERVFAIL is not cached');
    assert.equal(dns.stats.hits, hits + 2);
  });

  it('sends one question for lookups of the same name and type in flight together', async () => {
    const fresh = new Dns({ servers: [`127.0.0.1:${server.port}`] });
    const before = asked('mx.host.example', 'A');
    const answers = await Promise.all([
      fresh.resolve4('mx.host.example'),
      fresh.resolve4('MX.host.example'),
      fresh.resolve4('mx.host.example'),
    ]);
    assert.deepEqual(answers, [['192.0.2.25'], ['192.0.2.25'], ['192.0.2.25']]);
    assert.equal(asked('mx.host.example', 'A'), before + 1);
  });

  it('gives every caller its own copy of an answer and its own error', async () => {
    const first = await dns.resolveTxt('host.example');
    first[0]!.push('changed');
    first.push(['added']);
    assert.equal((await dns.resolveTxt('host.example')).length, 2);
    assert.ok(!(await dns.resolveTxt('host.example')).flat().includes('changed'));
    const errors = await Promise.all([
      dns.resolve4('never.example').catch((e: unknown) => e),
      dns.resolve4('never.example').catch((e: unknown) => e),
    ]);
    assert.notEqual(errors[0], errors[1]);
  });

  it('forgets answers after their time and the least recently used beyond max entries', async () => {
    let now = 1_000_000;
    const small = new Dns({ servers: [`127.0.0.1:${server.port}`], maxEntries: 2, ttlMs: 10_000, negativeTtlMs: 1000, now: () => now });
    const count = () => asked('cached.example') + asked('host.example') + asked('mx.host.example') + asked('gone.example');
    let n = count();
    await small.resolve4('cached.example');
    now += 9_999;
    await small.resolve4('cached.example');
    assert.equal(count(), n + 1, 'kept for its time');
    now += 1;
    await small.resolve4('cached.example');
    assert.equal(count(), n + 2, 'asked again after it');

    await assert.rejects(small.resolve4('gone.example'));
    now += 1000;
    await assert.rejects(small.resolve4('gone.example'));
    assert.equal(count(), n + 4, 'a negative answer expires after negative_ttl');

    n = count();
    await small.resolve4('host.example'); // cache: gone, host (cached.example evicted)
    await small.resolve4('cached.example'); // evicts gone
    await small.resolve4('host.example');
    assert.equal(count(), n + 2, 'host.example still there');
    await assert.rejects(small.resolve4('gone.example'));
    assert.equal(count(), n + 3, 'gone.example was evicted');

    const none = new Dns({ servers: [`127.0.0.1:${server.port}`], maxEntries: 0 });
    n = count();
    await none.resolve4('host.example');
    await none.resolve4('host.example');
    assert.equal(count(), n + 2, 'max_entries 0: no cache');
  });

  it('serves the queue: MxResolver over it', async () => {
    const mx = new MxResolver({ resolver: dns });
    assert.deepEqual(await mx.hostsFor('host.example'), { hosts: [{ name: 'mx.host.example', addresses: ['192.0.2.25'] }] });
  });

  it("serves mailauth's SPF check: void lookups are counted, SERVFAIL is a temperror", async () => {
    const resolver = dns.resolve as DNSResolver;
    const pass = await spf({ sender: 'a@host.example', ip: '192.0.2.9', helo: 'client.example', mta: 'mx.test', resolver });
    assert.equal(pass.status.result, 'pass');
    const voids = await spf({ sender: 'a@voids.example', ip: '192.0.2.9', helo: 'client.example', mta: 'mx.test', resolver });
    assert.equal(voids.status.result, 'permerror', JSON.stringify(voids.status));
    const temp = await spf({ sender: 'a@tempfail.example', ip: '192.0.2.9', helo: 'client.example', mta: 'mx.test', resolver });
    assert.equal(temp.status.result, 'temperror', JSON.stringify(temp.status));
    const none = await spf({ sender: 'a@nowhere.example', ip: '192.0.2.9', helo: 'client.example', mta: 'mx.test', resolver });
    assert.equal(none.status.result, 'none', JSON.stringify(none.status));
  });
});

describe('DNS configuration', () => {
  it('takes "ip", "ip:port" and "[ipv6]:port" nameservers and nothing else', () => {
    for (const ok of ['192.0.2.53', '127.0.0.1:5353', '2001:db8::53', '[2001:db8::53]:53', '[::1]:5353'])
      assert.ok(isServerAddress(ok), ok);
    for (const bad of ['', 'ns.example', '192.0.2.53:0', '192.0.2.53:65536', '2001:db8::53:53x', '[192.0.2.1]:53', '::1:53:'])
      assert.ok(!isServerAddress(bad), bad);
    assert.throws(() => new Dns({ servers: ['ns.example'] }), /bad nameserver address "ns.example"/);
  });

  it('parses the dns: section with its defaults', () => {
    const config = dnsConfigSchema.parse({});
    assert.deepEqual(dnsOptions(config), {
      servers: [],
      timeoutMs: 5000,
      tries: 2,
      maxEntries: 10_000,
      ttlMs: 300_000,
      negativeTtlMs: 60_000,
    });
    const set = dnsConfigSchema.parse({ servers: ['[::1]:53'], timeout: '2s', cache: { max_entries: '100', ttl: '1m', negative_ttl: 0 } });
    assert.deepEqual(dnsOptions(set), {
      servers: ['[::1]:53'],
      timeoutMs: 2000,
      tries: 2,
      maxEntries: 100,
      ttlMs: 60_000,
      negativeTtlMs: 0,
    });
    assert.throws(() => dnsConfigSchema.parse({ servers: ['ns.example'] }), /expected .*ip:port.* or .*\[ipv6\]:port/);
    assert.throws(() => dnsConfigSchema.parse({ timeout: 'soon' }), /expected a duration/);
    assert.throws(() => dnsConfigSchema.parse({ cache: { size: 1 } }));
  });
});
