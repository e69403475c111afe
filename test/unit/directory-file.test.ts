import assert from 'node:assert/strict';
import { chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseDocument } from 'yaml';
import { Directory } from '../../src/directory/directory.js';
import { PasswordService } from '../../src/directory/passwords/index.js';
import type { DirectorySource } from '../../src/directory/types.js';
import { FileDirectory } from '../../src/directory/file-backend.js';
import { isMailError } from '../../src/errors.js';
import { pino } from 'pino';
import { silentLogger } from '../../src/log.js';
import { runDirectoryContract, type Backend } from '../helpers/directory-contract.js';

const dirs = new Map<Backend, string>();

runDirectoryContract('file', {
  async create() {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    const backend = await FileDirectory.open(path.join(dir, 'directory.yaml'), { logger: silentLogger, createIfMissing: true });
    dirs.set(backend, dir);
    return backend;
  },
  async destroy(backend) {
    await backend.close();
    await rm(dirs.get(backend)!, { recursive: true, force: true });
  },
  async setTransports(backend, entries) {
    // As an operator would: edit the file (keeping the rest), then the daemon reloads it.
    const file = (backend as FileDirectory).path;
    const doc = parseDocument(await readFile(file, 'utf8'));
    doc.set('transports', doc.createNode(entries));
    await writeFile(file, doc.toString());
    await (backend as FileDirectory).reload();
  },
});

/** A logger that records what it was told, to assert on the operator's view. */
function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('file directory', () => {
  const seed = `# our domains
domains:
  - example.com
users:
  alice@example.com:
    password: "{PLAIN}x"   # demo only
aliases: {}
`;

  it('reloads a changed file and keeps the last good version when an edit is broken', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    const file = path.join(dir, 'directory.yaml');
    await writeFile(file, seed);
    const { logger, lines } = recordingLogger();
    const backend = await FileDirectory.open(file, { logger, watch: true });
    let changes = 0;
    backend.onChange(() => changes++);
    try {
      assert.ok(await backend.lookupUser('alice@example.com'));
      await writeFile(file, seed.replace('alice@', 'bob@'));
      await waitFor(async () => (await backend.lookupUser('bob@example.com')) !== null);
      assert.equal(await backend.lookupUser('alice@example.com'), null);
      assert.ok(changes >= 1);

      // A broken edit: a user in a domain that is not hosted, then plain YAML garbage.
      await writeFile(file, seed.replace('bob@', 'carol@').replace('alice@example.com', 'carol@nothosted.example'));
      await waitFor(() => lines.some((l) => String(l.msg).includes('keeping the last good version')));
      assert.ok(await backend.lookupUser('bob@example.com'), 'last good version still in force');
      assert.match(String(lines.find((l) => String(l.msg).includes('keeping'))?.err), /nothosted\.example is not in domains/);
      await writeFile(file, 'domains: [unclosed\n');
      await waitFor(() => lines.filter((l) => String(l.msg).includes('keeping the last good version')).length >= 2);
      assert.ok(await backend.lookupUser('bob@example.com'));
    } finally {
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start from a broken or missing file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    try {
      const file = path.join(dir, 'directory.yaml');
      await assert.rejects(FileDirectory.open(file, { logger: silentLogger }), (e) => isMailError(e, 'CONFIG_INVALID'));
      await writeFile(file, 'users:\n  bob@example.com: {password: x}\n');
      await assert.rejects(FileDirectory.open(file, { logger: silentLogger }), /example\.com is not in domains/);
      await writeFile(file, 'domains: [a.example]\nbogus: 1\n');
      await assert.rejects(FileDirectory.open(file, { logger: silentLogger }), /bogus: unknown key/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('seeds the file from its initial version', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    try {
      const initial = path.join(dir, 'seed.yaml');
      await writeFile(initial, seed);
      const file = path.join(dir, 'data', 'directory.yaml');
      const backend = await FileDirectory.open(file, { logger: silentLogger, initial });
      assert.ok(await backend.lookupUser('alice@example.com'));
      assert.equal(await readFile(file, 'utf8'), seed);
      await backend.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps comments and the other entries when the CLI edits the file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    try {
      const file = path.join(dir, 'directory.yaml');
      await writeFile(file, seed);
      const backend = await FileDirectory.open(file, { logger: silentLogger });
      await backend.addUser({ email: 'Bob@Example.com', password: '{PLAIN}y', quotaBytes: 1024, enabled: true });
      await backend.addAlias('all@example.com', 'alice@example.com');
      await backend.addAlias('all@example.com', 'bob@example.com');
      const text = await readFile(file, 'utf8');
      assert.match(text, /# our domains/);
      assert.match(text, /# demo only/);
      assert.match(text, /bob@example\.com:/);
      const reread = await FileDirectory.open(file, { logger: silentLogger });
      assert.deepEqual(await reread.lookupAlias('all@example.com'), ['alice@example.com', 'bob@example.com']);
      assert.equal((await reread.lookupUser('bob@example.com'))?.quotaBytes, 1024);
      // No temporary or lock files are left behind.
      const { readdir } = await import('node:fs/promises');
      assert.deepEqual((await readdir(dir)).sort(), ['directory.yaml']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps the file owner, group and mode when root edits it (root:vmail 0640 stays readable by the daemon)', async () => {
    assert.equal(process.getuid?.(), 0, 'the tests run as root');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    try {
      const file = path.join(dir, 'directory.yaml');
      await writeFile(file, seed, { mode: 0o640 });
      await chown(file, 0, 4321);
      const backend = await FileDirectory.open(file, { logger: silentLogger });
      await backend.addDomain('example.net');
      const after = await stat(file);
      assert.deepEqual({ uid: after.uid, gid: after.gid, mode: after.mode & 0o777 }, { uid: 0, gid: 4321, mode: 0o640 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('file directory transports', () => {
  const base = 'domains: [example.com]\nusers: {}\naliases: {}\n';

  async function withFile(text: string, run: (file: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-dir-'));
    try {
      const file = path.join(dir, 'directory.yaml');
      await writeFile(file, text);
      await run(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('loads transports: with lower-cased keys, without requiring hosted domains', async () => {
    const text = `${base}transports:\n  Partner.Example.: "smtp:[mx.partner.example]:587"\n  .partner.example: "[10.0.0.5]"\n  example.com: "lmtp:unix:/run/lmtp"\n`;
    await withFile(text, async (file) => {
      const backend = await FileDirectory.open(file, { logger: silentLogger });
      assert.equal(await backend.lookupTransport('partner.example'), 'smtp:[mx.partner.example]:587');
      assert.equal(await backend.lookupTransport('.partner.example'), '[10.0.0.5]');
      assert.equal(await backend.lookupTransport('example.com'), 'lmtp:unix:/run/lmtp');
      // Exact keys only: the parent search is the Directory's.
      assert.equal(await backend.lookupTransport('a.partner.example'), null);
      assert.equal(await backend.lookupTransport('Partner.Example'), null);
      await backend.close();
    });
    // The section is optional, and may be empty.
    for (const t of [base, `${base}transports:\n`, `${base}transports: {}\n`]) {
      await withFile(t, async (file) => {
        const backend = await FileDirectory.open(file, { logger: silentLogger });
        assert.equal(await backend.lookupTransport('example.com'), null);
        await backend.close();
      });
    }
  });

  it('refuses bad transports: entries, naming them', async () => {
    const cases: Array<[string, RegExp]> = [
      ['  a.example: smtp:x\n  A.EXAMPLE: smtp:y\n', /transports\.A\.EXAMPLE: listed twice/],
      ['  a.example: ""\n', /transports\.a\.example: "" is not a transport/],
      ['  a.example: "smtp:[x] extra"\n', /is not a transport/],
      ['  a.example: "smtp:x\\r\\nRCPT TO:<y>"\n', /is not a transport/],
      ['  a.example: "smtp:x\\ty"\n', /is not a transport/],
      ['  "../etc": smtp:x\n', /transports\.\.\.\/etc: not a domain/],
      ['  "a b.example": smtp:x\n', /not a domain/],
      ['  "x@a.example": smtp:x\n', /not a domain/],
      ['  "..a.example": smtp:x\n', /not a domain/],
      ['  ".": smtp:x\n', /not a domain/],
      ['  "*": smtp:[relay.example]\n', /"\*" default entry is not supported/],
      // Unquoted [10.0.0.5] is a YAML list, not a string.
      ['  a.example: [10.0.0.5]\n', /transports/],
      ['  a.example: 25\n', /transports/],
    ];
    for (const [entries, message] of cases) {
      await withFile(`${base}transports:\n${entries}`, async (file) => {
        await assert.rejects(FileDirectory.open(file, { logger: silentLogger }), (e: unknown) => {
          assert.ok(isMailError(e, 'CONFIG_INVALID'), String(e));
          assert.match(e.message, message, entries);
          return true;
        });
      });
    }
  });

  it('picks up edited transports on reload, through the cache, and keeps them when an edit is broken', async () => {
    await withFile(`${base}transports:\n  .partner.example: smtp:[old.relay]\n`, async (file) => {
      const { logger, lines } = recordingLogger();
      const backend = await FileDirectory.open(file, { logger, watch: true });
      // Count what reaches the backend, to see the cache at work.
      const asked: string[] = [];
      const counting: DirectorySource = {
        kind: 'file',
        lookupDomain: (d) => backend.lookupDomain(d),
        lookupUser: (e) => backend.lookupUser(e),
        lookupAlias: (a) => backend.lookupAlias(a),
        lookupTransport: (d) => (asked.push(d), backend.lookupTransport(d)),
        onChange: (l) => backend.onChange(l),
        close: () => backend.close(),
      };
      const passwords = new PasswordService({ threads: 1 });
      const directory = new Directory(counting, {
        recipientDelimiter: '+',
        cache: { positiveTtlMs: 60_000, negativeTtlMs: 60_000, maxEntries: 100 },
        passwords,
        logger: silentLogger,
      });
      try {
        assert.equal(await directory.transportFor('a.partner.example'), 'smtp:[old.relay]');
        assert.deepEqual(asked, ['a.partner.example', '.partner.example']);
        // Hits and misses are cached; b.partner.example asks only for its own exact key.
        assert.equal(await directory.transportFor('A.Partner.Example'), 'smtp:[old.relay]');
        assert.equal(await directory.transportFor('b.partner.example'), 'smtp:[old.relay]');
        assert.deepEqual(asked, ['a.partner.example', '.partner.example', 'b.partner.example']);
        // An address literal has no parent domains to search.
        assert.equal(await directory.transportFor('[192.0.2.1]'), null);
        assert.deepEqual(asked.slice(3), ['[192.0.2.1]']);

        await writeFile(file, `${base}transports:\n  .partner.example: smtp:[new.relay]\n  a.partner.example: "[192.0.2.7]:2525"\n`);
        await waitFor(async () => (await directory.transportFor('b.partner.example')) === 'smtp:[new.relay]');
        assert.equal(await directory.transportFor('a.partner.example'), '[192.0.2.7]:2525');

        await writeFile(file, `${base}transports:\n  .partner.example: "smtp:[broken] relay"\n`);
        await waitFor(() => lines.some((l) => String(l.msg).includes('keeping the last good version')));
        assert.match(String(lines.find((l) => String(l.msg).includes('keeping'))?.err), /transports\.\.partner\.example/);
        assert.equal(await directory.transportFor('b.partner.example'), 'smtp:[new.relay]');
        assert.equal(await backend.lookupTransport('.partner.example'), 'smtp:[new.relay]');
      } finally {
        await directory.close();
        await passwords.close();
      }
    });
  });

  it('answers null without asking a backend that has no transport table', async () => {
    const passwords = new PasswordService({ threads: 1 });
    const source: DirectorySource = {
      kind: 'mysql',
      lookupDomain: async () => null,
      lookupUser: async () => null,
      lookupAlias: async () => null,
      close: async () => undefined,
    };
    const directory = new Directory(source, {
      recipientDelimiter: '+',
      cache: { positiveTtlMs: 60_000, negativeTtlMs: 60_000, maxEntries: 100 },
      passwords,
      logger: silentLogger,
    });
    try {
      assert.equal(await directory.transportFor('a.partner.example'), null);
    } finally {
      await passwords.close();
    }
  });

  it('keeps the transports when the CLI edits the file', async () => {
    await withFile(`${base}transports:\n  partner.example: "smtp:[mx.partner.example]:587"  # the partner\n`, async (file) => {
      const backend = await FileDirectory.open(file, { logger: silentLogger });
      await backend.addUser({ email: 'bob@example.com', password: '{PLAIN}y', quotaBytes: 0, enabled: true });
      assert.equal(await backend.lookupTransport('partner.example'), 'smtp:[mx.partner.example]:587');
      assert.match(await readFile(file, 'utf8'), /partner\.example: "smtp:\[mx\.partner\.example\]:587" # the partner/);
      await backend.close();
    });
  });
});
