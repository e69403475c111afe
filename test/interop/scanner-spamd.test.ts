/**
 * The spamd client against Debian's real spamd (SpamAssassin 4.0), started by this file with a
 * site configuration directory of its own (required_score 6.5, so that the threshold in the
 * headers is seen to come from spamd), no user configuration (-x) and no network tests (-L).
 * SpamAssassin's GTUBE rule scores 1000: the GTUBE message is spam, a plain one is not.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { scanWithClamd } from '../../src/inbound/scanners/clamd.js';
import { clamdConfigSchema, rspamdConfigSchema, spamdConfigSchema, type SpamdConfig } from '../../src/inbound/scanners/config.js';
import { runScanners } from '../../src/inbound/scanners/index.js';
import { scanWithRspamd } from '../../src/inbound/scanners/rspamd.js';
import { scanWithSpamd } from '../../src/inbound/scanners/spamd.js';
import { silentLogger } from '../../src/log.js';
import { freePort, inboundMessage, messageDir, plainMessage, startSpamd, type ScannerDaemon } from '../helpers/scanner-daemons.js';

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
const UNAVAILABLE = { code: 451, enhanced: '4.7.1', text: 'Content scanner unavailable, try again later' };

let spamd: ScannerDaemon;
let work: string;
let config: SpamdConfig;

function header(fields: [string, string][] | undefined, name: string): string | undefined {
  return fields?.find(([n]) => n === name)?.[1];
}

describe('spamd over SPAMC/1.5', () => {
  before(async () => {
    work = await messageDir();
    spamd = await startSpamd('required_score 6.5\n');
    console.log(`spamd answered PING ${spamd.startupMs} ms after spawn`);
    config = spamdConfigSchema.parse({ address: `127.0.0.1:${spamd.port}`, timeout: '30s' });
  });
  after(async () => {
    await spamd?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('files GTUBE into Junk with X-Spam-Flag, X-Spam-Score and X-Spam-Status', async () => {
    const msg = await inboundMessage(work, 'gtube', plainMessage('gtube', GTUBE));
    const r = await scanWithSpamd(config, msg, silentLogger);
    assert.equal(r.action, 'junk', JSON.stringify(r));
    assert.equal(r.status, undefined);
    assert.equal(header(r.addHeaders, 'X-Spam-Flag'), 'YES');
    const score = Number(header(r.addHeaders, 'X-Spam-Score'));
    assert.ok(score >= 1000, `score ${score}`);
    assert.match(header(r.addHeaders, 'X-Spam-Status') ?? '', /^Yes, score=\d+\.\d required=6\.5 tests=(.*,)?GTUBE(,|$)/);
    assert.deepEqual(r.scores, { spam: 10 }, 'RFC 5235: at or above the threshold, surely spam');
  });

  it('refuses GTUBE with 550 5.7.1 when spam_action is reject', async () => {
    const msg = await inboundMessage(work, 'gtube-reject', plainMessage('gtube', GTUBE));
    const r = await scanWithSpamd({ ...config, spam_action: 'reject' }, msg, silentLogger);
    assert.equal(r.action, 'reject', JSON.stringify(r));
    assert.deepEqual(r.status, { code: 550, enhanced: '5.7.1', text: 'Message rejected as spam' });
  });

  it('accepts a plain message, with X-Spam-Status: No and no X-Spam-Flag', async () => {
    const msg = await inboundMessage(work, 'plain', plainMessage('lunch', 'Lunch tomorrow at noon?'));
    const r = await scanWithSpamd(config, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.equal(header(r.addHeaders, 'X-Spam-Flag'), undefined);
    assert.match(header(r.addHeaders, 'X-Spam-Status') ?? '', /^No, score=-?\d+\.\d required=6\.5 tests=/);
    assert.equal(r.log?.spamd, 'ham');
    assert.ok(r.scores?.spam !== undefined && r.scores.spam >= 1 && r.scores.spam < 10, JSON.stringify(r.scores));
  });

  it('sends the User header when user is set (spamd logs whom it checked for)', async () => {
    const msg = await inboundMessage(work, 'user', plainMessage('user', 'Hello'));
    const r = await scanWithSpamd({ ...config, user: 'maild-scan-user' }, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.match(spamd.output(), /checking message .* for maild-scan-user:/);
  });

  it('passes a message over max_size unscanned', async () => {
    const msg = await inboundMessage(work, 'gtube-big', plainMessage('gtube', GTUBE));
    const r = await scanWithSpamd({ ...config, max_size: msg.size - 1 }, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.equal(r.addHeaders, undefined);
    assert.equal(r.log?.spamd, 'skipped (size)');
  });

  it('gives the default action when spamd hangs (SIGSTOP) past the timeout', async () => {
    const msg = await inboundMessage(work, 'hang', plainMessage('hang', 'Hello'));
    spamd.signal('SIGSTOP');
    try {
      const r = await scanWithSpamd({ ...config, timeout: 500 }, msg, silentLogger);
      assert.equal(r.action, 'tempfail', JSON.stringify(r));
      assert.deepEqual(r.status, UNAVAILABLE);
      assert.match(String(r.log?.spamd_error), /^TIMEOUT/);
    } finally {
      spamd.signal('SIGCONT');
    }
  });

  it("treats a reply in another protocol as garbage: rspamd's and clamd's clients pointed at spamd", async () => {
    const msg = await inboundMessage(work, 'wrong-daemon', plainMessage('hello', 'Hello'));
    const rspamd = rspamdConfigSchema.parse({ url: `http://127.0.0.1:${spamd.port}`, timeout: '10s' });
    const r1 = await scanWithRspamd(rspamd, msg, silentLogger);
    assert.equal(r1.action, 'tempfail', JSON.stringify(r1));
    assert.deepEqual(r1.status, UNAVAILABLE);
    assert.match(String(r1.log?.rspamd_error), /^PROTOCOL/);
    const clamd = clamdConfigSchema.parse({ address: `127.0.0.1:${spamd.port}`, timeout: '10s' });
    const r2 = await scanWithClamd(clamd, msg, silentLogger);
    assert.equal(r2.action, 'tempfail', JSON.stringify(r2));
    assert.match(String(r2.log?.clamd_error), /^PROTOCOL/);
  });

  it('tempfails with 451 4.7.1 when spamd is stopped, and accepts with default_action: accept', async () => {
    const msg = await inboundMessage(work, 'down', plainMessage('gtube', GTUBE));
    const addresses = [config.address, `127.0.0.1:${await freePort()}`];
    await spamd.stop();
    for (const address of addresses) {
      const [r] = await runScanners({ spamd: { ...config, address } }, msg, silentLogger);
      assert.equal(r?.action, 'tempfail', JSON.stringify(r));
      assert.deepEqual(r?.status, UNAVAILABLE);
      assert.match(String(r?.log?.spamd_error), /^CONNECT/);
      const [accepted] = await runScanners({ spamd: { ...config, address, default_action: 'accept' } }, msg, silentLogger);
      assert.equal(accepted?.action, 'accept');
    }
  });
});
