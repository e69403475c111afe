/**
 * The special-use folders (RFC 6154) at login, over the wire: a new Maildir gets the standard
 * set created and subscribed; a Maildir taken over from Dovecot keeps exactly its folders, and
 * those with other common names carry their special use; imap.special_folders per folder
 * (auto subscribe/create/no, the older plain form) and imap.auto_special_folders: always.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn } from '../helpers/imap-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const DIRECTORY = `
domains: [special.test]
users:
  migrated@special.test: { password: "{PLAIN}pw" }
  inboxonly@special.test: { password: "{PLAIN}pw" }
`;

/** A Maildir as Dovecot left it: these Maildir++ folders (".Name") and subscriptions. */
async function dovecotMaildir(srv: TestServer, user: string, folders: string[], subscribed: string[]): Promise<string> {
  const root = path.join(srv.mailRoot, 'special.test', user);
  for (const dir of ['', ...folders.map((f) => `.${f}`)])
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(root, dir, sub), { recursive: true });
  await writeFile(path.join(root, 'subscriptions'), subscribed.map((s) => `${s}\n`).join(''));
  return root;
}

/** LIST's lines and the names LSUB gives, after a login of the user. */
async function folderView(srv: TestServer, user: string): Promise<{ list: string[]; lsub: string[] }> {
  const c = await loggedIn(srv, `${user}@special.test`, 'pw');
  const list = (await c.cmd('LIST "" "*"')).untagged.sort();
  const lsub = (await c.cmd('LSUB "" "*"')).untagged.map((l) => /"([^"]*)"$/.exec(l)![1]!).sort();
  await c.logout();
  return { list, lsub };
}

describe('special-use folders with the default settings', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ directory: DIRECTORY });
  });
  after(async () => {
    await srv.stop();
  });

  it('creates nothing in a Maildir taken over with folders, and gives its folders their special use', async () => {
    const root = await dovecotMaildir(srv, 'migrated', ['Sent Messages', 'Deleted Messages', 'Spam', 'Work'], ['Work', 'Sent Messages']);
    const view = await folderView(srv, 'migrated');
    assert.deepEqual(view.list, [
      'LIST (\\HasNoChildren \\Junk) "/" "Spam"',
      'LIST (\\HasNoChildren \\Sent) "/" "Sent Messages"',
      'LIST (\\HasNoChildren \\Trash) "/" "Deleted Messages"',
      'LIST (\\HasNoChildren) "/" "INBOX"',
      'LIST (\\HasNoChildren) "/" "Work"',
    ]);
    assert.deepEqual(view.lsub, ['Sent Messages', 'Work']);
    assert.deepEqual((await readdir(root)).filter((e) => e.startsWith('.')).sort(), [
      '.Deleted Messages',
      '.Sent Messages',
      '.Spam',
      '.Work',
    ]);
  });

  // (A Maildir that does not exist yet gets them too: imap-mailbox.test.ts.)
  it('treats a Maildir with only an INBOX as new: the standard set, created and subscribed', async () => {
    await dovecotMaildir(srv, 'inboxonly', [], []);
    const view = await folderView(srv, 'inboxonly');
    assert.equal(view.list.length, 6, view.list.join('\n'));
    assert.equal(view.lsub.length, 5);
  });
});

describe('special-use folders configured per folder, created at every login', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      directory: DIRECTORY,
      config: {
        imap: {
          special_folders: {
            Sent: { use: '\\Sent', auto: 'subscribe' },
            Drafts: { use: '\\Drafts', auto: 'create' },
            Trash: '\\Trash', // the older form: auto subscribe
            Spam: { use: '\\Junk' }, // auto no
            Junk: { use: '\\Junk', auto: 'subscribe' },
          },
          auto_special_folders: 'always',
        },
      },
    });
  });
  after(async () => {
    await srv.stop();
  });

  it('subscribes, only creates, or leaves each folder as configured, also in a Maildir with folders', async () => {
    await dovecotMaildir(srv, 'migrated', ['Spam', 'Work'], ['Work']);
    const view = await folderView(srv, 'migrated');
    assert.deepEqual(
      view.list,
      [
        'LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
        'LIST (\\HasNoChildren \\Junk) "/" "Spam"',
        'LIST (\\HasNoChildren \\Sent) "/" "Sent"',
        'LIST (\\HasNoChildren \\Trash) "/" "Trash"',
        'LIST (\\HasNoChildren) "/" "INBOX"',
        'LIST (\\HasNoChildren) "/" "Work"',
      ],
      'no Junk: Spam has its use',
    );
    assert.deepEqual(view.lsub, ['Sent', 'Trash', 'Work'], 'Drafts is created, not subscribed');
    // always: a deleted one comes back at the next login, as with Dovecot's auto = create.
    const c = await loggedIn(srv, 'migrated@special.test', 'pw');
    assert.equal((await c.cmd('DELETE Drafts')).status, 'OK');
    await c.logout();
    assert.ok((await folderView(srv, 'migrated')).list.includes('LIST (\\HasNoChildren \\Drafts) "/" "Drafts"'));
  });
});
