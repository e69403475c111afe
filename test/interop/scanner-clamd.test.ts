/**
 * The clamd client against Debian's real clamd (clamav-daemon 1.4), started by this file on a
 * TCP port and a unix socket. No signatures are downloaded here: its database is ONE LOCAL
 * signature written by the helper (Maild.Test.EICAR-Local, an .ndb body signature for the EICAR
 * test string), so "virus" below means the EICAR test file. StreamMaxLength is 1M so that the
 * size limit can be reached with a small message.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { scanWithClamd } from '../../src/inbound/scanners/clamd.js';
import { clamdConfigSchema, spamdConfigSchema, type ClamdConfig } from '../../src/inbound/scanners/config.js';
import { runScanners } from '../../src/inbound/scanners/index.js';
import { scanWithSpamd } from '../../src/inbound/scanners/spamd.js';
import { silentLogger } from '../../src/log.js';
import {
  EICAR,
  EICAR_SIGNATURE,
  freePort,
  inboundMessage,
  messageDir,
  plainMessage,
  startClamd,
  type ScannerDaemon,
} from '../helpers/scanner-daemons.js';

let clamd: ScannerDaemon & { socketPath: string };
let work: string;
let config: ClamdConfig;

/** clamd reports a signature outside ClamAV's signed databases with ".UNOFFICIAL" appended. */
const REPORTED_NAME = `${EICAR_SIGNATURE}.UNOFFICIAL`;
const VIRUS_REFUSAL = { code: 554, enhanced: '5.7.1', text: `message contains a virus (${REPORTED_NAME})` };
const UNAVAILABLE = { code: 451, enhanced: '4.7.1', text: 'Content scanner unavailable, try again later' };

/** A message with the EICAR file as a base64 attachment (clamd must decode the MIME part to see it). */
function withAttachment(padding = ''): string {
  return [
    'From: alice@example.org',
    'To: bob@example.net',
    'Subject: the report',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'See attached.',
    padding,
    '--b1',
    'Content-Type: application/octet-stream; name="eicar.com"',
    'Content-Disposition: attachment; filename="eicar.com"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from(EICAR, 'latin1').toString('base64'),
    '--b1--',
    '',
  ].join('\n');
}

describe('clamd INSTREAM', () => {
  before(async () => {
    work = await messageDir();
    clamd = await startClamd('StreamMaxLength 1M');
    console.log(`clamd answered PING ${clamd.startupMs} ms after spawn`);
    config = clamdConfigSchema.parse({ address: `127.0.0.1:${clamd.port}`, timeout: '20s' });
  });
  after(async () => {
    await clamd?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('refuses the EICAR attachment with 554 5.7.1 naming the signature, over TCP and the unix socket', async () => {
    const msg = await inboundMessage(work, 'eicar', withAttachment());
    for (const address of [config.address, clamd.socketPath]) {
      const r = await scanWithClamd({ ...config, address }, msg, silentLogger);
      assert.equal(r.action, 'reject', JSON.stringify(r));
      assert.deepEqual(r.status, VIRUS_REFUSAL);
      assert.equal(r.log?.virus, REPORTED_NAME);
    }
  });

  it('accepts a clean message', async () => {
    const msg = await inboundMessage(work, 'clean', plainMessage('lunch', 'Lunch tomorrow at noon?'));
    const r = await scanWithClamd(config, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.equal(r.log?.clamd, 'clean');
  });

  it('finds the attachment after 600 KB of text (many chunks)', async () => {
    const padding = 'All work and no play makes Jack a dull boy.\n'.repeat(14_000);
    const msg = await inboundMessage(work, 'eicar-late', withAttachment(padding));
    assert.ok(msg.size > 600_000);
    const r = await scanWithClamd(config, msg, silentLogger);
    assert.deepEqual(r.status, VIRUS_REFUSAL, JSON.stringify(r));
  });

  it("gives the default action when the stream exceeds clamd's StreamMaxLength", async () => {
    const msg = await inboundMessage(work, 'big', plainMessage('big', 'All work and no play.\n'.repeat(60_000)));
    assert.ok(msg.size > 1024 * 1024);
    const r = await scanWithClamd(config, msg, silentLogger);
    assert.equal(r.action, 'tempfail', JSON.stringify(r));
    assert.deepEqual(r.status, UNAVAILABLE);
    // clamd answers "INSTREAM size limit exceeded. ERROR" and hangs up while the client still
    // writes: whether that reply or the write's EPIPE/ECONNRESET comes first is a race.
    assert.match(String(r.log?.clamd_error), /^(REFUSED: INSTREAM size limit exceeded|IO: .*(EPIPE|ECONNRESET))/);
    const accepted = await scanWithClamd({ ...config, default_action: 'accept' }, msg, silentLogger);
    assert.equal(accepted.action, 'accept');
  });

  it('passes a message over max_size unscanned', async () => {
    const msg = await inboundMessage(work, 'eicar-unscanned', withAttachment());
    const r = await scanWithClamd({ ...config, max_size: msg.size - 1 }, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.equal(r.log?.clamd, 'skipped (size)');
  });

  it('gives the default action when clamd hangs (SIGSTOP) past the timeout', async () => {
    const msg = await inboundMessage(work, 'hang', withAttachment());
    clamd.signal('SIGSTOP');
    try {
      const r = await scanWithClamd({ ...config, timeout: 500 }, msg, silentLogger);
      assert.equal(r.action, 'tempfail', JSON.stringify(r));
      assert.match(String(r.log?.clamd_error), /^TIMEOUT/);
    } finally {
      clamd.signal('SIGCONT');
    }
  });

  it("treats a reply in another protocol as garbage: spamd's client pointed at clamd", async () => {
    const msg = await inboundMessage(work, 'wrong-daemon', plainMessage('hello', 'Hello'));
    const spamd = spamdConfigSchema.parse({ address: `127.0.0.1:${clamd.port}`, timeout: '5s' });
    const r = await scanWithSpamd(spamd, msg, silentLogger);
    assert.equal(r.action, 'tempfail', JSON.stringify(r));
    assert.match(String(r.log?.spamd_error), /^PROTOCOL/);
  });

  it('tempfails with 451 4.7.1 when clamd is stopped, and accepts with default_action: accept', async () => {
    const msg = await inboundMessage(work, 'down', withAttachment());
    const addresses = [config.address, clamd.socketPath, `127.0.0.1:${await freePort()}`];
    await clamd.stop();
    for (const address of addresses) {
      const [r] = await runScanners({ clamd: { ...config, address } }, msg, silentLogger);
      assert.equal(r?.action, 'tempfail', JSON.stringify(r));
      assert.deepEqual(r?.status, UNAVAILABLE);
      assert.match(String(r?.log?.clamd_error), /^CONNECT/);
      const [accepted] = await runScanners({ clamd: { ...config, address, default_action: 'accept' } }, msg, silentLogger);
      assert.equal(accepted?.action, 'accept');
    }
  });
});
