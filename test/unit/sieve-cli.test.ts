/**
 * `maild sieve check` and `maild sieve test`: compile errors with their lines, and the actions on a
 * message in the form Pigeonhole's sieve-test prints them.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCliCaptured } from '../helpers/cli.js';

describe('maild sieve', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-sieve-cli-'));
    await writeFile(
      path.join(dir, 'good.sieve'),
      'require ["fileinto", "imap4flags"];\nif header :contains "subject" "report" {\n  fileinto :flags "\\\\Seen" "Reports";\n}\n',
    );
    await writeFile(path.join(dir, 'bad.sieve'), 'require ["fileinto"];\n\nif header :contains "subject" {\n  fileinto "X";\n}\n');
    await writeFile(path.join(dir, 'm.eml'), 'From: a@remote.example\r\nTo: b@example.test\r\nSubject: weekly report\r\n\r\nHello\r\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('check: exit 0 for a good script, 1 with the line of the error for a bad one', async () => {
    assert.equal((await runCliCaptured(['sieve', 'check', path.join(dir, 'good.sieve')])).code, 0);
    const bad = await runCliCaptured(['sieve', 'check', path.join(dir, 'bad.sieve')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /bad\.sieve: line 3: error: /);
  });

  it('test: prints the actions as sieve-test does', async () => {
    const out = await runCliCaptured(['sieve', 'test', path.join(dir, 'good.sieve'), path.join(dir, 'm.eml')]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /Performed actions:\n\n \* store message in folder: Reports\n\s+\+ add IMAP flags: \\seen/i);
    assert.match(out.stdout, /Implicit keep:\n\n\s+\(none\)/);
  });

  it("list and activate: a user's scripts in Pigeonhole's layout, the active one marked", async () => {
    const config = path.join(dir, 'maild.yaml');
    await writeFile(path.join(dir, 'directory.yaml'), 'domains: [example.test]\nusers:\n  alice@example.test: { password: "{PLAIN}x" }\n');
    await writeFile(
      config,
      `hostname: t.example\ndata_dir: ${dir}/data\nmail: { root: ${dir}/mail }\nlisteners: [{ name: mx, protocol: smtp, address: 127.0.0.1, port: 0 }]\ndirectory: { file: { path: ${dir}/directory.yaml } }\n`,
    );
    const home = path.join(dir, 'mail/example.test/alice');
    await mkdir(path.join(home, 'sieve'), { recursive: true });
    await writeFile(path.join(home, 'sieve/a.sieve'), 'keep;\n');
    await writeFile(path.join(home, 'sieve/b.sieve'), 'discard;\n');
    const activate = await runCliCaptured(['--config', config, 'sieve', 'activate', 'alice@example.test', 'b']);
    assert.equal(activate.code, 0, activate.stderr);
    assert.equal(await readlink(path.join(home, '.dovecot.sieve')), 'sieve/b.sieve');
    const list = await runCliCaptured(['--config', config, 'sieve', 'list', 'alice@example.test']);
    assert.equal(list.stdout, 'a\nb\tACTIVE\n');
    assert.equal((await runCliCaptured(['--config', config, 'sieve', 'list', 'nobody@example.test'])).code, 1);
  });

  it('refuses other forms with the usage (exit 64)', async () => {
    assert.equal((await runCliCaptured(['sieve', 'test', path.join(dir, 'good.sieve')])).code, 64);
  });
});
