/**
 * Starts the real server in-process on ephemeral ports with a temporary data directory and mail
 * root, configured through the same YAML parser the daemon uses.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Logger } from '../../src/log.js';
import type { ScriptValidator } from '../../src/managesieve/validate.js';
import { startServer, type Runtime } from '../../src/server.js';

export interface TestServer {
  runtime: Runtime;
  dir: string;
  mailRoot: string;
  smtpPort: number;
  lmtpPort: number;
  lmtpSocket: string;
  imapPort: number;
  imapsPort: number;
  pop3Port: number;
  pop3sPort: number;
  /** ManageSieve with STARTTLS (4190). */
  managesievePort: number;
  /** Submission with STARTTLS (587) and with implicit TLS (465). */
  submissionPort: number;
  submissionsPort: number;
  logs: Array<Record<string, unknown>>;
  logger: Logger;
  /** Messages (file names) in new/ and cur/ of a mailbox, e.g. 'example.test/alice'. */
  messages(mailbox: string): Promise<string[]>;
  /** Contents of every message in a mailbox. */
  read(mailbox: string): Promise<string[]>;
  /** Files in a mailbox's tmp/. */
  tmpFiles(mailbox: string): Promise<string[]>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  /** The directory file's YAML (the file backend). */
  directory?: string;
  /** Settings merged over the defaults below (top-level keys replace). */
  config?: Record<string, unknown>;
  /** Use this mail root instead of a fresh temporary one. */
  mailRoot?: string;
  /** The queue's clock (tests move it to reach retry times and expiry). */
  now?: () => number;
  /** ManageSieve's script check (the server's stand-in when absent). */
  sieveValidator?: ScriptValidator;
}

export const DEMO_DIRECTORY = `
domains:
  - example.test
  - example.org
  - name: alias.example
    alias_for: example.test
users:
  alice@example.test: { password: "{PLAIN}alice-pw" }
  bob@example.test: { password: "{PLAIN}bob-pw" }
  carol@example.test: { password: "{PLAIN}carol-pw" }
  small@example.test: { password: "{PLAIN}x", quota: 2000 }
  disabled@example.test: { password: "{PLAIN}x", enabled: false }
  erin@example.org: { password: "{PLAIN}x" }
aliases:
  all@example.test: [alice@example.test, bob@example.test, team@example.test]
  team@example.test: [alice@example.test, carol@example.test]
  loop1@example.test: loop2@example.test
  loop2@example.test: loop1@example.test
  forward@example.test: someone@remote.example
  "@example.org": erin@example.org
`;

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-test-'));
  const mailRoot = opts.mailRoot ?? path.join(dir, 'mail');
  const directoryFile = path.join(dir, 'directory.yaml');
  await writeFile(directoryFile, opts.directory ?? DEMO_DIRECTORY);
  const lmtpSocket = path.join(dir, 'lmtp.sock');
  const config = {
    hostname: 'mx.test.example',
    data_dir: path.join(dir, 'data'),
    mail: { root: mailRoot, layout: '%d/%n' },
    listeners: [
      { name: 'mx', protocol: 'smtp', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { name: 'lmtp', protocol: 'lmtp', address: '127.0.0.1', port: 0 },
      { name: 'lmtp-socket', protocol: 'lmtp', path: lmtpSocket },
      { name: 'imap', protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { name: 'imaps', protocol: 'imap', address: '127.0.0.1', port: 0, tls: 'implicit' },
      { name: 'pop3', protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { name: 'pop3s', protocol: 'pop3', address: '127.0.0.1', port: 0, tls: 'implicit' },
      { name: 'managesieve', protocol: 'managesieve', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { name: 'submission', protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls' },
      { name: 'submissions', protocol: 'submission', address: '127.0.0.1', port: 0, tls: 'implicit' },
    ],
    directory: { backend: 'file', file: { path: directoryFile }, cache: { positive_ttl: 0, negative_ttl: 0 } },
    limits: { message_size: '1M', idle_timeout: '30s' },
    shutdown_timeout: '2s',
    // Sender authentication asks DNS; the tests of it (inbound-*.test.ts) turn it on with their own DNS server.
    inbound: { authentication: { enabled: false } },
    ...opts.config,
    // The tests speak "/" as the hierarchy separator unless they ask for another (the default is ".").
    imap: { hierarchy_separator: '/', ...(opts.config?.imap as Record<string, unknown> | undefined) },
  };
  const configPath = path.join(dir, 'maild.yaml');
  const text = stringify(config);
  await writeFile(configPath, text);
  const loaded = parseConfig(text, configPath, {});
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s)) });
  let runtime: Runtime;
  try {
    runtime = await startServer(loaded, logger, {
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.sieveValidator ? { sieveValidator: opts.sieveValidator } : {}),
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const has = (name: string) => runtime.listeners.some((l) => l.spec.name === name);

  const maildir = (mailbox: string) => path.join(mailRoot, mailbox);
  const list = async (mailbox: string, sub: string) => (await readdir(path.join(maildir(mailbox), sub)).catch(() => [] as string[])).sort();
  const messages = async (mailbox: string) => [
    ...(await list(mailbox, 'new')).map((f) => `new/${f}`),
    ...(await list(mailbox, 'cur')).map((f) => `cur/${f}`),
  ];

  return {
    runtime,
    dir,
    mailRoot,
    smtpPort: has('mx') ? runtime.portOf('mx') : 0,
    lmtpPort: has('lmtp') ? runtime.portOf('lmtp') : 0,
    lmtpSocket,
    imapPort: has('imap') ? runtime.portOf('imap') : 0,
    imapsPort: has('imaps') ? runtime.portOf('imaps') : 0,
    pop3Port: has('pop3') ? runtime.portOf('pop3') : 0,
    pop3sPort: has('pop3s') ? runtime.portOf('pop3s') : 0,
    managesievePort: has('managesieve') ? runtime.portOf('managesieve') : 0,
    submissionPort: has('submission') ? runtime.portOf('submission') : 0,
    submissionsPort: has('submissions') ? runtime.portOf('submissions') : 0,
    logs,
    logger,
    messages,
    async read(mailbox) {
      return Promise.all((await messages(mailbox)).map((f) => readFile(path.join(maildir(mailbox), f), 'latin1')));
    },
    tmpFiles: (mailbox) => list(mailbox, 'tmp'),
    async stop() {
      await runtime.shutdown();
      if (!opts.mailRoot) await rm(dir, { recursive: true, force: true });
      else await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until `cond` holds, polling. */
export async function waitFor(cond: () => Promise<boolean> | boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
