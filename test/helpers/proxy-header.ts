/**
 * A hand-written PROXY protocol sender for tests (HAProxy's proxy-protocol.txt): v1 lines and
 * v2 binary headers, including deliberately odd ones (any family byte, any address block).
 */
import net from 'node:net';

/** "PROXY TCP4|TCP6 source destination sport dport\r\n". */
export function proxyV1(source: string, destination: string, sourcePort = 40000, destinationPort = 25): Buffer {
  const family = net.isIPv6(source) ? 'TCP6' : 'TCP4';
  return Buffer.from(`PROXY ${family} ${source} ${destination} ${sourcePort} ${destinationPort}\r\n`, 'ascii');
}

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ipBytes(address: string): Buffer {
  if (net.isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  // Expand "::" and an embedded IPv4 tail into 8 groups.
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export interface ProxyV2Options {
  command?: 'local' | 'proxy';
  /** The family/transport byte; by default INET or INET6 over STREAM (0x11, 0x21) from the source, UNSPEC without one. */
  family?: number;
  source?: string;
  destination?: string;
  sourcePort?: number;
  destinationPort?: number;
  /** The address block as it is, in place of one built from the addresses. */
  addressBytes?: Buffer;
  tlvs?: Buffer;
}

export function proxyV2(opts: ProxyV2Options = {}): Buffer {
  const command = opts.command === 'local' ? 0x20 : 0x21;
  let family = opts.family;
  let addresses = opts.addressBytes ?? Buffer.alloc(0);
  if (!opts.addressBytes && opts.source && opts.destination) {
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(opts.sourcePort ?? 40000, 0);
    ports.writeUInt16BE(opts.destinationPort ?? 25, 2);
    addresses = Buffer.concat([ipBytes(opts.source), ipBytes(opts.destination), ports]);
    family ??= net.isIPv4(opts.source) ? 0x11 : 0x21;
  }
  family ??= 0x00;
  const tlvs = opts.tlvs ?? Buffer.alloc(0);
  const head = Buffer.alloc(4);
  head[0] = command;
  head[1] = family;
  head.writeUInt16BE(addresses.length + tlvs.length, 2);
  return Buffer.concat([SIGNATURE, head, addresses, tlvs]);
}
