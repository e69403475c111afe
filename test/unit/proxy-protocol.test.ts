/**
 * The PROXY protocol parser (src/listen/proxy-protocol.ts) against HAProxy's proxy-protocol.txt:
 * v1 lines and v2 binary headers of every family, fed whole and byte by byte, and hostile input
 * (truncated, oversized, wrong signature, bad versions, commands, families, lengths, addresses,
 * ports). And the socket reader: the bytes after the header stay for the protocol, a silent or
 * vanishing sender is given up on.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { parseProxyHeader, PROXY_V2_MAX_BYTES, type ProxyParse } from '../../src/listen/proxy-protocol.js';
import { readProxyHeader } from '../../src/listen/proxy-reader.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';

function done(result: ProxyParse) {
  assert.ok(result.done, 'a complete header');
  return result.header;
}

/** Feeds `bytes` one more byte at a time: every proper prefix needs more, the whole is done. */
function byteByByte(bytes: Buffer) {
  for (let n = 0; n < bytes.length; n++) assert.deepEqual(parseProxyHeader(bytes.subarray(0, n)), { done: false }, `prefix of ${n} bytes`);
  return done(parseProxyHeader(bytes));
}

const bad = (bytes: Buffer | string, pattern: RegExp) =>
  assert.throws(
    () => parseProxyHeader(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1')),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PROXY_HEADER');
      assert.match(err.message, pattern);
      return true;
    },
  );

describe('PROXY protocol v1', () => {
  it('reads TCP4 and TCP6 lines, IPv4-mapped IPv6 as IPv4, and keeps what follows', () => {
    const line = 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n';
    const header = byteByByte(Buffer.from(line));
    assert.deepEqual(header, {
      version: 1,
      source: { address: '192.0.2.1', port: 56324 },
      destination: { address: '198.51.100.2', port: 25 },
      length: line.length,
    });
    const withData = done(parseProxyHeader(Buffer.from(line + 'EHLO x\r\n')));
    assert.equal(withData.length, line.length, 'the header ends at its CRLF; the rest is the protocol');
    const v6 = done(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n')));
    assert.deepEqual(v6.source, { address: '2001:db8::7', port: 65535 });
    assert.deepEqual(v6.destination, { address: '2001:db8::1', port: 0 });
    const mapped = done(parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n')));
    assert.equal(mapped.source!.address, '192.0.2.9');
  });

  it('takes UNKNOWN with or without addresses as "use the connection itself"', () => {
    assert.deepEqual(done(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))), { version: 1, length: 15 });
    const longest = `PROXY UNKNOWN ${'f'.repeat(39)} ${'f'.repeat(39)} 65535 65535\r\n`;
    assert.equal(longest.length, 107);
    assert.deepEqual(done(parseProxyHeader(Buffer.from(longest))), { version: 1, length: 107 });
  });

  it('refuses lines over 107 bytes, without CRLF, or not ASCII', () => {
    bad(`PROXY UNKNOWN ${'f'.repeat(92)}\r\n`, /no line end within 107 bytes/);
    bad(`PROXY TCP4 ${'1'.repeat(200)}`, /no line end within 107 bytes/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 1 25\n', /CRLF/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 1\x0025\r\n', /printable US-ASCII/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 1 2\xe9\r\n', /printable US-ASCII/);
  });

  it('refuses wrong protocols, field counts, addresses and ports', () => {
    bad('PROXY TCP5 192.0.2.1 198.51.100.2 1 25\r\n', /unknown protocol/);
    bad('PROXY tcp4 192.0.2.1 198.51.100.2 1 25\r\n', /unknown protocol/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n', /expected "PROXY TCP4/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 1 25 x\r\n', /expected "PROXY TCP4/);
    bad('PROXY TCP4  192.0.2.1 198.51.100.2 1 25\r\n', /expected "PROXY TCP4/);
    bad('PROXY TCP4 2001:db8::1 198.51.100.2 1 25\r\n', /bad TCP4 address/);
    bad('PROXY TCP6 192.0.2.1 ::1 1 25\r\n', /bad TCP6 address/);
    bad('PROXY TCP4 256.0.2.1 198.51.100.2 1 25\r\n', /bad TCP4 address/);
    bad('PROXY TCP4 mail.example 198.51.100.2 1 25\r\n', /bad TCP4 address/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n', /bad port/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 0080 25\r\n', /bad port/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n', /bad port/);
    bad('PROXY TCP4 192.0.2.1 198.51.100.2 1 +25\r\n', /bad port/);
  });

  it('refuses anything that does not start like a header, at its first wrong byte', () => {
    bad('EHLO client.example\r\n', /no PROXY protocol header/);
    bad('PROXX', /no PROXY protocol header/);
    bad('proxy TCP4', /no PROXY protocol header/);
    bad(Buffer.from([0x16, 0x03, 0x01]), /no PROXY protocol header/); // a TLS ClientHello
    assert.deepEqual(parseProxyHeader(Buffer.from('PROX')), { done: false }, 'a prefix of "PROXY " needs more');
  });
});

describe('PROXY protocol v2', () => {
  it('reads INET and INET6 headers byte by byte, skipping TLVs', () => {
    const v4 = proxyV2({ source: '203.0.113.9', destination: '198.51.100.2', sourcePort: 40000, destinationPort: 993 });
    assert.deepEqual(byteByByte(v4), {
      version: 2,
      source: { address: '203.0.113.9', port: 40000 },
      destination: { address: '198.51.100.2', port: 993 },
      length: 28,
    });
    const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63, 0x05, 0x00, 0x01, 0xff]); // NOOP and UNIQUE_ID
    const v6 = proxyV2({ source: '2001:db8::7', destination: '2001:db8::1', sourcePort: 1, destinationPort: 25, tlvs: tlv });
    assert.deepEqual(byteByByte(v6), {
      version: 2,
      source: { address: '2001:db8::7', port: 1 },
      destination: { address: '2001:db8::1', port: 25 },
      length: 16 + 36 + tlv.length,
    });
    const mapped = done(parseProxyHeader(proxyV2({ source: '::ffff:192.0.2.9', destination: '::1' })));
    assert.equal(mapped.source!.address, '192.0.2.9');
  });

  it('takes LOCAL, UNSPEC and UNIX as "use the connection itself"', () => {
    const local = proxyV2({ command: 'local' });
    assert.deepEqual(done(parseProxyHeader(local)), { version: 2, length: 16 });
    const localWithAddresses = proxyV2({ command: 'local', source: '192.0.2.1', destination: '192.0.2.2' });
    assert.deepEqual(done(parseProxyHeader(localWithAddresses)), { version: 2, length: 28 });
    const unspec = proxyV2({ family: 0x00 });
    assert.deepEqual(done(parseProxyHeader(unspec)), { version: 2, length: 16 });
    const unix = proxyV2({ family: 0x31, addressBytes: Buffer.alloc(216) });
    assert.deepEqual(done(parseProxyHeader(unix)), { version: 2, length: 16 + 216 });
  });

  it('refuses a wrong signature, version, command, family or transport', () => {
    const good = proxyV2({ source: '192.0.2.1', destination: '192.0.2.2' });
    const tweak = (at: number, value: number) => {
      const copy = Buffer.from(good);
      copy[at] = value;
      return copy;
    };
    bad(tweak(11, 0x0b), /no PROXY protocol header/);
    bad(tweak(0, 0x0a), /no PROXY protocol header/);
    bad(tweak(12, 0x11), /unknown version 1/);
    bad(tweak(12, 0x31), /unknown version 3/);
    bad(tweak(12, 0x22), /unknown command 2/);
    bad(tweak(13, 0x41), /unknown address family 4/);
    bad(tweak(13, 0x13), /unknown transport 3/);
    bad(tweak(13, 0x12), /only STREAM/); // INET over UDP
  });

  it('refuses lengths too short for the family or over the limit, before reading the body', () => {
    const shortV4 = proxyV2({ family: 0x11, addressBytes: Buffer.alloc(11) });
    bad(shortV4, /too short for the address family/);
    bad(shortV4.subarray(0, 16), /too short for the address family/);
    bad(proxyV2({ family: 0x21, addressBytes: Buffer.alloc(35) }).subarray(0, 16), /too short/);
    bad(proxyV2({ family: 0x31, addressBytes: Buffer.alloc(215) }).subarray(0, 16), /too short/);
    const huge = proxyV2({ source: '192.0.2.1', destination: '192.0.2.2', tlvs: Buffer.alloc(PROXY_V2_MAX_BYTES) });
    bad(huge.subarray(0, 16), /over the limit/);
    const atLimit = proxyV2({ source: '192.0.2.1', destination: '192.0.2.2', tlvs: Buffer.alloc(PROXY_V2_MAX_BYTES - 28) });
    assert.equal(done(parseProxyHeader(atLimit)).length, PROXY_V2_MAX_BYTES);
    // Truncated: a length promising more than was sent is still waiting.
    assert.deepEqual(parseProxyHeader(atLimit.subarray(0, atLimit.length - 1)), { done: false });
  });
});

describe('PROXY header reader', () => {
  async function pair(): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> {
    const listener = net.createServer({ pauseOnConnect: true });
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    const [server] = (await once(listener, 'connection')) as [net.Socket];
    return {
      client,
      server,
      close: () => {
        client.destroy();
        server.destroy();
        listener.close();
      },
    };
  }

  it('puts back the bytes that came with the header, in order', async () => {
    const { client, server, close } = await pair();
    try {
      client.write(Buffer.concat([proxyV1('192.0.2.1', '192.0.2.2', 1, 25), Buffer.from('EHLO a\r\n')]));
      const header = await readProxyHeader(server, 5000);
      assert.equal(header.source!.address, '192.0.2.1');
      client.write('QUIT\r\n');
      let text = '';
      server.on('data', (d) => (text += String(d)));
      server.resume();
      while (!text.includes('QUIT\r\n')) await once(server, 'data');
      assert.equal(text, 'EHLO a\r\nQUIT\r\n');
    } finally {
      close();
    }
  });

  it('gives up on a sender that stays silent, or leaves before the header is complete', async () => {
    const silent = await pair();
    try {
      silent.client.write('PROXY TCP4 192.0');
      await assert.rejects(readProxyHeader(silent.server, 50), /no complete PROXY header within 50 ms/);
    } finally {
      silent.close();
    }
    const leaving = await pair();
    try {
      leaving.client.end(proxyV2({ source: '192.0.2.1', destination: '192.0.2.2' }).subarray(0, 20));
      await assert.rejects(readProxyHeader(leaving.server, 5000), /connection closed before a complete PROXY header/);
    } finally {
      leaving.close();
    }
    const garbage = await pair();
    try {
      garbage.client.write('GET / HTTP/1.0\r\n');
      await assert.rejects(readProxyHeader(garbage.server, 5000), /no PROXY protocol header/);
    } finally {
      garbage.close();
    }
  });
});
