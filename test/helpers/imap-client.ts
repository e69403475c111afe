/**
 * A raw IMAP client for wire-level tests: sends exactly what a test writes and collects the
 * untagged responses of each command, literals included.
 */
import net from 'node:net';
import tls from 'node:tls';
import { openSocket, type ConnectOptions } from './connect.js';

export interface ImapResult {
  tag: string;
  status: 'OK' | 'NO' | 'BAD';
  /** The tagged line after the status, e.g. "[READ-WRITE] SELECT completed". */
  text: string;
  /** Response code inside [...] of the tagged line, if any. */
  code: string | undefined;
  /** Untagged lines (without "* "), literals inlined as {n}\r\n<data>. */
  untagged: string[];
  /** Continuation requests seen. */
  continuations: string[];
}

export class ImapTestClient {
  #socket: net.Socket | tls.TLSSocket;
  #buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  #closed = false;
  #tag = 0;
  readonly timeoutMs: number;

  private constructor(socket: net.Socket | tls.TLSSocket, timeoutMs: number) {
    this.#socket = socket;
    this.timeoutMs = timeoutMs;
    this.#attach(socket);
  }

  static connect(port: number, opts: ConnectOptions & { timeoutMs?: number } = {}): Promise<ImapTestClient> {
    if (opts.host || opts.localAddress || opts.prelude !== undefined)
      return openSocket(port, opts).then((socket) => new ImapTestClient(socket, opts.timeoutMs ?? 10_000));
    return new Promise((resolve, reject) => {
      const socket = opts.implicitTls
        ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
        : net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once(opts.implicitTls ? 'secureConnect' : 'connect', () => {
        socket.removeListener('error', reject);
        resolve(new ImapTestClient(socket, opts.timeoutMs ?? 10_000));
      });
    });
  }

  #attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
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

  get closed(): boolean {
    return this.#closed;
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** Reads one response line (with any literals it announces); null when closed. */
  async line(): Promise<string | null> {
    const deadline = Date.now() + this.timeoutMs;
    let out = '';
    for (;;) {
      const nl = this.#buffer.indexOf('\r\n');
      if (nl !== -1) {
        const text = this.#buffer.subarray(0, nl).toString('utf8');
        const literal = /\{(\d+)\}$/.exec(text);
        if (literal) {
          const size = Number(literal[1]);
          if (this.#buffer.length >= nl + 2 + size) {
            out += `${text}\r\n${this.#buffer.subarray(nl + 2, nl + 2 + size).toString('latin1')}`;
            this.#buffer = this.#buffer.subarray(nl + 2 + size);
            continue;
          }
        } else {
          this.#buffer = this.#buffer.subarray(nl + 2);
          return out + text;
        }
      }
      if (this.#closed) return out || null;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no response within ${this.timeoutMs} ms; buffer: ${JSON.stringify(this.#buffer.toString('latin1').slice(0, 500))}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Collects lines until the tagged response of `tag`. */
  async result(tag: string): Promise<ImapResult> {
    const untagged: string[] = [];
    const continuations: string[] = [];
    for (;;) {
      const line = await this.line();
      if (line === null) throw new Error(`connection closed before the tagged response of ${tag}; got ${JSON.stringify(untagged)}`);
      if (line.startsWith('* ')) untagged.push(line.slice(2));
      else if (line.startsWith('+')) continuations.push(line.slice(2));
      else if (line.startsWith(`${tag} `)) {
        const rest = line.slice(tag.length + 1);
        const status = rest.split(' ')[0] as ImapResult['status'];
        const text = rest.slice(status.length + 1);
        const code = /^\[([^\]]*)\]/.exec(text)?.[1];
        return { tag, status, text, code, untagged, continuations };
      } else untagged.push(line);
    }
  }

  nextTag(): string {
    return `A${++this.#tag}`;
  }

  /** Sends `TAG command` and returns the result. */
  async cmd(command: string): Promise<ImapResult> {
    const tag = this.nextTag();
    this.write(`${tag} ${command}\r\n`);
    return this.result(tag);
  }

  async greeting(): Promise<string> {
    const l = await this.line();
    if (l === null) throw new Error('closed before the greeting');
    return l;
  }

  async login(user: string, pass: string): Promise<ImapResult> {
    return this.cmd(`LOGIN "${user}" "${pass}"`);
  }

  /** STARTTLS, then the handshake; `extra` is sent in cleartext right after the command. */
  async startTls(extra = ''): Promise<ImapResult> {
    const tag = this.nextTag();
    this.write(`${tag} STARTTLS\r\n${extra}`);
    const r = await this.result(tag);
    if (r.status !== 'OK') return r;
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

  destroy(): void {
    this.#socket.destroy();
  }

  async logout(): Promise<void> {
    if (this.#closed) return;
    await this.cmd('LOGOUT').catch(() => undefined);
    this.#socket.destroy();
  }
}

/** A session on the implicit-TLS port, logged in. */
export async function loggedIn(srv: { imapsPort: number }, user = 'alice@example.test', pass = 'alice-pw'): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(srv.imapsPort, { implicitTls: true });
  await c.greeting();
  const r = await c.login(user, pass);
  if (r.status !== 'OK') throw new Error(`login of ${user} failed: ${r.text}`);
  return c;
}
