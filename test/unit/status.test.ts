/**
 * The protocol-neutral status (src/status.ts): the one mapping of MailError codes to statuses,
 * its SMTP/LMTP rendering (smtp/replies.ts) and the queue's local delivery results built from
 * the structured fields; the layering rule that only the listener wiring imports smtp/.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MailError, type ErrorCode } from '../../src/errors.js';
import { resultForError } from '../../src/queue/local.js';
import { SenderNotOwnedError, replyError, replyFor, replyText } from '../../src/smtp/replies.js';
import { LOCAL_ERROR, statusFor, statusLine } from '../../src/status.js';

/** Every MailError code with the SMTP reply line it has always been answered with. */
const WIRE: Record<ErrorCode, string> = {
  TEMP_FAIL: '451 4.3.0 Temporary lookup failure, try again later',
  RECIPIENT_NOT_FOUND: '550 5.1.1 Recipient address rejected: user unknown',
  MAILBOX_DISABLED: '550 5.2.1 Recipient address rejected: mailbox disabled',
  ALIAS_LOOP: '550 5.4.6 Recipient address rejected: mail forwarding loop',
  BAD_ADDRESS: '553 5.1.3 Recipient address rejected: bad address syntax',
  QUOTA_FULL: '452 4.2.2 Mailbox full, try again later',
  QUOTA_EXCEEDED: '552 5.2.2 Message exceeds the mailbox quota',
  MESSAGE_TOO_BIG: '552 5.3.4 Message size exceeds fixed limit',
  STORAGE_ERROR: '452 4.3.1 Insufficient system storage, try again later',
  RELAY_UNAVAILABLE: '451 4.3.2 Forwarding to remote destinations is not available, try again later',
  CONFIG_INVALID: '451 4.3.5 Server configuration error, try again later',
  NOT_FOUND: '550 5.1.1 Recipient address rejected: user unknown',
  ALREADY_EXISTS: '451 4.3.0 Local error in processing',
  UNSUPPORTED: '451 4.3.0 Local error in processing',
  MAILBOX_NOT_FOUND: '550 5.1.1 Recipient address rejected: user unknown',
  BAD_MAILBOX_NAME: '451 4.3.0 Local error in processing',
  NOT_PERMITTED: '451 4.3.0 Local error in processing',
  EXPUNGED: '451 4.3.0 Local error in processing',
  LIMIT: '452 4.5.3 Too many recipients',
  IN_USE: '451 4.2.0 Mailbox busy, try again later',
  PROXY_HEADER: '421 4.7.0 Connection refused',
  REJECTED: '550 5.7.1 Message rejected',
};

describe('status of an error', () => {
  it("answers with the reply an error carries (a Sieve reject's reason) instead of its code's", () => {
    const reply = { code: 550, enhanced: '5.7.1', text: 'I do not accept mail from you' };
    assert.equal(statusLine(statusFor(new MailError('REJECTED', 'sieve reject', { reply }))), '550 5.7.1 I do not accept mail from you');
  });

  it('maps every MailError code to a code, an enhanced code of the same class and a text', () => {
    for (const [code, line] of Object.entries(WIRE) as [ErrorCode, string][]) {
      const status = statusFor(new MailError(code, 'detail for the log'));
      assert.equal(statusLine(status), line, code);
      assert.match(status.enhanced, /^[245]\.\d{1,3}\.\d{1,3}$/, code);
      assert.equal(status.enhanced[0], String(status.code)[0], code);
      assert.doesNotMatch(status.text, /^\d/, `${code}: the text carries no code`);
      assert.doesNotMatch(status.text, /detail for the log/, `${code}: the detail stays in the log`);
    }
  });

  it('gives a temporary local error for anything that is not a MailError', () => {
    for (const err of [new Error('boom'), 'a string', undefined, { code: 'QUOTA_FULL' }]) {
      assert.deepEqual(statusFor(err), LOCAL_ERROR);
    }
    assert.equal(statusLine(LOCAL_ERROR), '451 4.3.0 Local error in processing, try again later');
  });
});

describe('SMTP rendering of a status', () => {
  const status = { code: 550, enhanced: '5.1.1', text: 'Recipient address rejected: user unknown' };

  it('puts the enhanced code before the text for smtp-server, and the reply code before both in a line', () => {
    assert.equal(replyText(status), '5.1.1 Recipient address rejected: user unknown');
    assert.equal(statusLine(status), '550 5.1.1 Recipient address rejected: user unknown');
  });

  it('makes an Error that smtp-server sends as exactly this reply', () => {
    const err = replyError(status);
    assert.equal(err.responseCode, 550);
    assert.equal(err.message, '5.1.1 Recipient address rejected: user unknown');
  });

  it('answers a sender not owned by the login with 553 5.7.1 naming the login, made header-safe', () => {
    const reply = replyFor(new SenderNotOwnedError('alice@example.com\r\nX: y', 'bob@example.com', 'envelope'));
    assert.equal(reply.code, 553);
    assert.equal(reply.enhanced, '5.7.1');
    assert.match(reply.text, /^Sender address rejected: not owned by user alice@example\.com/);
    assert.doesNotMatch(reply.text, /[\r\n]/);
  });

  it('renders an error of the store like the status table says', () => {
    assert.deepEqual(replyFor(new MailError('QUOTA_EXCEEDED', 'x')), statusFor(new MailError('QUOTA_EXCEEDED', 'x')));
  });
});

describe("queue's local delivery result for an error", () => {
  it('takes code, enhanced code and text from the status and adds the detail', () => {
    assert.deepEqual(resultForError('bob@example.com', new MailError('QUOTA_FULL', 'maildirsize says 100/100')), {
      address: 'bob@example.com',
      status: 'deferred',
      code: 452,
      enhanced: '4.2.2',
      text: 'Mailbox full, try again later (maildirsize says 100/100)',
    });
    assert.deepEqual(resultForError('bob@example.com', new MailError('RECIPIENT_NOT_FOUND', 'gone\r\nX: y')), {
      address: 'bob@example.com',
      status: 'failed',
      code: 550,
      enhanced: '5.1.1',
      text: 'Recipient address rejected: user unknown (gone  X: y)',
    });
  });

  it('counts an unexpected error as a storage error, retried', () => {
    const result = resultForError('bob@example.com', new Error('EIO'));
    assert.equal(result.status, 'deferred');
    assert.equal(statusLine(result), '452 4.3.1 Insufficient system storage, try again later (EIO)');
  });
});

describe('layering', () => {
  it('lets nothing outside src/smtp/ import from it but the listener wiring in src/server.ts', async () => {
    const src = path.resolve(import.meta.dirname, '../../src');
    const offenders: string[] = [];
    for (const entry of await readdir(src, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const file = path.relative(src, path.join(entry.parentPath, entry.name));
      if (file.startsWith(`smtp${path.sep}`) || file === 'server.ts') continue;
      const text = await readFile(path.join(src, file), 'utf8');
      for (const m of text.matchAll(/from '((?:\.\.?\/)+)smtp\//g)) {
        const target = path.resolve(path.dirname(path.join(src, file)), m[1]!, 'smtp');
        if (target === path.join(src, 'smtp')) offenders.push(file);
      }
    }
    assert.deepEqual(offenders, []);
  });
});
