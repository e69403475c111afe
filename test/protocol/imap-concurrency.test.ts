/**
 * IMAP under concurrency: a burst of first logins of one user (the special folders are created
 * once, not raced), and many sessions idling on one INBOX all told about a delivery and about
 * another process's change (one poll per mailbox, not per session).
 */
import assert from 'node:assert/strict';
import { rename, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImapTestClient, loggedIn } from '../helpers/imap-client.js';
import { SmtpClient, simpleMessage } from '../helpers/smtp-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('IMAP concurrency', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.stop();
  });

  it('logs in a burst of first sessions of one user, each with the special folders', async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => loggedIn(srv, 'bob@example.test', 'bob-pw')));
    for (const c of clients) {
      const list = await c.cmd('LIST "" "*"');
      assert.equal(list.status, 'OK');
      for (const name of ['Sent', 'Drafts', 'Trash', 'Junk', 'Archive'])
        assert.ok(
          list.untagged.some((l) => l.endsWith(` "${name}"`) || l.endsWith(` ${name}`)),
          name,
        );
    }
    await Promise.all(clients.map((c) => c.logout()));
  });

  it('pushes one delivery and a flag change by another process to every session idling on the mailbox', async () => {
    const sessions: ImapTestClient[] = [];
    let exists = 0;
    for (let i = 0; i < 8; i++) {
      const c = await loggedIn(srv, 'carol@example.test', 'carol-pw');
      const sel = await c.cmd('SELECT INBOX');
      exists = Number(/^(\d+) EXISTS$/m.exec(sel.untagged.join('\n'))![1]);
      c.write('I1 IDLE\r\n');
      assert.equal(await c.line(), '+ idling');
      sessions.push(c);
    }
    const smtp = await SmtpClient.connect(srv.smtpPort);
    await smtp.greeting();
    await smtp.command('EHLO idle.test');
    const res = await smtp.sendMail('sender@remote.example', ['carol@example.test'], simpleMessage('to all idlers'));
    assert.equal(res.final![0]!.code, 250);
    await smtp.quit();
    for (const c of sessions) assert.equal(await c.line(), `* ${exists + 1} EXISTS`);
    // Another process flags the message (a rename in cur/): seen by the mailbox's poll.
    const cur = path.join(srv.mailRoot, 'example.test/carol/cur');
    const file = (await readdir(cur)).sort().at(-1)!;
    await rename(path.join(cur, file), path.join(cur, `${file.split(':')[0]}:2,F`));
    // The message is \Recent for exactly one session: the first that took it into its view
    // (RFC 3501 section 2.3.2); that one said RECENT after EXISTS and shows the flag.
    let recentIn = 0;
    for (const c of sessions) {
      let line = await c.line();
      if (line === '* 1 RECENT') {
        recentIn++;
        line = await c.line();
        assert.match(line!, new RegExp(`^\\* ${exists + 1} FETCH \\(FLAGS \\(\\\\Flagged \\\\Recent\\)`));
      } else assert.match(line!, new RegExp(`^\\* ${exists + 1} FETCH \\(FLAGS \\(\\\\Flagged\\)`));
    }
    assert.equal(recentIn, 1, 'recent in one session only');
    for (const c of sessions) {
      c.write('DONE\r\n');
      assert.equal((await c.result('I1')).status, 'OK');
      await c.logout();
    }
  });
});
