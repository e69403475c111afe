/**
 * A minimal authoritative DNS server for tests: UDP and TCP on 127.0.0.1 and one ephemeral port,
 * answering MX, A, AAAA, TXT, PTR and CNAME questions from an in-memory zone (RFC 1035 section 4).
 * Point a resolver at it with `queue.resolver: ["127.0.0.1:<port>"]`.
 *
 * - Names are case-insensitive, without a trailing dot: "example.com", "mx1.example.com".
 * - A listed name without records of the asked type, and an empty non-terminal (a name that
 *   only has names below it), answer NOERROR with no answers (NODATA).
 * - A name that is not listed, or is marked `nxdomain`, answers NXDOMAIN (RCODE 3).
 * - A name marked `servfail` answers SERVFAIL (RCODE 2), for every type or only the listed ones.
 * - A name marked `drop` gets no answer at all (for every type or only the listed ones), so a
 *   resolver times out; the question is logged with rcode 'DROPPED'.
 * - A name with a `cname` is an alias (RFC 1034 section 3.6.2): any other question for it is
 *   answered with the CNAME record followed by the target's answer when the target is in the zone
 *   (at most 8 aliases deep); the response code is the target's.
 * - Every record has TTL 0, so the resolver's cache (c-ares caches positive answers for their
 *   TTL) never keeps an answer across a setZone(); negative answers carry no SOA and are not
 *   cached either.
 *
 * Over UDP an answer must fit in 512 octets (RFC 1035 section 4.2.1; EDNS is not offered): a larger
 * one is sent with TC set and no records, and the resolver retries over TCP, where messages carry
 * a two-octet length prefix (RFC 1035 section 4.2.2) and several may follow on one connection.
 * Malformed packets and responses are ignored; a question using compression, or not exactly one
 * question, gets FORMERR; another opcode NOTIMP; another class REFUSED.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';

export interface DnsMx {
  preference: number;
  /** The exchange host name; '' (or '.') is the root: with preference 0 a null MX (RFC 7505). */
  exchange: string;
}

export type DnsType = 'MX' | 'A' | 'AAAA' | 'TXT' | 'PTR' | 'CNAME';

export interface DnsName {
  mx?: DnsMx[];
  a?: string[];
  aaaa?: string[];
  /**
   * TXT records (RFC 1035 section 3.3.14): a string is one record, split into character-strings of
   * at most 255 octets (UTF-8); an array is one record made of exactly these character-strings.
   */
  txt?: Array<string | string[]>;
  /** PTR targets (RFC 1035 section 3.3.12), e.g. for "2.0.0.127.in-addr.arpa". */
  ptr?: string[];
  /** The canonical name this name is an alias of; its other records are ignored. */
  cname?: string;
  /** Answer NXDOMAIN even though the name is listed. */
  nxdomain?: boolean;
  /** Answer SERVFAIL: for every question (true) or for these types only. */
  servfail?: boolean | DnsType[];
  /** Never answer: for every question (true) or for these types only. */
  drop?: boolean | DnsType[];
}

/** Records by owner name. */
export type DnsZone = Record<string, DnsName>;

export interface DnsQuery {
  /** The name asked for, lower case, without a trailing dot. */
  name: string;
  /** 'MX', 'A', 'AAAA', 'TXT', 'PTR', 'CNAME' or 'TYPE<n>' for others. */
  type: string;
  /** The response code sent: 'NOERROR', 'NXDOMAIN', 'SERVFAIL', 'FORMERR', ..., or 'DROPPED' (none). */
  rcode: string;
  /** Answer records sent (CNAME records of an alias chain included). */
  answers: number;
  /** True when the answer did not fit and was sent with TC and no records. */
  truncated?: boolean;
  /** True when the question came over TCP. */
  tcp?: boolean;
}

export interface DnsServer {
  /** The UDP and TCP port. */
  readonly port: number;
  /** Every question answered or dropped, in order (not FORMERR/NOTIMP replies, nor ignored packets). */
  readonly queries: DnsQuery[];
  /** Replaces the zone; takes effect for the next question. */
  setZone(zone: DnsZone): void;
  /** Packets ignored as malformed (tests of the server itself). */
  readonly ignored: number;
  close(): Promise<void>;
}

const TYPES: Record<number, string> = { 1: 'A', 5: 'CNAME', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA' };
const TYPE_CODES: Record<string, number> = { A: 1, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28 };
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const CLASS_IN = 1;
/** RFC 1035 section 4.2.1: UDP messages are at most 512 octets (EDNS is not offered). */
const UDP_MAX = 512;
/** RFC 1035 section 4.2.2: the length prefix of a TCP message is two octets. */
const TCP_MAX = 0xffff;
/** Aliases followed for one answer (a loop in a test zone ends here). */
const CNAME_MAX = 8;

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

class Malformed extends Error {}

interface Question {
  id: number;
  /** RD bit, copied into the response (RFC 1035 section 4.1.1). */
  rd: boolean;
  opcode: number;
  qdcount: number;
  /** The question section as received, echoed in the response (resolvers compare it). */
  raw?: Buffer;
  name?: string;
  /** The labels of the name as received. */
  labels?: string[];
  qtype?: number;
  qclass?: number;
  /** Why the question could not be used (FORMERR), when it could not. */
  formerr?: string;
}

/** Header and first question of a query; throws Malformed for what cannot even get a FORMERR. */
function parseQuery(msg: Buffer): Question {
  // RFC 1035 section 4.1.1: a 12-octet header.
  if (msg.length < 12) throw new Malformed('short header');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) throw new Malformed('a response, not a query');
  const q: Question = { id, rd: (flags & 0x0100) !== 0, opcode: (flags >> 11) & 0x0f, qdcount: msg.readUInt16BE(4) };
  if (q.opcode !== 0 || q.qdcount !== 1) return q;
  // RFC 1035 section 4.1.2: QNAME as a sequence of labels ending with the root label, QTYPE, QCLASS.
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    if (at >= msg.length) return { ...q, formerr: 'question runs past the message' };
    const len = msg[at]!;
    if ((len & 0xc0) === 0xc0) return { ...q, formerr: 'compression pointer in the question' };
    if (len & 0xc0) return { ...q, formerr: 'reserved label type' };
    at++;
    if (len === 0) break;
    if (at + len > msg.length) return { ...q, formerr: 'label runs past the message' };
    labels.push(msg.toString('latin1', at, at + len));
    at += len;
    // RFC 1035 section 2.3.4: names are at most 255 octets.
    if (at - 12 > 255) return { ...q, formerr: 'name longer than 255 octets' };
  }
  if (at + 4 > msg.length) return { ...q, formerr: 'question without type and class' };
  return {
    ...q,
    raw: msg.subarray(12, at + 4),
    name: normalize(labels.join('.')),
    labels,
    qtype: msg.readUInt16BE(at),
    qclass: msg.readUInt16BE(at + 2),
  };
}

/** Builds a message, compressing names against those already written (RFC 1035 section 4.1.4). */
class Writer {
  #chunks: Buffer[] = [];
  #length = 0;
  /** Lower-cased name suffix -> offset where it was written. */
  readonly #names = new Map<string, number>();

  get length(): number {
    return this.#length;
  }

  bytes(b: Buffer): void {
    this.#chunks.push(b);
    this.#length += b.length;
  }

  u16(n: number): void {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n);
    this.bytes(b);
  }

  u32(n: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    this.bytes(b);
  }

  /** Remembers where the labels of `labels` start (offsets only below 0x4000 can be pointed at). */
  remember(labels: string[], offset: number): void {
    if (labels.some((l) => l.includes('.'))) return; // a binary label: not worth pointing at
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      if (!this.#names.has(suffix) && offset < 0x4000) this.#names.set(suffix, offset);
      offset += 1 + Buffer.byteLength(labels[i]!, 'latin1');
    }
  }

  /** Writes `name` ('' is the root): its labels up to the longest suffix written before, then a pointer. */
  name(name: string): void {
    const labels = normalize(name) ? normalize(name).split('.') : [];
    const start = this.#length;
    for (let i = 0; i < labels.length; i++) {
      const pointer = this.#names.get(labels.slice(i).join('.'));
      if (pointer !== undefined) {
        this.remember(labels, start);
        this.u16(0xc000 | pointer);
        return;
      }
      const label = Buffer.from(labels[i]!, 'latin1');
      if (label.length === 0 || label.length > 63) throw new Error(`dns-server: bad label in ${JSON.stringify(name)}`);
      this.bytes(Buffer.concat([Buffer.from([label.length]), label]));
    }
    this.remember(labels, start);
    this.bytes(Buffer.from([0]));
  }

  /** A resource record (RFC 1035 section 4.1.3) whose RDATA `rdata` writes. */
  record(owner: () => void, type: number, rdata: () => void): void {
    owner();
    this.u16(type);
    this.u16(CLASS_IN);
    this.u32(0); // TTL 0: never cached
    const lengthAt = this.#chunks.length;
    this.u16(0);
    const before = this.#length;
    rdata();
    this.#chunks[lengthAt]!.writeUInt16BE(this.#length - before);
  }

  done(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
  }
}

function ipv4(address: string): Buffer {
  if (!net.isIPv4(address)) throw new Error(`dns-server: bad A record ${address}`);
  return Buffer.from(address.split('.').map(Number));
}

function ipv6(address: string): Buffer {
  if (!net.isIPv6(address)) throw new Error(`dns-server: bad AAAA record ${address}`);
  // Expand "::" and an embedded IPv4 tail into eight groups.
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipv4(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The character-strings of a TXT record (RFC 1035 section 3.3.14). */
function txtStrings(record: string | string[]): Buffer[] {
  if (Array.isArray(record)) {
    return record.map((text) => {
      const b = Buffer.from(text, 'utf8');
      if (b.length > 255) throw new Error(`dns-server: TXT character-string longer than 255 octets: ${text.slice(0, 40)}...`);
      return b;
    });
  }
  const all = Buffer.from(record, 'utf8');
  const parts: Buffer[] = [];
  for (let at = 0; at < all.length; at += 255) parts.push(all.subarray(at, at + 255));
  return parts.length > 0 ? parts : [Buffer.alloc(0)];
}

function marked(mark: boolean | DnsType[] | undefined, type: string): boolean {
  return mark === true || (Array.isArray(mark) && mark.includes(type as DnsType));
}

/** The zone's entry for a (normalized) name, and whether names exist below it. */
function lookup(zone: DnsZone, name: string): { entry?: DnsName; below: boolean } {
  const entry = Object.entries(zone).find(([n]) => normalize(n) === name)?.[1];
  const below = Object.keys(zone).some((n) => normalize(n).endsWith(`.${name}`) && !zone[n]!.nxdomain);
  return entry ? { entry, below } : { below };
}

/**
 * The response to a parsed query: rcode and answers from the zone, at most `maxSize` octets
 * (else TC and no records). No packet means the question is dropped.
 */
function respond(q: Question, zone: DnsZone, maxSize: number): { packet?: Buffer; log?: DnsQuery } {
  const w = new Writer();
  const header = (rcode: number, qdcount: number, ancount: number) => {
    w.u16(q.id);
    // QR=1, opcode as asked, AA=1, TC=0, RD copied, RA=0 (RFC 1035 section 4.1.1).
    w.u16(0x8000 | (q.opcode << 11) | 0x0400 | (q.rd ? 0x0100 : 0) | rcode);
    w.u16(qdcount);
    w.u16(ancount);
    w.u16(0);
    w.u16(0);
  };
  if (q.opcode !== 0 || q.qdcount !== 1 || q.formerr || !q.raw) {
    header(q.opcode !== 0 ? RCODE.NOTIMP : RCODE.FORMERR, 0, 0);
    return { packet: w.done() };
  }
  const name = q.name!;
  const type = TYPES[q.qtype!] ?? `TYPE${q.qtype}`;
  const log = (rcode: number | 'DROPPED', answers: number, truncated = false): DnsQuery => ({
    name,
    type,
    rcode: rcode === 'DROPPED' ? rcode : RCODES[rcode]!,
    answers,
    ...(truncated ? { truncated } : {}),
  });
  const question = () => {
    w.bytes(q.raw!);
    w.remember(q.labels!, 12);
  };
  if (q.qclass !== CLASS_IN) {
    header(RCODE.REFUSED, 1, 0);
    question();
    return { packet: w.done(), log: log(RCODE.REFUSED, 0) };
  }

  const asked = lookup(zone, name);
  if (marked(asked.entry?.drop, type)) return { log: log('DROPPED', 0) };

  // Follow aliases (RFC 1034 section 4.3.2 step 3.a): each CNAME is an answer, then the target's.
  const records: Array<{ owner: string; type: number; rdata: () => void }> = [];
  let owner = name;
  let { entry, below } = asked;
  while (entry?.cname !== undefined && type !== 'CNAME' && !entry.nxdomain && !marked(entry.servfail, type)) {
    if (records.length >= CNAME_MAX) break;
    const target = normalize(entry.cname);
    records.push({ owner, type: TYPE_CODES.CNAME!, rdata: () => w.name(target) });
    owner = target;
    ({ entry, below } = lookup(zone, target));
  }

  let rcode: number = RCODE.NOERROR;
  if (marked(entry?.servfail, type)) rcode = RCODE.SERVFAIL;
  else if (entry?.nxdomain || (!entry && !below)) rcode = RCODE.NXDOMAIN;

  if (rcode === RCODE.NOERROR && entry) {
    const add = (rdata: () => void) => records.push({ owner, type: q.qtype!, rdata });
    if (type === 'CNAME') {
      if (entry.cname !== undefined) add(() => w.name(entry.cname!));
    } else if (entry.cname !== undefined) {
      // An alias chain longer than CNAME_MAX: the answer stops at the last alias.
    } else if (type === 'MX') {
      for (const mx of entry.mx ?? []) {
        add(() => {
          w.u16(mx.preference);
          w.name(mx.exchange === '.' ? '' : mx.exchange);
        });
      }
    } else if (type === 'A') {
      for (const a of entry.a ?? []) add(() => w.bytes(ipv4(a)));
    } else if (type === 'AAAA') {
      for (const a of entry.aaaa ?? []) add(() => w.bytes(ipv6(a)));
    } else if (type === 'TXT') {
      for (const t of entry.txt ?? []) add(() => txtStrings(t).forEach((b) => w.bytes(Buffer.concat([Buffer.from([b.length]), b]))));
    } else if (type === 'PTR') {
      for (const p of entry.ptr ?? []) add(() => w.name(p));
    }
  }
  header(rcode, 1, records.length);
  question();
  // The owner of the first answer is the question's name: a pointer to it (offset 12).
  for (const r of records) w.record(() => (r.owner === name ? w.u16(0xc000 | 12) : w.name(r.owner)), r.type, r.rdata);
  const packet = w.done();
  if (packet.length <= maxSize) return { packet, log: log(rcode, records.length) };
  return { packet: respondTruncated(q, rcode), log: log(rcode, 0, true) };
}

/** The header and question only, with TC set (RFC 1035 section 4.2.1). */
function respondTruncated(q: Question, rcode: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(0x8000 | 0x0400 | 0x0200 | (q.rd ? 0x0100 : 0) | rcode, 2);
  header.writeUInt16BE(1, 4);
  return Buffer.concat([header, q.raw!]);
}

/** Binds a TCP server and a UDP socket to one ephemeral port on 127.0.0.1 (retrying if UDP's is taken). */
async function bindBoth(): Promise<{ tcp: net.Server; udp: dgram.Socket }> {
  for (let attempt = 0; ; attempt++) {
    const tcp = net.createServer();
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = dgram.createSocket('udp4');
    try {
      udp.bind(port, '127.0.0.1');
      await once(udp, 'listening');
      return { tcp, udp };
    } catch (err) {
      udp.close();
      await new Promise((resolve) => tcp.close(resolve));
      if (attempt >= 20) throw err;
    }
  }
}

/** Starts the server on 127.0.0.1 and an ephemeral port, UDP and TCP. */
export async function startDnsServer(initial: DnsZone = {}): Promise<DnsServer> {
  let zone = initial;
  const queries: DnsQuery[] = [];
  let ignored = 0;
  /** The response to one message, or undefined for none (malformed, or dropped). */
  const answer = (msg: Buffer, tcp: boolean): Buffer | undefined => {
    let result: { packet?: Buffer; log?: DnsQuery };
    try {
      result = respond(parseQuery(msg), zone, tcp ? TCP_MAX : UDP_MAX);
    } catch (err) {
      // Malformed: no answer at all (a zone with a bad record is a test bug: say so).
      if (!(err instanceof Malformed)) console.error(err);
      ignored++;
      return undefined;
    }
    if (result.log) queries.push(tcp ? { ...result.log, tcp } : result.log);
    return result.packet;
  };

  const { tcp, udp } = await bindBoth();
  udp.on('error', () => undefined);
  udp.on('message', (msg, rinfo) => {
    const packet = answer(msg, false);
    if (packet) udp.send(packet, rinfo.port, rinfo.address);
  });

  const connections = new Set<net.Socket>();
  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    socket.on('data', (data) => {
      pending = Buffer.concat([pending, data]);
      // RFC 1035 section 4.2.2: each message is prefixed with its length in two octets.
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const msg = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + msg.length);
        const packet = answer(msg, true);
        if (!packet) continue;
        const prefix = Buffer.alloc(2);
        prefix.writeUInt16BE(packet.length);
        socket.write(Buffer.concat([prefix, packet]));
      }
    });
  });

  return {
    port: udp.address().port,
    queries,
    setZone: (z) => void (zone = z),
    get ignored() {
      return ignored;
    },
    close: async () => {
      for (const socket of connections) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}
