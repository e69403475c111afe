/**
 * A raw ManageSieve client for the tests (RFC 5804): sends bytes as given, reads a response up
 * to its OK/NO/BYE line (server literals {N} read whole), upgrades with STARTTLS.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface SieveResponse {
  /** The lines before the status line (a literal's octets kept inside their line). */
  lines: string[];
  status: 'OK' | 'NO' | 'BYE';
  code: string | undefined;
  text: string | undefined;
  /** Everything read, as sent. */
  raw: string;
}

const STATUS = /^(OK|NO|BYE)(?: \(([^)]*(?:"[^"]*")?[^)]*)\))?(?: (?:"((?:[^"\\]|\\.)*)"|\{(\d+)\}))?$/;

export class ManageSieveClient {
  socket: net.Socket | tls.TLSSocket;
  #buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.#listen(socket);
  }

  static async connect(port: number): Promise<ManageSieveClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new ManageSieveClient(socket);
  }

  #listen(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  async #more(): Promise<void> {
    if (this.closed) throw new Error(`connection closed; unread: ${this.#buffer.toString('latin1')}`);
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  async #line(): Promise<string> {
    for (;;) {
      const lf = this.#buffer.indexOf('\r\n');
      if (lf !== -1) {
        const line = this.#buffer.subarray(0, lf).toString('utf8');
        this.#buffer = this.#buffer.subarray(lf + 2);
        return line;
      }
      await this.#more();
    }
  }

  async #bytes(n: number): Promise<string> {
    while (this.#buffer.length < n) await this.#more();
    const out = this.#buffer.subarray(0, n).toString('utf8');
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** One response: the lines up to and including OK/NO/BYE. */
  async response(): Promise<SieveResponse> {
    const lines: string[] = [];
    let raw = '';
    for (;;) {
      let line = await this.#line();
      raw += `${line}\r\n`;
      const literal = /\{(\d+)\}$/.exec(line);
      if (literal) {
        const data = await this.#bytes(Number(literal[1]));
        raw += data;
        line += `\r\n${data}`;
        // The rest of the line after the literal.
        const rest = await this.#line();
        raw += `${rest}\r\n`;
        line += rest;
      }
      const m = /^(OK|NO|BYE)\b/.exec(line) ? parseStatus(line) : undefined;
      if (m) return { lines, raw, ...m };
      lines.push(line);
    }
  }

  /** Sends a command (CRLF added) and reads its response. */
  async command(text: string | Buffer): Promise<SieveResponse> {
    this.send(typeof text === 'string' ? `${text}\r\n` : text);
    return this.response();
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The greeting or a capability response as a map (name -> value). */
  static capabilities(r: SieveResponse): Map<string, string> {
    const out = new Map<string, string>();
    for (const line of r.lines) {
      const m = /^"([^"]+)"(?: "([^"]*)")?$/.exec(line);
      if (m) out.set(m[1]!.toUpperCase(), m[2] ?? '');
    }
    return out;
  }

  /** STARTTLS and the handshake; returns the capabilities sent after it. */
  async startTls(): Promise<SieveResponse> {
    const r = await this.command('STARTTLS');
    if (r.status !== 'OK') throw new Error(`STARTTLS refused: ${r.raw}`);
    return this.upgrade();
  }

  /** The TLS handshake after STARTTLS's OK; returns the capabilities sent after it. */
  async upgrade(): Promise<SieveResponse> {
    const plain = this.socket as net.Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.socket = secure;
    this.#buffer = Buffer.alloc(0);
    this.#listen(secure);
    return this.response();
  }

  /** AUTHENTICATE PLAIN with an initial response. */
  async login(user: string, password: string): Promise<SieveResponse> {
    return this.command(`AUTHENTICATE "PLAIN" "${Buffer.from(`\0${user}\0${password}`).toString('base64')}"`);
  }

  close(): void {
    this.socket.destroy();
  }

  /** Waits for the server to close the connection. */
  async closedByServer(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
}

function parseStatus(line: string): Omit<SieveResponse, 'lines' | 'raw'> {
  const m = STATUS.exec(line.split('\r\n')[0]!);
  const status = /^(OK|NO|BYE)/.exec(line)![1] as 'OK' | 'NO' | 'BYE';
  if (!m) return { status, code: undefined, text: line.slice(status.length + 1) };
  const literal = m[4] !== undefined ? line.slice(line.indexOf('\r\n') + 2) : undefined;
  return { status, code: m[2], text: literal ?? m[3]?.replace(/\\(.)/g, '$1') };
}

/** Connects, reads the greeting, upgrades to TLS and logs in. */
export async function manageSieveLoggedIn(port: number, user: string, password: string): Promise<ManageSieveClient> {
  const c = await ManageSieveClient.connect(port);
  await c.response();
  await c.startTls();
  const r = await c.login(user, password);
  if (r.status !== 'OK') throw new Error(`login failed: ${r.raw}`);
  return c;
}

/** Splits a whole conversation's output (greeting excluded) into responses, literals read whole. */
export function parseResponses(text: string): SieveResponse[] {
  const out: SieveResponse[] = [];
  let pos = 0;
  let lines: string[] = [];
  let raw = '';
  const nextLine = () => {
    const end = text.indexOf('\r\n', pos);
    if (end === -1) throw new Error(`unterminated response: ${text.slice(pos)}`);
    const line = text.slice(pos, end);
    pos = end + 2;
    return line;
  };
  while (pos < text.length) {
    let line = nextLine();
    raw += `${line}\r\n`;
    const literal = /\{(\d+)\}$/.exec(line);
    if (literal) {
      // Octets, not characters: the test scripts are ASCII.
      const data = text.slice(pos, pos + Number(literal[1]));
      pos += data.length;
      const rest = nextLine();
      raw += `${data}${rest}\r\n`;
      line += `\r\n${data}${rest}`;
    }
    if (/^(OK|NO|BYE)\b/.test(line)) {
      out.push({ lines, raw, ...parseStatus(line) });
      lines = [];
      raw = '';
    } else {
      lines.push(line);
    }
  }
  return out;
}
