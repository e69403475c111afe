import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMailError } from '../../src/errors.js';
import { DeliveryError, MxResolver, addressLiteral, type DnsResolver } from '../../src/queue/mx.js';
import { nextHopKey, parseNextHop } from '../../src/queue/nexthop.js';

type Zone = Record<string, { mx?: Array<[number, string]> | string; a?: string[] | string; aaaa?: string[] | string }>;

/** A resolver answering from a table; a string value is the error code to fail with (ENODATA, ESERVFAIL...). */
function fakeResolver(zone: Zone): DnsResolver & { queries: string[] } {
  const queries: string[] = [];
  const fail = (code: string) => Object.assign(new Error(`query failed: ${code}`), { code });
  const answer = <T>(name: string, type: 'mx' | 'a' | 'aaaa', map: (v: never) => T): Promise<T> => {
    queries.push(`${type}:${name}`);
    const entry = zone[name];
    if (!entry) return Promise.reject(fail('ENOTFOUND'));
    const v = entry[type];
    if (v === undefined) return Promise.reject(fail('ENODATA'));
    if (typeof v === 'string') return Promise.reject(fail(v));
    return Promise.resolve(map(v as never));
  };
  return {
    queries,
    resolveMx: (name) => answer(name, 'mx', (v: Array<[number, string]>) => v.map(([priority, exchange]) => ({ priority, exchange }))),
    resolve4: (name) => answer(name, 'a', (v: string[]) => v),
    resolve6: (name) => answer(name, 'aaaa', (v: string[]) => v),
  };
}

async function rejectsWith(p: Promise<unknown>, code: number, enhanced: string, permanent: boolean) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DeliveryError, `expected a DeliveryError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.enhanced, enhanced);
    assert.equal(err.permanent, permanent);
    return true;
  });
}

describe('MX resolution', () => {
  it('orders MX hosts by preference, IPv4 before IPv6, and skips hosts without addresses', async () => {
    const dns = fakeResolver({
      'example.com': {
        mx: [
          [30, 'c.example.com.'],
          [10, 'a.example.com'],
          [20, 'gone.example.com'],
          [20, 'b.example.com'],
        ],
      },
      'a.example.com': { a: ['192.0.2.1'], aaaa: ['2001:db8::1'] },
      'b.example.com': { a: ['192.0.2.2'] },
      'c.example.com': { aaaa: ['2001:db8::3'] },
    });
    const mx = new MxResolver({ resolver: dns });
    const { hosts } = await mx.hostsFor('Example.COM');
    assert.deepEqual(hosts, [
      { name: 'a.example.com', addresses: ['192.0.2.1', '2001:db8::1'] },
      { name: 'b.example.com', addresses: ['192.0.2.2'] },
      { name: 'c.example.com', addresses: ['2001:db8::3'] },
    ]);
    assert.ok(dns.queries.includes('a:gone.example.com'), 'the host without addresses was looked up, then left out');
  });

  it('shuffles hosts of equal preference but keeps preference groups in order', async () => {
    const dns = fakeResolver({
      'example.net': {
        mx: [
          [5, 'x1.example.net'],
          [5, 'x2.example.net'],
          [5, 'x3.example.net'],
          [50, 'backup.example.net'],
        ],
      },
      'x1.example.net': { a: ['192.0.2.11'] },
      'x2.example.net': { a: ['192.0.2.12'] },
      'x3.example.net': { a: ['192.0.2.13'] },
      'backup.example.net': { a: ['192.0.2.99'] },
    });
    const mx = new MxResolver({ resolver: dns });
    const firsts = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const names = (await mx.hostsFor('example.net')).hosts.map((h) => h.name);
      assert.equal(names.length, 4);
      assert.equal(names[3], 'backup.example.net');
      assert.deepEqual([...names.slice(0, 3)].sort(), ['x1.example.net', 'x2.example.net', 'x3.example.net']);
      firsts.add(names[0]!);
    }
    // 60 draws of a fair shuffle give the same first host every time with probability 3 * (1/3)^60.
    assert.ok(firsts.size > 1, 'equal-preference hosts are not always in the same order');
  });

  it('falls back to the implicit MX (the domain A/AAAA) when there are no MX records (RFC 5321 5.1)', async () => {
    const mx = new MxResolver({ resolver: fakeResolver({ 'implicit.example': { a: ['192.0.2.7'], aaaa: ['2001:db8::7'] } }) });
    assert.deepEqual((await mx.hostsFor('implicit.example')).hosts, [
      { name: 'implicit.example', addresses: ['192.0.2.7', '2001:db8::7'] },
    ]);
  });

  it('treats a domain with neither MX nor address records as permanently undeliverable', async () => {
    const mx = new MxResolver({ resolver: fakeResolver({ 'txt-only.example': {} }) });
    await rejectsWith(mx.hostsFor('txt-only.example'), 550, '5.4.4', true);
  });

  it('refuses a null MX permanently (RFC 7505)', async () => {
    for (const exchange of ['', '.']) {
      const mx = new MxResolver({ resolver: fakeResolver({ 'nomail.example': { mx: [[0, exchange]], a: ['192.0.2.5'] } }) });
      await rejectsWith(mx.hostsFor('nomail.example'), 556, '5.1.10', true);
    }
  });

  it('fails permanently on NXDOMAIN and temporarily on SERVFAIL, timeouts and refused queries', async () => {
    const mx = new MxResolver({
      resolver: fakeResolver({
        'broken.example': { mx: 'ESERVFAIL' },
        'slow.example': { mx: 'ETIMEOUT' },
        'refused.example': { mx: 'ECONNREFUSED' },
        'mxdown.example': { mx: [[10, 'mx.mxdown.example']] },
        'mx.mxdown.example': { a: 'ESERVFAIL', aaaa: 'ENODATA' },
      }),
    });
    await rejectsWith(mx.hostsFor('nx.example'), 550, '5.1.2', true);
    await rejectsWith(mx.hostsFor('broken.example'), 451, '4.4.3', false);
    await rejectsWith(mx.hostsFor('slow.example'), 451, '4.4.3', false);
    await rejectsWith(mx.hostsFor('refused.example'), 451, '4.4.3', false);
    // The only MX host's A lookup failed temporarily: retry later, do not bounce.
    await rejectsWith(mx.hostsFor('mxdown.example'), 451, '4.4.3', false);
  });

  it('uses address literals as they are, without DNS', async () => {
    const dns = fakeResolver({});
    const mx = new MxResolver({ resolver: dns });
    assert.deepEqual((await mx.hostsFor('[192.0.2.1]')).hosts, [{ name: '192.0.2.1', addresses: ['192.0.2.1'] }]);
    assert.deepEqual((await mx.hostsFor('[IPv6:2001:db8::1]')).hosts, [{ name: '2001:db8::1', addresses: ['2001:db8::1'] }]);
    await rejectsWith(mx.hostsFor('[not-an-ip]'), 553, '5.1.2', true);
    assert.deepEqual(dns.queries, []);
    assert.equal(addressLiteral('[2001:db8::1]'), undefined, 'IPv6 literals need the IPv6: tag (RFC 5321 4.1.3)');
  });

  it('resolves explicit hosts without MX lookup, and never fails them permanently', async () => {
    const dns = fakeResolver({ 'relay.example': { mx: [[10, 'elsewhere.example']], a: ['192.0.2.40'] } });
    const mx = new MxResolver({ resolver: dns });
    assert.deepEqual((await mx.hostAddresses('relay.example')).hosts, [{ name: 'relay.example', addresses: ['192.0.2.40'] }]);
    assert.deepEqual(dns.queries.sort(), ['a:relay.example', 'aaaa:relay.example']);
    assert.deepEqual((await mx.hostAddresses('192.0.2.41')).hosts, [{ name: '192.0.2.41', addresses: ['192.0.2.41'] }]);
    await rejectsWith(mx.hostAddresses('typo.example'), 451, '4.4.3', false);
  });
});

describe('next hop syntax', () => {
  const defaults = { port: 25, tls: 'may' as const };

  it('parses the Postfix forms', () => {
    const cases: Array<[string, string, number, 'mx' | 'host']> = [
      ['smtp:[mail.example.com]:587', 'mail.example.com', 587, 'host'],
      ['smtp:example.com', 'example.com', 25, 'mx'],
      ['[relay.example.com]', 'relay.example.com', 25, 'host'],
      ['[relay.example.com]:submission', 'relay.example.com', 587, 'host'],
      ['Example.com:2525', 'example.com', 2525, 'mx'],
      ['relay:[192.0.2.4]', '192.0.2.4', 25, 'host'],
      ['192.0.2.4:26', '192.0.2.4', 26, 'host'],
      ['[IPv6:2001:db8::1]', '2001:db8::1', 25, 'host'],
      ['[2001:db8::1]:2525', '2001:db8::1', 2525, 'host'],
      ['example.com.', 'example.com', 25, 'mx'],
    ];
    for (const [text, host, port, lookup] of cases) {
      assert.deepEqual(parseNextHop(text, defaults), { host, port, lookup, tls: 'may' }, text);
    }
    assert.equal(parseNextHop('[relay.example]', { port: 587, tls: 'encrypt' }).port, 587);
    assert.equal(parseNextHop('[relay.example]', { port: 587, tls: 'encrypt' }).tls, 'encrypt');
    // RFC 8314: port 465 is TLS from the first byte.
    assert.deepEqual(parseNextHop('[smtp.provider.example]:465', defaults), {
      host: 'smtp.provider.example',
      port: 465,
      lookup: 'host',
      tls: 'may',
      implicitTls: true,
    });
    assert.equal(parseNextHop('[smtp.provider.example]:smtps', defaults).implicitTls, true);
    assert.equal(parseNextHop('[smtp.provider.example]:587', defaults).implicitTls, undefined);
  });

  it('refuses other transports, whitespace, CR/LF and malformed hops with CONFIG_INVALID', () => {
    const bad = [
      'lmtp:unix:/var/run/dovecot/lmtp',
      'error:mail for this domain is refused',
      'local:',
      'smtp:',
      '',
      'relay.example\r\nRCPT TO:<x@y>',
      ' relay.example',
      '[relay.example',
      '[relay.example]x',
      '[relay.example]:0',
      '[relay.example]:70000',
      'relay.example:smtpx',
      '2001:db8::1',
      'bad_host!.example',
      '[IPv6:not-an-address]',
    ];
    for (const text of bad)
      assert.throws(
        () => parseNextHop(text, defaults),
        (err) => isMailError(err, 'CONFIG_INVALID'),
        JSON.stringify(text),
      );
  });

  it('gives one key per destination', () => {
    assert.equal(nextHopKey(parseNextHop('smtp:[Relay.Example]:587', defaults)), '[relay.example]:587');
    assert.equal(nextHopKey(parseNextHop('[relay.example]', defaults)), '[relay.example]:25');
    assert.equal(nextHopKey(parseNextHop('Example.com', defaults)), 'example.com');
    assert.equal(nextHopKey(parseNextHop('example.com:2525', defaults)), 'example.com:2525');
    assert.equal(nextHopKey(parseNextHop('[IPv6:2001:db8::1]', defaults)), '[2001:db8::1]:25');
  });
});
