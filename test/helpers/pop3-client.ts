/**
 * A raw POP3 client for wire-level tests: it sends exactly the bytes a test gives it and reads
 * status lines and multi-line responses, keeping the bytes as they came (dot-stuffing and CRLF
 * included) so tests can check them.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface Pop3Reply {
  ok: boolean;
  /** The status line without "+OK " / "-ERR ". */
  text: string;
  /** The response code in brackets right after the status (RFC 2449 section 8), if any. */
  code: string | undefined;
  line: string;
}

export interface Pop3Multi extends Pop3Reply {
  /** The lines of the body, un-stuffed, without the final ".". */
  lines: string[];
  /** The body's bytes exactly as received (stuffed), without the status line and the final ".\r\n". */
  raw: Buffer;
}

export class Pop3TestClient {
  #socket: net.Socket | tls.TLSSocket;
  #buffer: Buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly timeoutMs: number;

  private constructor(socket: net.Socket | tls.TLSSocket, timeoutMs: number) {
    this.#socket = socket;
    this.timeoutMs = timeoutMs;
    this.#attach(socket);
  }

  static connect(port: number, opts: { implicitTls?: boolean; timeoutMs?: number } = {}): Promise<Pop3TestClient> {
    return new Promise((resolve, reject) => {
      const socket = opts.implicitTls
        ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
        : net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once(opts.implicitTls ? 'secureConnect' : 'connect', () => {
        socket.removeListener('error', reject);
        resolve(new Pop3TestClient(socket, opts.timeoutMs ?? 10_000));
      });
    });
  }

  #attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, d]) : d;
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #more(deadline: number): Promise<void> {
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(`no response within ${this.timeoutMs} ms; buffer: ${JSON.stringify(this.#buffer.toString('latin1').slice(0, 300))}`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, left);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get socket(): net.Socket | tls.TLSSocket {
    return this.#socket;
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** One line (without CRLF); null when the connection closed first. */
  async line(): Promise<string | null> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const nl = this.#buffer.indexOf('\r\n');
      if (nl !== -1) {
        const text = this.#buffer.subarray(0, nl).toString('latin1');
        this.#buffer = this.#buffer.subarray(nl + 2);
        return text;
      }
      if (this.#closed) return null;
      await this.#more(deadline);
    }
  }

  /** A status line. */
  async reply(): Promise<Pop3Reply> {
    const line = await this.line();
    if (line === null) throw new Error('connection closed before a reply');
    return parseStatus(line);
  }

  /** A status line and, if +OK, the multi-line body up to ".". */
  async multiReply(): Promise<Pop3Multi> {
    const status = await this.reply();
    if (!status.ok) return { ...status, lines: [], raw: Buffer.alloc(0) };
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const end = this.#buffer[0] === 0x2e && this.#buffer[1] === 0x0d && this.#buffer[2] === 0x0a ? 0 : this.#buffer.indexOf('\r\n.\r\n');
      if (end !== -1) {
        const raw = end === 0 ? Buffer.alloc(0) : this.#buffer.subarray(0, end + 2);
        this.#buffer = this.#buffer.subarray(end === 0 ? 3 : end + 5);
        const text = raw.toString('latin1');
        const lines =
          text === ''
            ? []
            : text
                .slice(0, -2)
                .split('\r\n')
                .map((l) => (l.startsWith('.') ? l.slice(1) : l));
        return { ...status, lines, raw: Buffer.from(raw) };
      }
      if (this.#closed) throw new Error(`connection closed inside a multi-line response (${this.#buffer.length} bytes)`);
      await this.#more(deadline);
    }
  }

  async cmd(line: string): Promise<Pop3Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  async multi(line: string): Promise<Pop3Multi> {
    this.write(`${line}\r\n`);
    return this.multiReply();
  }

  async greeting(): Promise<Pop3Reply> {
    return this.reply();
  }

  /** USER + PASS; returns PASS's reply (or USER's, if that failed). */
  async login(user: string, pass: string): Promise<Pop3Reply> {
    const u = await this.cmd(`USER ${user}`);
    if (!u.ok) return u;
    return this.cmd(`PASS ${pass}`);
  }

  /** STLS, then the handshake; `extra` is sent in cleartext right after the command. */
  async stls(extra = ''): Promise<Pop3Reply> {
    this.write(`STLS\r\n${extra}`);
    const r = await this.reply();
    if (!r.ok) return r;
    const plain = this.#socket as net.Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    this.#buffer = Buffer.alloc(0);
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.#socket = secure;
    this.#attach(secure);
    return r;
  }

  async waitClosed(ms = this.timeoutMs): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.#closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.#closed;
  }

  /** Bytes received and not read yet. */
  get pending(): Buffer {
    return this.#buffer;
  }

  async quit(): Promise<Pop3Reply | undefined> {
    if (this.#closed) return undefined;
    const r = await this.cmd('QUIT').catch(() => undefined);
    this.#socket.destroy();
    return r;
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

export function parseStatus(line: string): Pop3Reply {
  const ok = line.startsWith('+OK');
  if (!ok && !line.startsWith('-ERR')) throw new Error(`not a POP3 status line: ${JSON.stringify(line)}`);
  const text = line.slice(ok ? 4 : 5);
  const code = /^\[([^\]]*)\]/.exec(text)?.[1];
  return { ok, text, code, line };
}

/** A session on the implicit-TLS port, logged in. */
export async function pop3LoggedIn(port: number, user = 'alice@example.test', pass = 'alice-pw'): Promise<Pop3TestClient> {
  const c = await Pop3TestClient.connect(port, { implicitTls: true });
  await c.greeting();
  const r = await c.login(user, pass);
  if (!r.ok) throw new Error(`POP3 login of ${user} failed: ${r.line}`);
  return c;
}
