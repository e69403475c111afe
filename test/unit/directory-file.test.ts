import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
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
});
