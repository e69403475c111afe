/**
 * Debian's rspamd 3.4 as a milter, as Postfix uses it (smtpd_milters = inet:host:11332): its proxy
 * worker with `milter = yes` and `self_scan = yes`, started once for this file on an ephemeral TCP
 * port and a unix socket. GTUBE is refused with rspamd's own reply; a clean message comes back
 * with the headers milter_headers adds, among them the queue id we sent as the {i} macro.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { miltersSchema } from '../../src/inbound/milter/config.js';
import { runMilters } from '../../src/inbound/milter/index.js';
import type { InboundMessage } from '../../src/inbound/types.js';
import { startRspamd, type MilterDaemon } from '../helpers/milter-daemons.js';

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

/**
 * A local rspamd rule that asks, through its milter reply, for the envelope and header edits
 * libmilter offers (smfi_addrcpt, smfi_delrcpt, smfi_chgfrom, smfi_addheader, smfi_chgheader).
 */
const EDITING_RULE = `
rspamd_config:register_symbol({
  name = 'MAILD_MILTER_EDITS', type = 'postfilter',
  callback = function(task)
    local subject = task:get_subject() or ''
    if subject:find('edit my envelope', 1, true) then
      task:set_milter_reply({
        add_rcpt = {'added@example.test'},
        del_rcpt = {'rcpt@example.test'},
        change_from = 'changed@example.test',
        add_headers = { ['X-Maild-Edited'] = 'yes' },
        remove_headers = { ['X-Remove-Me'] = 1 },
      })
    end
  end,
})
`;

describe('milter client with rspamd', () => {
  let rspamd: MilterDaemon;
  let dir: string;
  let unixSocket: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'maild-milter-rspamd-'));
    unixSocket = path.join(os.tmpdir(), `maild-rspamd-${process.pid}.sock`);
    rspamd = await startRspamd({
      unixSocket,
      config: 'milter_headers { use = ["x-spamd-result", "x-rspamd-queue-id", "x-spam-status"]; }',
      localLua: EDITING_RULE,
      quarantinePort: true,
    });
  });
  after(async () => {
    await rspamd?.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(unixSocket, { force: true });
  });

  async function message(name: string, body: string, extraHeaders: string[] = []): Promise<InboundMessage> {
    const text = [
      'From: Sender <sender@remote.example>',
      'To: rcpt@example.test',
      ...extraHeaders,
      ...(extraHeaders.some((h) => h.startsWith('Subject:')) ? [] : ['Subject: milter test']),
      `Message-ID: <${name}@remote.example>`,
      'Date: Mon, 07 Dec 2026 10:00:00 +0000',
      '',
      body,
      '',
    ].join('\r\n');
    const file = path.join(dir, name);
    await writeFile(file, text);
    return {
      file,
      size: text.length,
      envelope: {
        queueId: `Q${name}`,
        clientIp: '192.0.2.5',
        clientHostname: 'mail.remote.example',
        clientPort: 40000,
        helo: 'mail.remote.example',
        protocol: 'ESMTP',
        sender: 'sender@remote.example',
        recipients: ['rcpt@example.test'],
        hostname: 'mx.example.test',
      },
    };
  }

  it('refuses GTUBE with the reply rspamd chose (554 5.7.1)', async () => {
    const r = await runMilters(miltersSchema.parse([{ address: rspamd.address }]), await message('gtube', `This is spam.\r\n${GTUBE}`));
    assert.equal(r.action, 'reject');
    assert.equal(r.status?.code, 554);
    assert.equal(r.status?.enhanced, '5.7.1');
    assert.match(r.status!.text, /gtube/i);
    assert.equal(r.createdFile, undefined);
  });

  it('accepts a clean message and adds its headers, with our queue id from the {i} macro', async () => {
    const input = await message('clean', 'Hello, this is a perfectly ordinary message.');
    const r = await runMilters(miltersSchema.parse([{ address: rspamd.address, name: 'rspamd' }]), input);
    try {
      assert.equal(r.action, 'accept');
      assert.ok(r.createdFile, 'an edited copy');
      const text = await readFile(r.message.file, 'utf8');
      const [head, body] = text.split('\r\n\r\n');
      assert.equal(body, 'Hello, this is a perfectly ordinary message.\r\n');
      assert.match(head!, /^From: Sender <sender@remote\.example>\r\n/, 'the original fields stay on top');
      assert.match(head!, /\r\nX-Rspamd-Queue-Id: Qclean(\r\n|$)/);
      assert.match(head!, /\r\nX-Spam-Status: No, score=/);
      // The HELO and the client name reached rspamd (its HFILTER rules name them).
      assert.match(head!, /\r\nX-Spamd-Result: default: False \[[-\d.]+ \/ [\d.]+\];\r\n\t/);
      assert.equal(r.message.size, Buffer.byteLength(text));
      assert.deepEqual(r.message.envelope.recipients, ['rcpt@example.test']);
      assert.deepEqual(
        r.edits[0]!.edits.map((e) => e.type),
        ['addheader', 'addheader', 'addheader'],
      );
      assert.equal(await readFile(input.file, 'utf8').then((t) => t.includes('X-Rspamd')), false, 'the original file is untouched');
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });

  it('speaks to rspamd over a unix socket too', async () => {
    const r = await runMilters(miltersSchema.parse([{ address: `unix:${unixSocket}` }]), await message('gtube-unix', GTUBE));
    assert.equal(r.action, 'reject');
    assert.equal(r.status?.code, 554);
  });

  it("runs rspamd twice in order: the second sees the first one's headers and removes them", async () => {
    // rspamd's milter_headers deletes the fields it is about to add when it finds them.
    const input = await message('twice', 'Hello again, an ordinary message.');
    const r = await runMilters(
      miltersSchema.parse([
        { address: rspamd.address, name: 'first' },
        { address: rspamd.address, name: 'second' },
      ]),
      input,
    );
    try {
      assert.equal(r.action, 'accept');
      assert.deepEqual(
        r.edits.map((e) => e.milter),
        ['first', 'second'],
      );
      // The second deleted the field the first added (an empty value at index 1), then added its own.
      assert.ok(r.edits[1]!.edits.some((e) => e.type === 'chgheader' && e.name === 'X-Spam-Status' && e.index === 1 && e.value === ''));
      const text = await readFile(r.message.file, 'utf8');
      assert.equal(text.match(/^X-Spam-Status:/gm)?.length, 1);
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });

  it('applies the envelope and header edits rspamd asks for: new sender, recipient added and removed, field removed', async () => {
    const input = await message('edits', 'Please edit.', ['Subject: edit my envelope', 'X-Remove-Me: bye']);
    input.envelope.recipients.push('other@example.test');
    const r = await runMilters(miltersSchema.parse([{ address: rspamd.address }]), input);
    try {
      assert.equal(r.action, 'accept');
      assert.equal(r.message.envelope.sender, 'changed@example.test');
      assert.deepEqual(r.message.envelope.recipients, ['other@example.test', 'added@example.test']);
      const text = await readFile(r.message.file, 'utf8');
      assert.match(text, /\r\nX-Maild-Edited: yes\r\n/);
      assert.doesNotMatch(text, /X-Remove-Me/);
      assert.deepEqual(input.envelope.recipients, ['rcpt@example.test', 'other@example.test'], 'the input envelope is not modified');
    } finally {
      if (r.createdFile) await rm(r.createdFile);
    }
  });

  it('a quarantine request (quarantine_on_reject) files the message as junk', async () => {
    const r = await runMilters(miltersSchema.parse([{ address: rspamd.extraAddress! }]), await message('quarantine', GTUBE));
    assert.equal(r.action, 'junk');
    assert.equal(r.status, undefined);
    assert.match(r.quarantine ?? '', /quarantine/i);
  });
});
