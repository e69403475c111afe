/**
 * `npm ci --omit=dev`, the natural production install, in a checkout: the prepare step has no
 * TypeScript. A bare checkout fails saying what to do instead (not "tsc: not found"); a tree with
 * dist/ (an unpacked npm pack) installs and runs without a dev dependency.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../helpers/daemon.js';

function run(command: string, args: string[], cwd: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

describe('npm ci --omit=dev', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-omit-dev-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function checkout(name: string, withDist: boolean): Promise<string> {
    const tree = path.join(dir, name);
    for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts', 'src', ...(withDist ? ['dist'] : [])])
      await cp(path.join(ROOT, entry), path.join(tree, entry), { recursive: true });
    return tree;
  }
  const install = (tree: string) => run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], tree);

  it('in a bare checkout: fails naming the ways that work, not with "tsc: not found"', async () => {
    const r = await install(await checkout('bare', false));
    assert.notEqual(r.code, 0);
    assert.match(r.output, /this checkout has no dist\/ and no TypeScript to build it/);
    assert.match(r.output, /npm run release/);
    assert.doesNotMatch(r.output, /tsc: not found/);
  });

  it('in a tree with dist/: installs only the runtime dependencies, and maild runs', async () => {
    const tree = await checkout('built', true);
    const r = await install(tree);
    assert.equal(r.code, 0, r.output);
    const modules = await readdir(path.join(tree, 'node_modules'));
    assert.ok(modules.includes('smtp-server'));
    assert.ok(!modules.includes('typescript') && !modules.includes('tsx'), 'no dev dependency');
    const help = await run(
      process.execPath,
      ['dist/src/cli/index.js', 'pw', '-s', 'SHA512-CRYPT', '-p', 'x', '--config', path.join(ROOT, 'config/quickstart.yaml')],
      tree,
    );
    assert.equal(help.code, 0, help.output);
    assert.match(help.output, /^\{SHA512-CRYPT\}\$6\$/);
  });
});
