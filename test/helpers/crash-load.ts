/**
 * Load for the kill -9 tests: messages that carry a digest of their own body (so a truncated or
 * corrupted copy is recognised wherever it ends up), and a client that sends them back to back
 * and records which ones got their 250.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SmtpClient, dotStuff } from './smtp-client.js';

/** A message "<tag> <id>" with a random body of 1 KB up to about `maxBytes`. */
export function digestMessage(tag: string, id: string, maxBytes = 300_000): string {
  const size = 1024 + Math.floor(Math.random() * maxBytes);
  const body = randomBytes(Math.ceil(size * 0.75))
    .toString('base64')
    .replace(/(.{76})/g, '$1\n');
  const digest = createHash('sha256').update(body).digest('hex');
  return `Subject: ${tag} ${id}\nX-Digest: ${digest}\n\n${body}\nEND ${id}\n`;
}

/** The id of a stored or received copy (LF or CRLF line ends), and whether it is complete and intact. */
export function verifyDigestMessage(tag: string, raw: string): { id: string; intact: boolean } | undefined {
  const text = raw.replace(/\r\n/g, '\n');
  const id = new RegExp(`^Subject: ${tag} (\\S+)$`, 'm').exec(text)?.[1];
  if (!id) return undefined;
  const digest = /^X-Digest: ([0-9a-f]+)$/m.exec(text)?.[1];
  const start = text.indexOf('\n\n') + 2;
  const end = text.lastIndexOf(`\nEND ${id}\n`);
  if (!digest || end < start) return { id, intact: false };
  const body = text.slice(start, end);
  return { id, intact: createHash('sha256').update(body).digest('hex') === digest && text.endsWith(`END ${id}\n`) };
}

/**
 * One client sending messages until `stop.now` or the server dies; the ids that got a 250 are
 * added to `acknowledged`.
 */
export async function loadSender(opts: {
  port: number;
  prefix: string;
  stop: { now: boolean };
  acknowledged: Set<string>;
  sender: string;
  recipient: (n: number) => string;
  message: (id: string) => string;
}): Promise<void> {
  let c: SmtpClient;
  try {
    c = await SmtpClient.connect(opts.port, { timeoutMs: 5000 });
    await c.greeting();
    await c.command('EHLO loadgen.example');
  } catch {
    return;
  }
  for (let n = 0; !opts.stop.now; n++) {
    const id = `${opts.prefix}-${n}`;
    try {
      c.write(`MAIL FROM:<${opts.sender}>\r\nRCPT TO:<${opts.recipient(n)}>\r\nDATA\r\n`);
      const replies = [await c.reply(), await c.reply(), await c.reply()];
      if (replies[2]!.code !== 354) return;
      c.write(`${dotStuff(opts.message(id))}.\r\n`);
      const final = await c.reply();
      if (final.code === 250) opts.acknowledged.add(id);
    } catch {
      return; // the server died
    }
  }
  await c.quit().catch(() => undefined);
}

/**
 * Twelve senders load the daemon until `killAfterAcks` more messages were acknowledged; then it
 * is killed with SIGKILL in the middle of their transactions. Returns the acknowledged count
 * before this round.
 */
export async function killUnderLoad(opts: {
  daemon: { kill(signal?: NodeJS.Signals): void; exited: Promise<{ signal: NodeJS.Signals | null }> };
  acknowledged: Set<string>;
  killAfterAcks: number;
  sender: (prefix: string, stop: { now: boolean }) => Promise<void>;
  round: number;
}): Promise<number> {
  const stop = { now: false };
  const before = opts.acknowledged.size;
  const senders = Array.from({ length: 12 }, (_, i) => opts.sender(`r${opts.round}s${i}`, stop));
  const deadline = Date.now() + 60_000;
  while (opts.acknowledged.size < before + opts.killAfterAcks && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  opts.daemon.kill('SIGKILL');
  const { signal } = await opts.daemon.exited;
  stop.now = true;
  await Promise.all(senders);
  if (signal !== 'SIGKILL') throw new Error(`the daemon ended with ${signal}, not by the kill`);
  if (opts.acknowledged.size < before + opts.killAfterAcks) {
    throw new Error(
      `${opts.killAfterAcks} messages should have been acknowledged before the kill (got ${opts.acknowledged.size - before})`,
    );
  }
  return before;
}
