/** The parts of the dovecot-auth listener that are pure functions: tab escaping, parameters, who may connect over TCP. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mayConnect } from '../../src/dovecot-auth/server.js';
import { parseParams, tabEscape, tabUnescape } from '../../src/dovecot-auth/wire.js';
import { NetworkList } from '../../src/net.js';

describe('dovecot-auth wire format', () => {
  it("escapes and unescapes values as Dovecot's str_tabescape does", () => {
    const raw = 'a\tb\nc\rd\u0001e';
    assert.equal(tabEscape(raw), 'a\u0001tb\u0001nc\u0001rd\u00011e');
    assert.equal(tabUnescape(tabEscape(raw)), raw);
    assert.equal(tabUnescape('plain'), 'plain');
  });

  it('parses flags and key=value parameters; the first of a repeated key counts', () => {
    const p = parseParams(['service=smtp', 'secured', 'rip=192.0.2.1', 'rip=10.0.0.1', '', 'resp=AGEAYg==']);
    assert.deepEqual([...p.flags], ['secured']);
    assert.equal(p.values.get('service'), 'smtp');
    assert.equal(p.values.get('rip'), '192.0.2.1');
    assert.equal(p.values.get('resp'), 'AGEAYg==');
  });
});

describe('dovecot-auth TCP peers', () => {
  it('lets loopback and trusted_networks connect, and nobody else', () => {
    const trusted = new NetworkList(['10.1.0.0/16']);
    for (const ip of ['127.0.0.1', '127.0.0.2', '::1', '10.1.2.3']) assert.equal(mayConnect(ip, trusted), true, ip);
    for (const ip of ['192.0.2.7', '10.2.0.1', '2001:db8::1', '']) assert.equal(mayConnect(ip, trusted), false, ip);
    assert.equal(mayConnect('10.1.2.3', new NetworkList([])), false);
  });
});
