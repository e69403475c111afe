/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), sent by a load
 * balancer before the first byte of the client's stream to say who the client is.
 *
 * v1 (section 2.1): one line of US-ASCII, at most 107 bytes with its CRLF:
 *   "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN ...\r\n".
 * v2 (section 2.2): a 12-byte signature, a version/command byte, a family/transport byte, a
 * 16-bit length, then the addresses and optional TLVs (skipped here).
 *
 * parseProxyHeader is incremental: it is given everything read so far, answers "need more" or
 * the header and its length, and throws as soon as the bytes cannot be a valid header, so a
 * client that is not a proxy is refused without waiting for a line end or a length.
 */
import net from 'node:net';
import { MailError } from '../errors.js';
import { normalizeIp } from '../net.js';

/** Section 2.1: the longest v1 line, "PROXY UNKNOWN" with the longest addresses, CRLF included. */
const PROXY_V1_MAX_BYTES = 107;
/** The longest v2 header taken (16 + addresses + TLVs); HAProxy's own are far shorter. */
export const PROXY_V2_MAX_BYTES = 16 + 2048;

const V1_PREFIX = Buffer.from('PROXY ', 'ascii');
/** Section 2.2: "\r\n\r\n\0\r\nQUIT\n". */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export interface ProxyEndpoint {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /**
   * The client and the address it connected to. Absent when the header says the connection's
   * own endpoints apply: v1 UNKNOWN, v2 LOCAL (the proxy's health checks), v2 UNSPEC or UNIX.
   */
  source?: ProxyEndpoint;
  destination?: ProxyEndpoint;
  /** How many bytes the header took; what follows belongs to the client's protocol. */
  length: number;
}

export type ProxyParse = { done: false } | { done: true; header: ProxyHeader };

export class ProxyHeaderError extends MailError {
  constructor(message: string) {
    super('PROXY_HEADER', message);
    this.name = 'ProxyHeaderError';
  }
}

const NEED_MORE: ProxyParse = { done: false };

/** Whether `data` (possibly short) agrees with `prefix` on every byte it has. */
function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.subarray(0, n).equals(prefix.subarray(0, n));
}

/** Parses the PROXY header at the start of `data`; throws ProxyHeaderError when it is not one. */
export function parseProxyHeader(data: Buffer): ProxyParse {
  if (data.length === 0) return NEED_MORE;
  if (startsLike(data, V2_SIGNATURE)) return data.length < V2_SIGNATURE.length ? NEED_MORE : parseV2(data);
  if (startsLike(data, V1_PREFIX)) return parseV1(data);
  throw new ProxyHeaderError('no PROXY protocol header (neither the v1 "PROXY " nor the v2 signature)');
}

const PORT = /^(?:0|[1-9][0-9]{0,4})$/;

function v1Port(text: string): number {
  const port = PORT.test(text) ? Number(text) : NaN;
  if (!(port <= 65535)) throw new ProxyHeaderError(`v1: bad port ${JSON.stringify(text.slice(0, 8))}`);
  return port;
}

function v1Address(text: string, family: 'TCP4' | 'TCP6'): string {
  const ok = family === 'TCP4' ? net.isIPv4(text) : net.isIPv6(text);
  if (!ok) throw new ProxyHeaderError(`v1: bad ${family} address ${JSON.stringify(text.slice(0, 45))}`);
  return normalizeIp(text);
}

function parseV1(data: Buffer): ProxyParse {
  const window = data.subarray(0, PROXY_V1_MAX_BYTES);
  const lf = window.indexOf(0x0a);
  if (lf === -1) {
    if (data.length >= PROXY_V1_MAX_BYTES) throw new ProxyHeaderError(`v1: no line end within ${PROXY_V1_MAX_BYTES} bytes`);
    return NEED_MORE;
  }
  if (lf === 0 || window[lf - 1] !== 0x0d) throw new ProxyHeaderError('v1: the line does not end with CRLF');
  const line = window.subarray(0, lf - 1).toString('latin1');
  if (!/^[\x20-\x7e]*$/.test(line)) throw new ProxyHeaderError('v1: characters outside printable US-ASCII');
  const fields = line.split(' ');
  const length = lf + 1;
  // Section 2.1: with UNKNOWN the receiver ignores the rest of the line and uses the connection's endpoints.
  if (fields[1] === 'UNKNOWN') return { done: true, header: { version: 1, length } };
  if (fields[1] !== 'TCP4' && fields[1] !== 'TCP6')
    throw new ProxyHeaderError(`v1: unknown protocol ${JSON.stringify(fields[1]?.slice(0, 16))}`);
  if (fields.length !== 6) throw new ProxyHeaderError('v1: expected "PROXY TCP4|TCP6 source destination sport dport"');
  const family = fields[1];
  return {
    done: true,
    header: {
      version: 1,
      source: { address: v1Address(fields[2]!, family), port: v1Port(fields[4]!) },
      destination: { address: v1Address(fields[3]!, family), port: v1Port(fields[5]!) },
      length,
    },
  };
}

/** Section 2.2: the address block's size per family (INET, INET6, UNIX). */
const ADDRESS_BYTES: Record<number, number> = { 0x1: 12, 0x2: 36, 0x3: 216 };

function ipv6At(data: Buffer, offset: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(data.readUInt16BE(offset + i).toString(16));
  return normalizeIp(groups.join(':'));
}

function parseV2(data: Buffer): ProxyParse {
  if (data.length < 16) return NEED_MORE;
  const versionCommand = data[12]!;
  const familyTransport = data[13]!;
  const version = versionCommand >> 4;
  const command = versionCommand & 0x0f;
  const family = familyTransport >> 4;
  const transport = familyTransport & 0x0f;
  if (version !== 0x2) throw new ProxyHeaderError(`v2: unknown version ${version}`);
  // Receivers must drop connections presenting an unexpected command, family or protocol.
  if (command !== 0x0 && command !== 0x1) throw new ProxyHeaderError(`v2: unknown command ${command}`);
  if (family > 0x3) throw new ProxyHeaderError(`v2: unknown address family ${family}`);
  if (transport > 0x2) throw new ProxyHeaderError(`v2: unknown transport ${transport}`);
  const length = 16 + data.readUInt16BE(14);
  if (length > PROXY_V2_MAX_BYTES) throw new ProxyHeaderError(`v2: header of ${length} bytes is over the limit of ${PROXY_V2_MAX_BYTES}`);
  const needed = ADDRESS_BYTES[family] ?? 0;
  // The length covers the addresses (and TLVs): one shorter than its family's addresses is malformed.
  if (command === 0x1 && length - 16 < needed) throw new ProxyHeaderError(`v2: length ${length - 16} is too short for the address family`);
  if (data.length < length) return NEED_MORE;
  // LOCAL: the proxy's own connection (health checks); UNSPEC and UNIX carry no IP client.
  if (command === 0x0 || family === 0x0 || family === 0x3) return { done: true, header: { version: 2, length } };
  if (transport !== 0x1) throw new ProxyHeaderError('v2: only STREAM (TCP) connections are proxied to a mail listener');
  if (family === 0x1) {
    const ipv4 = (offset: number) => [...data.subarray(offset, offset + 4)].join('.');
    return {
      done: true,
      header: {
        version: 2,
        source: { address: ipv4(16), port: data.readUInt16BE(24) },
        destination: { address: ipv4(20), port: data.readUInt16BE(26) },
        length,
      },
    };
  }
  return {
    done: true,
    header: {
      version: 2,
      source: { address: ipv6At(data, 16), port: data.readUInt16BE(48) },
      destination: { address: ipv6At(data, 32), port: data.readUInt16BE(50) },
      length,
    },
  };
}
