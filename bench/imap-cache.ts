/**
 * A large mailbox over IMAP, and what the metadata cache (maild-cache) buys:
 *   node --import tsx bench/imap-cache.ts [--messages 100000] [--keep DIR]
 * Writes N messages straight into a Maildir (cur/), starts the server in-process on a fresh
 * mail root, and times over implicit TLS: the first SELECT (UIDs assigned), warm SELECT + UID
 * FETCH 1:* (UID FLAGS), FETCH 1:* (ENVELOPE) cold (every file parsed, cache filled) and warm,
 * then after a restart (cache loaded from disk, no file opened), SEARCH FROM/SUBJECT cold and
 * warm, and the cache's size. Figures are wall-clock milliseconds of whole commands.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { messageFileAccess } from '../src/store/mail/mailbox.js';
import { startTestServer, type TestServer } from '../test/helpers/server.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '100000' }, keep: { type: 'string' } } });
const N = Number(values.messages);

function message(i: number): string {
  const multipart = i % 3 === 0;
  const head = [
    `Return-Path: <sender${i % 500}@remote.example>`,
    `Received: from mx${i % 7}.remote.example (mx${i % 7}.remote.example [192.0.2.${i % 250}])`,
    `\tby mx.bench.example with ESMTPS id ${i.toString(36)}; Sun, 22 Nov 2026 04:01:00 +0000`,
    `From: "Sender ${i % 500}" <sender${i % 500}@remote.example>`,
    `To: "Alice" <alice@example.test>, team${i % 13}@example.test`,
    i % 5 === 0 ? `Cc: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.org>` : '',
    `Subject: ${i % 11 === 0 ? '=?UTF-8?B?R3LDvMOfZQ==?= ' : ''}Report number ${i} about topic ${i % 97}`,
    `Date: Sun, ${1 + (i % 28)} Nov 2026 04:01:00 +0000`,
    `Message-ID: <${i}.${i % 977}@remote.example>`,
    i % 2 ? `In-Reply-To: <${i - 1}.${(i - 1) % 977}@remote.example>` : '',
    'MIME-Version: 1.0',
    multipart ? 'Content-Type: multipart/alternative; boundary="b"' : 'Content-Type: text/plain; charset=utf-8',
  ].filter(Boolean);
  const text = `Hello,\n\nthis is message ${i}.\n${'Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n'.repeat(20)}`;
  const body = multipart
    ? `--b\nContent-Type: text/plain; charset=utf-8\n\n${text}\n--b\nContent-Type: text/html; charset=utf-8\n\n<p>${text}</p>\n--b--\n`
    : text;
  return `${head.join('\n')}\n\n${body}`;
}

class Client {
  #socket!: tls.TLSSocket;
  #tag = 0;
  #chunks: Buffer[] = [];
  #waiting: { tag: string; resolve: (b: Buffer) => void } | undefined;
  #tail = '';

  static async connect(port: number): Promise<Client> {
    const c = new Client();
    await new Promise<void>((resolve, reject) => {
      c.#socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, resolve);
      c.#socket.once('error', reject);
    });
    c.#socket.on('data', (d: Buffer) => c.#onData(d));
    await new Promise((r) => setTimeout(r, 50));
    c.#chunks = [];
    return c;
  }

  #onData(d: Buffer): void {
    this.#chunks.push(d);
    if (!this.#waiting) return;
    this.#tail = (this.#tail + d.toString('latin1')).slice(-300);
    const t = this.#waiting.tag;
    const i = this.#tail.lastIndexOf(`\r\n${t} `);
    if (i !== -1 && this.#tail.indexOf('\r\n', i + 2) !== -1) {
      const w = this.#waiting;
      this.#waiting = undefined;
      const all = Buffer.concat(this.#chunks);
      this.#chunks = [];
      w.resolve(all);
    }
  }

  cmd(command: string): Promise<Buffer> {
    const tag = `B${++this.#tag}`;
    this.#tail = '\r\n';
    return new Promise((resolve) => {
      this.#waiting = { tag, resolve };
      this.#socket.write(`${tag} ${command}\r\n`);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

async function timed(label: string, fn: () => Promise<Buffer>): Promise<Buffer> {
  const t = performance.now();
  const out = await fn();
  const ms = performance.now() - t;
  const status = /\r\nB\d+ (\w+)/.exec(out.toString('latin1', Math.max(0, out.length - 200)))?.[1];
  console.log(`${label.padEnd(52)} ${ms.toFixed(0).padStart(7)} ms  ${(out.length / 1e6).toFixed(1).padStart(6)} MB  ${status}`);
  return out;
}

async function main(): Promise<void> {
  const root = values.keep ?? (await mkdtemp(path.join(os.tmpdir(), 'maild-bench-imap-')));
  const maildir = path.join(root, 'example.test/alice');
  const exists = await stat(path.join(maildir, 'cur')).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(path.join(maildir, 'cur'), { recursive: true });
    await mkdir(path.join(maildir, 'new'), { recursive: true });
    await mkdir(path.join(maildir, 'tmp'), { recursive: true });
    const t = performance.now();
    for (let i = 0; i < N; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, N - i) }, (_, k) => {
          const n = i + k;
          const data = Buffer.from(message(n));
          const lines = data.toString('latin1').split('\n').length - 1;
          return writeFile(
            path.join(maildir, 'cur', `${1700000000 + n}.M${n}P1Q1.bench,S=${data.length},W=${data.length + lines}:2,${n % 4 ? 'S' : ''}`),
            data,
          );
        }),
      );
    }
    console.log(`wrote ${N} messages in ${(performance.now() - t).toFixed(0)} ms`);
  }
  let srv: TestServer = await startTestServer({ mailRoot: root });
  const login = async () => {
    const c = await Client.connect(srv.imapsPort);
    await c.cmd('LOGIN alice@example.test alice-pw');
    return c;
  };
  let c = await login();
  await timed('first SELECT (UIDs assigned)', () => c.cmd('SELECT INBOX'));
  await c.cmd('LOGOUT');
  c.close();
  for (let run = 0; run < 3; run++) {
    c = await login();
    const t = performance.now();
    await c.cmd('SELECT INBOX');
    await c.cmd('UID FETCH 1:* (UID FLAGS)');
    console.log(`${`warm SELECT + UID FETCH 1:* (UID FLAGS) #${run + 1}`.padEnd(52)} ${(performance.now() - t).toFixed(0).padStart(7)} ms`);
    await c.cmd('LOGOUT');
    c.close();
  }
  c = await login();
  await c.cmd('SELECT INBOX');
  messageFileAccess.opens = 0;
  await timed('FETCH 1:* (ENVELOPE) cold: parse + fill cache', () => c.cmd('FETCH 1:* (ENVELOPE)'));
  console.log(`  message files opened: ${messageFileAccess.opens}`);
  await timed('FETCH 1:* (ENVELOPE) warm', () => c.cmd('FETCH 1:* (ENVELOPE)'));
  await timed('FETCH 1:* (ENVELOPE) warm', () => c.cmd('FETCH 1:* (ENVELOPE)'));
  await timed('FETCH 1:* (UID ENVELOPE BODYSTRUCTURE) warm', () => c.cmd('FETCH 1:* (UID ENVELOPE BODYSTRUCTURE)'));
  await timed('SEARCH FROM sender42 warm', () => c.cmd('SEARCH FROM sender42'));
  await timed('SEARCH SUBJECT "topic 13" warm', () => c.cmd('SEARCH SUBJECT "topic 13"'));
  const cacheSize = (await stat(path.join(maildir, 'maild-cache'))).size;
  console.log(`maild-cache: ${(cacheSize / 1e6).toFixed(1)} MB (${(cacheSize / N).toFixed(0)} bytes/message)`);
  const mem = process.memoryUsage();
  console.log(
    `process: rss ${(mem.rss / 1e6).toFixed(0)} MB, heap ${(mem.heapUsed / 1e6).toFixed(0)} MB, external+buffers ${((mem.external + mem.arrayBuffers) / 1e6).toFixed(0)} MB`,
  );
  c.close();

  await srv.stop();
  srv = await startTestServer({ mailRoot: root });
  c = await login();
  await c.cmd('SELECT INBOX');
  messageFileAccess.opens = 0;
  await timed('after restart: FETCH 1:* (ENVELOPE) (cache loaded)', () => c.cmd('FETCH 1:* (ENVELOPE)'));
  await timed('after restart: FETCH 1:* (ENVELOPE) again', () => c.cmd('FETCH 1:* (ENVELOPE)'));
  await timed('after restart: SEARCH FROM sender42', () => c.cmd('SEARCH FROM sender42'));
  await timed('after restart: SEARCH HEADER X-Other x (headers only)', () => c.cmd('SEARCH HEADER X-Other x'));
  console.log(`  message files opened after the restart: ${messageFileAccess.opens}`);
  c.close();
  await srv.stop();

  // Without a cache: SEARCH parses every file.
  await rm(path.join(maildir, 'maild-cache'));
  srv = await startTestServer({ mailRoot: root });
  c = await login();
  await c.cmd('SELECT INBOX');
  await timed('no cache: SEARCH FROM sender42 (parse + fill cache)', () => c.cmd('SEARCH FROM sender42'));
  await timed('then: SEARCH FROM sender42', () => c.cmd('SEARCH FROM sender42'));
  c.close();
  await srv.stop();
  if (!values.keep) await rm(root, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
