/**
 * A raw client of Dovecot's authentication protocol for wire tests: it sends the lines a test
 * gives it and reads the server's lines one at a time, as Postfix's smtpd would.
 */
import net from 'node:net';

export class DovecotAuthTestClient {
  readonly #socket: net.Socket;
  #buffer = '';
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      this.#wake();
    });
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.#closed = true;
        this.#wake();
        resolve();
      }),
    );
    socket.on('error', () => undefined);
  }

  /** Connects to a TCP port on 127.0.0.1 or a unix socket path. */
  static connect(target: number | string): Promise<DovecotAuthTestClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof target === 'number' ? net.connect(target, '127.0.0.1') : net.connect(target);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new DovecotAuthTestClient(socket));
      });
    });
  }

  /** Connects, sends VERSION and CPID as Postfix does, and returns the server's handshake lines up to DONE. */
  static async open(target: number | string): Promise<{ client: DovecotAuthTestClient; handshake: string[] }> {
    const client = await DovecotAuthTestClient.connect(target);
    client.send('VERSION\t1\t0');
    client.send(`CPID\t${process.pid}`);
    const handshake: string[] = [];
    for (;;) {
      const l = await client.line();
      if (l === null) throw new Error(`connection closed during the handshake after ${JSON.stringify(handshake)}`);
      handshake.push(l);
      if (l === 'DONE') return { client, handshake };
    }
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(line: string): void {
    this.#socket.write(`${line}\n`);
  }

  write(raw: string | Buffer): void {
    this.#socket.write(raw);
  }

  /** The next line without its LF; null once the server has closed the connection. */
  async line(timeoutMs = 15_000): Promise<string | null> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const nl = this.#buffer.indexOf('\n');
      if (nl !== -1) {
        const l = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        return l;
      }
      if (this.#closed) return null;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no line from the server within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a request line and returns the reply line (OK, FAIL or CONT), split at TABs. */
  async request(line: string): Promise<string[]> {
    this.send(line);
    const reply = await this.line();
    if (reply === null) throw new Error(`connection closed after ${JSON.stringify(line)}`);
    return reply.split('\t');
  }

  /** Resolves true when the server closes the connection (it should, after a protocol violation). */
  async closedByServer(timeoutMs = 15_000): Promise<boolean> {
    while ((await this.line(timeoutMs)) !== null);
    return true;
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** SASL PLAIN's message (RFC 4616), base64. */
export const plainResponse = (user: string, password: string, authzid = '') =>
  Buffer.from(`${authzid}\u0000${user}\u0000${password}`).toString('base64');

export const b64 = (text: string) => Buffer.from(text).toString('base64');
