/**
 * maild-index after a crash: a line cut in the middle of a write (the tail) and damaged lines are
 * ignored, sizes and MODSEQs stay right, and the next append starts on a line of its own.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loggedIn } from '../helpers/imap-client.js';
import { startTestServer as startServer, type TestServer } from '../helpers/server.js';

describe('maild-index', () => {
  const roots: string[] = [];
  // Servers still running when a test fails are stopped here, so a failure never hangs the run.
  const running = new Set<TestServer>();
  const startTestServer = async (opts: { mailRoot: string }) => {
    const srv = await startServer(opts);
    running.add(srv);
    const stop = srv.stop.bind(srv);
    srv.stop = async () => {
      running.delete(srv);
      await stop();
    };
    return srv;
  };
  after(async () => {
    for (const srv of running) await srv.stop();
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  it('ignores a torn tail and damaged lines after a crash, and appends on a fresh line', async () => {
    const mailRoot = await mkdtemp(path.join(os.tmpdir(), 'maild-index-'));
    roots.push(mailRoot);
    const message = 'From: a@remote.example\r\nSubject: index\r\n\r\nbody\r\n';
    let srv = await startTestServer({ mailRoot });
    let c = await loggedIn(srv);
    for (let i = 0; i < 2; i++) await c.cmd(`APPEND INBOX {${message.length}+}\r\n${message}`);
    await c.cmd('SELECT INBOX');
    await c.cmd('STORE 1 +FLAGS (\\Flagged)');
    // (The FETCH lines: the first CONDSTORE command also reports HIGHESTMODSEQ, RFC 7162 section 3.1.)
    const fetched = async () => (await c.cmd('UID FETCH 1:* (UID RFC822.SIZE MODSEQ)')).untagged.filter((l) => l.includes(' FETCH '));
    const before = await fetched();
    await c.logout();
    await srv.stop();

    // What a crash in the middle of writes leaves: a damaged line, then a cut one.
    const index = path.join(mailRoot, 'example.test/alice/maild-index');
    await appendFile(index, 'm 1 x\nm 2 77s 2 1\ns 1 5 5');
    srv = await startTestServer({ mailRoot });
    c = await loggedIn(srv);
    await c.cmd('SELECT INBOX');
    assert.deepEqual(await fetched(), before, 'sizes and MODSEQs as before the crash');
    const stored = await c.cmd('STORE 2 +FLAGS (\\Seen)');
    assert.match(stored.untagged[0]!, /^2 FETCH \(FLAGS \(\\Seen\) MODSEQ \((\d+)\)\)$/);
    await c.logout();
    await srv.stop();

    const text = await readFile(index, 'utf8');
    const lines = text.split('\n');
    assert.equal(lines.at(-1), '', 'the file ends with a whole line');
    assert.ok(lines.includes('s 1 5 5'), 'the torn tail stays a line of its own, which a reader skips');
    const valid = /^([ihmxs]) (\d+)(?: (\d+))?(?: (\d+) (\d+))?$/;
    const after = lines.slice(lines.indexOf('s 1 5 5') + 1, -1);
    assert.ok(after.length > 0 && after.every((l) => valid.test(l)), JSON.stringify(after));
  });

  it("starts MODSEQs above what clients knew when the index is lost (or was Dovecot's), so CHANGEDSINCE returns every message", async () => {
    const mailRoot = await mkdtemp(path.join(os.tmpdir(), 'maild-index-'));
    roots.push(mailRoot);
    const message = 'From: a@remote.example\r\nSubject: modseq\r\n\r\nbody\r\n';
    let srv = await startTestServer({ mailRoot });
    let c = await loggedIn(srv);
    for (let i = 0; i < 3; i++) await c.cmd(`APPEND INBOX {${message.length}+}\r\n${message}`);
    const first = await c.cmd('SELECT INBOX (CONDSTORE)');
    const known = BigInt(/HIGHESTMODSEQ (\d+)/.exec(first.untagged.join('\n'))![1]!);
    await c.logout();
    await srv.stop();

    await unlink(path.join(mailRoot, 'example.test/alice/maild-index'));
    srv = await startTestServer({ mailRoot });
    c = await loggedIn(srv);
    const again = await c.cmd('SELECT INBOX (CONDSTORE)');
    assert.match(again.untagged.join('\n'), /UIDVALIDITY/);
    const now = BigInt(/HIGHESTMODSEQ (\d+)/.exec(again.untagged.join('\n'))![1]!);
    assert.ok(now > known, `${now} > ${known}`);
    const changed = await c.cmd(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${known})`);
    assert.equal(changed.untagged.filter((l) => / FETCH /.test(l)).length, 3, changed.untagged.join('\n'));
    await c.logout();
    await srv.stop();
  });
});
