/**
 * The script store in Pigeonhole's layout (src/store/sieve-scripts.ts): the files it leaves,
 * the active symlink through activation, renaming and deactivation, a script placed by hand at
 * .dovecot.sieve kept as "dovecot.orig", the quotas, and the names it refuses.
 */
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SieveScripts, SieveStoreError, resolveSieveLocation, scriptNameProblem } from '../../src/store/sieve-scripts.js';

const UNLIMITED = { maxScripts: 0, maxScriptSize: 1024 * 1024, maxStorage: 0 };

describe('Sieve script store', () => {
  let dir: string;
  let n = 0;
  const fresh = (quota = UNLIMITED) => new SieveScripts(path.join(dir, `home${++n}`), quota);
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-sieve-store-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('writes NAME.sieve below sieve/ and points .dovecot.sieve at the active one', async () => {
    const s = fresh();
    assert.deepEqual(await s.list(), []);
    await s.put('a', Buffer.from('keep;\n'));
    await s.put('b', Buffer.from('discard;\n'));
    await s.setActive('a');
    assert.equal(await readlink(path.join(s.home, '.dovecot.sieve')), 'sieve/a.sieve');
    assert.deepEqual(await s.list(), [
      { name: 'a', active: true },
      { name: 'b', active: false },
    ]);
    await s.put('a', Buffer.from('stop;\n'));
    assert.equal(await readFile(path.join(s.home, 'sieve/a.sieve'), 'utf8'), 'stop;\n', 'replaced in place, still active');
    assert.equal((await s.list())[0]!.active, true);
    await s.rename('a', 'c');
    assert.equal(await readlink(path.join(s.home, '.dovecot.sieve')), 'sieve/c.sieve');
    await assert.rejects(s.delete('c'), (e: SieveStoreError) => e.code === 'ACTIVE');
    await s.setActive('b');
    assert.equal(await readlink(path.join(s.home, '.dovecot.sieve')), 'sieve/b.sieve');
    await s.setActive('');
    await assert.rejects(lstat(path.join(s.home, '.dovecot.sieve')), { code: 'ENOENT' });
    await s.delete('c');
    assert.deepEqual((await readdir(path.join(s.home, 'sieve'))).sort(), ['b.sieve', 'tmp']);
    assert.deepEqual(await readdir(path.join(s.home, 'sieve/tmp')), []);
  });

  it('keeps a script placed by hand at .dovecot.sieve as "dovecot.orig" when another is activated', async () => {
    const s = fresh();
    await s.put('new', Buffer.from('keep;\n'));
    await writeFile(path.join(s.home, '.dovecot.sieve'), 'discard;\n');
    assert.deepEqual(await s.list(), [{ name: 'new', active: false }], 'a regular file is no script of ours');
    await s.setActive('');
    assert.equal(await readFile(path.join(s.home, '.dovecot.sieve'), 'utf8'), 'discard;\n', 'deactivating leaves it alone');
    await s.setActive('new');
    assert.equal(await readlink(path.join(s.home, '.dovecot.sieve')), 'sieve/new.sieve');
    assert.equal(await readFile(path.join(s.home, 'sieve/dovecot.orig.sieve'), 'utf8'), 'discard;\n');
  });

  it('refuses missing scripts, taken names and the quotas with their codes', async () => {
    const s = fresh({ maxScripts: 2, maxScriptSize: 10, maxStorage: 15 });
    const code = (c: string) => (e: SieveStoreError) => e instanceof SieveStoreError && e.code === c;
    await assert.rejects(s.get('x'), code('NONEXISTENT'));
    await assert.rejects(s.setActive('x'), code('NONEXISTENT'));
    await assert.rejects(s.delete('x'), code('NONEXISTENT'));
    await assert.rejects(s.put('x', Buffer.alloc(11)), code('QUOTA/MAXSIZE'));
    await s.put('x', Buffer.alloc(10));
    await assert.rejects(s.put('y', Buffer.alloc(6)), code('QUOTA/MAXSTORAGE'));
    await s.put('y', Buffer.alloc(5));
    await assert.rejects(s.haveSpace('z', 0), code('QUOTA/MAXSCRIPTS'));
    await s.haveSpace('y', 5);
    await assert.rejects(s.rename('x', 'y'), code('ALREADYEXISTS'));
    await assert.rejects(s.rename('nope', 'z'), code('NONEXISTENT'));
  });

  it('validates names as RFC 5804 section 1.6 and a file name require', () => {
    assert.equal(scriptNameProblem('Ferien ü 2026'), undefined);
    for (const bad of ['', 'a/b', 'nul\0', 'cr\r', 'del\u007f', 'c1\u0085', 'ls\u2028', 'x'.repeat(241), 'ü'.repeat(121), '\ud800x']) {
      assert.notEqual(scriptNameProblem(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe("sieve.location (Pigeonhole's sieve setting)", () => {
  const user = { email: 'bob@example.org' };
  it('resolves ~ to the home, %u / %n / %d to the address, and defaults the active script', () => {
    assert.deepEqual(resolveSieveLocation('file:~/sieve;active=~/.dovecot.sieve', '/m/example.org/bob', user), {
      dir: '/m/example.org/bob/sieve',
      active: '/m/example.org/bob/.dovecot.sieve',
    });
    assert.deepEqual(resolveSieveLocation('file:/var/sieve/%d/%n;active=/var/sieve/%d/%n.active;index=x', '/m', user), {
      dir: '/var/sieve/example.org/bob',
      active: '/var/sieve/example.org/bob.active',
    });
    assert.deepEqual(resolveSieveLocation('~/scripts/%u', '/h', user), { dir: '/h/scripts/bob@example.org', active: '/h/.dovecot.sieve' });
    assert.throws(() => resolveSieveLocation('file:;active=x', '/h', user), /file:DIR;active=PATH/);
  });

  it('keeps the scripts and the active link where the location says, the link relative', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'maild-sieve-location-'));
    try {
      const location = resolveSieveLocation('file:~/filters/%n;active=~/filters/active.sieve', home, user);
      const scripts = new SieveScripts(home, { maxScripts: 10, maxScriptSize: 10_000, maxStorage: 100_000 }, location);
      await scripts.put('main', Buffer.from('keep;\n'));
      await scripts.setActive('main');
      assert.equal(await readFile(path.join(home, 'filters/bob/main.sieve'), 'utf8'), 'keep;\n');
      assert.equal(await readlink(path.join(home, 'filters/active.sieve')), 'bob/main.sieve');
      assert.equal(await scripts.activeName(), 'main');
      assert.deepEqual(await readdir(home), ['filters'], 'nothing in the default places');
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
