/**
 * The test DNS server (test/helpers/dns-server.ts) as node's own resolver (c-ares) sees it: every
 * record type it serves, the response codes, aliases, answers too big for UDP that the resolver
 * fetches again over TCP (RFC 1035 section 4.2), and dropped questions that time out.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startDnsServer, type DnsServer, type DnsZone } from '../helpers/dns-server.js';

/** A TXT record of 600 octets: its answer does not fit in a 512-octet UDP message. */
const LONG = 'v=DKIM1; k=rsa; p=' + 'A'.repeat(582);

const ZONE: DnsZone = {
  'host.example': { a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1'], mx: [{ preference: 10, exchange: 'mx.host.example' }] },
  'text.example': { txt: [['v=spf1', ' -all'], 'second record'] },
  'long.example': { txt: [LONG] },
  'many.example': { txt: Array.from({ length: 40 }, (_, i) => `record number ${i}`) },
  '1.2.0.192.in-addr.arpa': { ptr: ['host.example', 'alias.example'] },
  'alias.example': { cname: 'host.example' },
  'alias2.example': { cname: 'alias.example' },
  'dangling.example': { cname: 'missing.example' },
  'gone.example': { nxdomain: true, a: ['192.0.2.9'] },
  'broken.example': { servfail: ['TXT'], a: ['192.0.2.3'] },
  'silent.example': { drop: true },
  'half-silent.example': { drop: ['TXT'], a: ['192.0.2.4'] },
  'below.parent.example': { a: ['192.0.2.5'] },
};

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** A query message for `name` and `type` (RFC 1035 section 4.1), id 0x1234, RD set. */
function query(name: string, type: number): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
}

describe('test DNS server', () => {
  let dns: DnsServer;
  let resolver: Resolver;
  before(async () => {
    dns = await startDnsServer(ZONE);
    resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${dns.port}`]);
  });
  after(async () => {
    resolver.cancel();
    await dns.close();
  });
  const since = (from: number) =>
    dns.queries.slice(from).map((q) => `${q.type} ${q.name} ${q.rcode}${q.tcp ? ' tcp' : ''}${q.truncated ? ' TC' : ''}`);

  it('answers A, AAAA and MX as before', async () => {
    assert.deepEqual((await resolver.resolve4('HOST.example')).sort(), ['192.0.2.1', '192.0.2.2']);
    assert.deepEqual(await resolver.resolve6('host.example'), ['2001:db8::1']);
    assert.deepEqual(await resolver.resolveMx('host.example'), [{ priority: 10, exchange: 'mx.host.example' }]);
  });

  it('answers TXT: several records, several character-strings per record', async () => {
    const txt = await resolver.resolveTxt('text.example');
    assert.deepEqual(
      txt.sort((a, b) => a.length - b.length),
      [['second record'], ['v=spf1', ' -all']],
    );
  });

  it('splits a long TXT string into 255-octet character-strings and serves it over TCP', async () => {
    const q0 = dns.queries.length;
    const txt = await resolver.resolveTxt('long.example');
    assert.deepEqual(
      txt[0]!.map((s) => s.length),
      [255, 255, 90],
    );
    assert.equal(txt[0]!.join(''), LONG);
    assert.deepEqual(since(q0), ['TXT long.example NOERROR TC', 'TXT long.example NOERROR tcp']);
  });

  it('serves an answer of many records over TCP after a truncated UDP answer', async () => {
    const txt = await resolver.resolveTxt('many.example');
    assert.equal(txt.length, 40);
    assert.ok(txt.some((r) => r.join('') === 'record number 39'));
  });

  it('answers PTR', async () => {
    assert.deepEqual((await resolver.resolvePtr('1.2.0.192.in-addr.arpa')).sort(), ['alias.example', 'host.example']);
  });

  it('answers CNAME, and follows aliases for other types', async () => {
    assert.deepEqual(await resolver.resolveCname('alias.example'), ['host.example']);
    const q0 = dns.queries.length;
    assert.deepEqual((await resolver.resolve4('alias2.example')).sort(), ['192.0.2.1', '192.0.2.2']);
    assert.equal(dns.queries[q0]!.answers, 4, 'two CNAME records and two A records');
    await assert.rejects(resolver.resolve4('dangling.example'), (err) => code(err) === 'ENOTFOUND');
    assert.deepEqual(since(q0 + 1), ['A dangling.example NXDOMAIN']);
  });

  it('answers NXDOMAIN, NODATA and SERVFAIL', async () => {
    await assert.rejects(resolver.resolve4('nowhere.example'), (err) => code(err) === 'ENOTFOUND');
    await assert.rejects(resolver.resolve4('gone.example'), (err) => code(err) === 'ENOTFOUND');
    await assert.rejects(resolver.resolveTxt('host.example'), (err) => code(err) === 'ENODATA');
    await assert.rejects(resolver.resolve4('parent.example'), (err) => code(err) === 'ENODATA', 'empty non-terminal');
    await assert.rejects(resolver.resolveTxt('broken.example'), (err) => code(err) === 'ESERVFAIL');
    assert.deepEqual(await resolver.resolve4('broken.example'), ['192.0.2.3'], 'SERVFAIL only for TXT');
  });

  it('never answers a dropped name or type, and logs the question', async () => {
    const quick = new Resolver({ timeout: 200, tries: 1 });
    quick.setServers([`127.0.0.1:${dns.port}`]);
    const q0 = dns.queries.length;
    await assert.rejects(quick.resolve4('silent.example'), (err) => code(err) === 'ETIMEOUT');
    await assert.rejects(quick.resolveTxt('half-silent.example'), (err) => code(err) === 'ETIMEOUT');
    assert.deepEqual(await quick.resolve4('half-silent.example'), ['192.0.2.4']);
    assert.deepEqual(since(q0), ['A silent.example DROPPED', 'TXT half-silent.example DROPPED', 'A half-silent.example NOERROR']);
  });

  it('answers several length-prefixed questions on one TCP connection (RFC 1035 section 4.2.2)', async () => {
    const socket = net.connect(dns.port, '127.0.0.1');
    await once(socket, 'connect');
    const framed = (msg: Buffer) => Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
    // Both questions in one write, the second split from its length prefix by nothing.
    socket.write(Buffer.concat([framed(query('host.example', 1)), framed(query('text.example', 16))]));
    let got = Buffer.alloc(0);
    const messages: Buffer[] = [];
    for await (const chunk of socket) {
      got = Buffer.concat([got, chunk as Buffer]);
      while (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        messages.push(got.subarray(2, 2 + got.readUInt16BE(0)));
        got = got.subarray(2 + got.readUInt16BE(0));
      }
      if (messages.length === 2) break;
    }
    socket.destroy();
    assert.equal(messages.length, 2);
    for (const m of messages) {
      assert.equal(m.readUInt16BE(0), 0x1234, 'the id is echoed');
      assert.equal(m.readUInt16BE(2) & 0x820f, 0x8000, 'a response, TC clear, NOERROR');
    }
    assert.deepEqual(
      messages.map((m) => m.readUInt16BE(6)),
      [2, 2],
      'two A records, two TXT records',
    );
  });

  it('sets TC and sends no records over UDP when the answer exceeds 512 octets', async () => {
    const socket = dgram.createSocket('udp4');
    socket.send(query('long.example', 16), dns.port, '127.0.0.1');
    const [reply] = (await once(socket, 'message')) as [Buffer];
    socket.close();
    assert.equal(reply.readUInt16BE(2) & 0x0200, 0x0200, 'TC set');
    assert.equal(reply.readUInt16BE(6), 0, 'no answers');
  });
});
