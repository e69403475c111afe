/**
 * A raw SMTP/LMTP client for wire-level tests: it sends exactly the bytes a test gives it and
 * parses replies, so tests can pipeline, send garbage, or smuggle sequences a real client would
 * never produce.
 */
import net from 'node:net';
import tls from 'node:tls';
import { openSocket, type ConnectOptions } from './connect.js';

export interface Reply {
  code: number;
  /** Enhanced status code of the last line, if any (e.g. "5.1.1"). */
  enhanced: string | undefined;
  lines: string[];
  /** All lines joined with \n, codes stripped. */
  text: string;
}

export class SmtpClient {
  #socket: net.Socket | tls.TLSSocket;
  #buffer = '';
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly timeoutMs: number;

  private constructor(socket: net.Socket, timeoutMs: number) {
    this.#socket = socket;
    this.timeoutMs = timeoutMs;
    this.#attach(socket);
  }

  static connect(target: number | string, opts: ConnectOptions & { timeoutMs?: number } = {}): Promise<SmtpClient> {
    if (typeof target === 'number' && (opts.localAddress || opts.prelude !== undefined))
      return openSocket(target, opts).then((socket) => new SmtpClient(socket, opts.timeoutMs ?? 10_000));
    return new Promise((resolve, reject) => {
      const socket =
        typeof target === 'string'
          ? net.connect(target)
          : opts.implicitTls
            ? tls.connect({ port: target, host: opts.host ?? '127.0.0.1', rejectUnauthorized: false })
            : net.connect(target, opts.host ?? '127.0.0.1');
      socket.once('error', reject);
      socket.once(opts.implicitTls ? 'secureConnect' : 'connect', () => {
        socket.removeListener('error', reject);
        resolve(new SmtpClient(socket, opts.timeoutMs ?? 10_000));
      });
    });
  }

  #attach(socket: net.Socket | tls.TLSSocket): void {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get socket(): net.Socket | tls.TLSSocket {
    return this.#socket;
  }

  /** Writes raw bytes. */
  write(data: string | Buffer): void {
    this.#socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Reads one complete (possibly multi-line) reply. */
  async reply(): Promise<Reply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const parsed = this.#parse();
      if (parsed) return parsed;
      if (this.#closed) throw new Error(`connection closed while waiting for a reply (buffer: ${JSON.stringify(this.#buffer)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${this.timeoutMs} ms (buffer: ${JSON.stringify(this.#buffer)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  #parse(): Reply | undefined {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = this.#buffer.indexOf('\r\n', pos);
      if (nl === -1) return undefined;
      const line = this.#buffer.slice(pos, nl);
      pos = nl + 2;
      lines.push(line);
      if (!/^\d{3}-/.test(line)) break;
    }
    this.#buffer = this.#buffer.slice(pos);
    const last = lines[lines.length - 1]!;
    const code = Number(last.slice(0, 3));
    const enhanced = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(last)?.[1];
    const text = lines.map((l) => l.slice(4)).join('\n');
    return { code, enhanced, lines, text };
  }

  /** Sends a command line and reads its reply. */
  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  async greeting(): Promise<Reply> {
    return this.reply();
  }

  /** Waits until the server closes the connection (or the timeout passes). */
  async waitClosed(ms = this.timeoutMs): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.#closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#closed;
  }

  /** Bytes received but not yet parsed as a reply. */
  get pending(): string {
    return this.#buffer;
  }

  /** STARTTLS: sends the command (plus anything extra in the same packet), then upgrades. */
  async startTls(extraInSamePacket = ''): Promise<Reply> {
    this.write(`STARTTLS\r\n${extraInSamePacket}`);
    const r = await this.reply();
    if (r.code !== 220) return r;
    const plain = this.#socket as net.Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    this.#buffer = '';
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.#socket = secure;
    this.#attach(secure);
    return r;
  }

  /** A whole transaction; returns the replies to MAIL, each RCPT, DATA and the end of data. */
  async sendMail(from: string, to: string[], message: string): Promise<{ mail: Reply; rcpts: Reply[]; data?: Reply; final?: Reply[] }> {
    const mail = await this.command(`MAIL FROM:<${from}>`);
    const rcpts: Reply[] = [];
    for (const r of to) rcpts.push(await this.command(`RCPT TO:<${r}>`));
    if (!rcpts.some((r) => r.code === 250)) {
      await this.command('RSET');
      return { mail, rcpts };
    }
    const data = await this.command('DATA');
    if (data.code !== 354) return { mail, rcpts, data };
    this.write(`${dotStuff(message)}.\r\n`);
    return { mail, rcpts, data, final: [await this.reply()] };
  }

  async quit(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.command('QUIT');
    } catch {
      // closed already
    }
    this.#socket.destroy();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

/** Normalises to CRLF and applies RFC 5321 section 4.5.2 transparency; ends with CRLF. */
export function dotStuff(message: string): string {
  let m = message.replace(/\r?\n/g, '\r\n');
  if (!m.endsWith('\r\n')) m += '\r\n';
  return m.replace(/^\./gm, '..');
}

/** A small RFC 5322 message. */
export function simpleMessage(subject: string, body = 'Hello.\n', headers: Record<string, string> = {}): string {
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\n`)
    .join('');
  return `From: sender@remote.example\nTo: someone@example.test\nSubject: ${subject}\nMessage-ID: <${subject.replace(/\W/g, '')}.${Date.now()}@remote.example>\n${extra}\n${body}`;
}
