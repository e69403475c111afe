/**
 * The rspamd client against Debian's real rspamd 3.4 (normal worker, started by this file with a
 * temporary configuration; see test/helpers/scanner-daemons.ts). rspamd's GTUBE patterns drive
 * its actions: the standard GTUBE string is rspamd's `reject`, and with enable_test_patterns the
 * Y/Z variants give `add header` and `rewrite subject`. A multimap on the envelope sender gives
 * `soft reject` and `greylist`. There is no DNS here, so DNS-based symbols score about 7 on every
 * message: the score thresholds are raised so that a plain message is `no action`.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { rspamdConfigSchema, type RspamdConfig } from '../../src/inbound/scanners/config.js';
import { runScanners } from '../../src/inbound/scanners/index.js';
import { scanWithRspamd } from '../../src/inbound/scanners/rspamd.js';
import { silentLogger } from '../../src/log.js';
import { freePort, inboundMessage, messageDir, plainMessage, startRspamd, type ScannerDaemon } from '../helpers/scanner-daemons.js';

const GTUBE_TAIL = 'JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

let rspamd: ScannerDaemon;
let work: string;
let config: RspamdConfig;

function header(fields: [string, string][] | undefined, name: string): string | undefined {
  return fields?.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
}

describe('rspamd over its HTTP protocol (/checkv2)', () => {
  before(async () => {
    work = await messageDir();
    rspamd = await startRspamd({
      'local.d/options.inc': 'enable_test_patterns = true;\n',
      'local.d/actions.conf': 'reject = 150;\nadd_header = 100;\ngreylist = 80;\n',
      'local.d/multimap.conf': `
SOFT_SENDER { type = "from"; filter = "email:addr"; map = "$LOCAL_CONFDIR/soft.map"; prefilter = true; action = "soft reject"; message = "Sender on hold"; }
GREY_SENDER { type = "from"; filter = "email:addr"; map = "$LOCAL_CONFDIR/grey.map"; prefilter = true; action = "greylist"; }
`,
      'soft.map': 'soft@example.org\n',
      'grey.map': 'grey@example.org\n',
    });
    console.log(`rspamd answered /ping ${rspamd.startupMs} ms after spawn`);
    config = rspamdConfigSchema.parse({ url: `http://127.0.0.1:${rspamd.port}`, timeout: '20s' });
  });
  after(async () => {
    await rspamd?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("refuses GTUBE with 550 5.7.1 and rspamd's own message, and adds X-Spam and X-Spamd-Result", async () => {
    const msg = await inboundMessage(work, 'gtube', plainMessage('gtube', `X${GTUBE_TAIL}`));
    const r = await scanWithRspamd(config, msg, silentLogger);
    assert.equal(r.action, 'reject', JSON.stringify(r));
    assert.deepEqual(r.status, { code: 550, enhanced: '5.7.1', text: 'Gtube pattern' });
    assert.equal(header(r.addHeaders, 'X-Spam'), 'Yes');
    assert.match(header(r.addHeaders, 'X-Spamd-Result') ?? '', /^default: True \[[\d.]+ \/ 150\.00\];.* GTUBE\(/);
    assert.equal(r.log?.rspamd, 'reject');
  });

  it('accepts a plain message, with X-Rspamd-Score but no X-Spam, and passes the envelope', async () => {
    const to = 'bob@example.net, carol@example.net';
    const msg = await inboundMessage(work, 'plain', plainMessage('lunch', 'Lunch tomorrow at noon?', to), [
      'bob@example.net',
      'carol@example.net',
    ]);
    const r = await scanWithRspamd(config, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.equal(r.status, undefined);
    assert.equal(header(r.addHeaders, 'X-Spam'), undefined);
    assert.match(header(r.addHeaders, 'X-Rspamd-Score') ?? '', /^-?\d+\.\d\d$/);
    const result = header(r.addHeaders, 'X-Spamd-Result') ?? '';
    assert.match(result, /^default: False \[/);
    // Both Rcpt headers reached rspamd (with one, the To: field would match only SOME), and its
    // From header matched the envelope's From.
    assert.match(result, /TO_MATCH_ENVRCPT_ALL\(/);
    assert.match(result, /FROM_EQ_ENVFROM\(/);
  });

  it('files `add header` and `rewrite subject` into Junk', async () => {
    for (const [letter, action] of [
      ['Y', 'add header'],
      ['Z', 'rewrite subject'],
    ] as const) {
      const msg = await inboundMessage(work, `gtube-${letter}`, plainMessage(`pattern ${letter}`, `${letter}${GTUBE_TAIL}`));
      const r = await scanWithRspamd(config, msg, silentLogger);
      assert.equal(r.log?.rspamd, action, JSON.stringify(r));
      assert.equal(r.action, 'junk');
      assert.equal(header(r.addHeaders, 'X-Spam'), 'Yes');
    }
  });

  it("tempfails `soft reject` with 451 4.7.1 and the rule's message", async () => {
    const msg = await inboundMessage(work, 'soft', plainMessage('soft', 'Hello'));
    msg.envelope.sender = 'soft@example.org';
    const r = await scanWithRspamd(config, msg, silentLogger);
    assert.equal(r.action, 'tempfail', JSON.stringify(r));
    assert.deepEqual(r.status, { code: 451, enhanced: '4.7.1', text: 'Sender on hold' });
  });

  it('tempfails `greylist` by default and accepts it with greylist: accept', async () => {
    const msg = await inboundMessage(work, 'grey', plainMessage('grey', 'Hello'));
    msg.envelope.sender = 'grey@example.org';
    const r = await scanWithRspamd(config, msg, silentLogger);
    assert.equal(r.log?.rspamd, 'greylist', JSON.stringify(r));
    assert.equal(r.action, 'tempfail');
    assert.equal(r.status?.code, 451);
    assert.equal(r.status?.enhanced, '4.7.1');
    const accepting = await scanWithRspamd({ ...config, greylist: 'accept' }, msg, silentLogger);
    assert.equal(accepting.action, 'accept');
  });

  it('adds no header with add_headers: false', async () => {
    const msg = await inboundMessage(work, 'gtube-quiet', plainMessage('gtube', `X${GTUBE_TAIL}`));
    const r = await scanWithRspamd({ ...config, add_headers: false }, msg, silentLogger);
    assert.equal(r.action, 'reject');
    assert.equal(r.addHeaders, undefined);
  });

  it('passes a message over max_size unscanned', async () => {
    const msg = await inboundMessage(work, 'gtube-big', plainMessage('gtube', `X${GTUBE_TAIL}`));
    const r = await scanWithRspamd({ ...config, max_size: msg.size - 1 }, msg, silentLogger);
    assert.equal(r.action, 'accept', JSON.stringify(r));
    assert.equal(r.addHeaders, undefined);
    assert.equal(r.log?.rspamd, 'skipped (size)');
  });

  it('gives the default action when the worker hangs (SIGSTOP) past the timeout', async () => {
    const msg = await inboundMessage(work, 'hang', plainMessage('hang', 'Hello'));
    // The main process and its worker: stopping the whole group leaves the socket accepting, nobody answering.
    rspamd.signal('SIGSTOP');
    try {
      const r = await scanWithRspamd({ ...config, timeout: 500 }, msg, silentLogger);
      assert.equal(r.action, 'tempfail', JSON.stringify(r));
      assert.deepEqual(r.status, { code: 451, enhanced: '4.7.1', text: 'Content scanner unavailable, try again later' });
      assert.match(String(r.log?.rspamd_error), /^TIMEOUT/);
    } finally {
      rspamd.signal('SIGCONT');
    }
  });

  it('gives the default action for a missing message file, without throwing', async () => {
    const msg = await inboundMessage(work, 'gone', plainMessage('gone', 'Hello'));
    msg.file += '.missing';
    const r = await scanWithRspamd(config, msg, silentLogger);
    assert.equal(r.action, 'tempfail', JSON.stringify(r));
    assert.match(String(r.log?.rspamd_error), /^IO/);
  });

  it('tempfails with 451 4.7.1 when rspamd is stopped, and accepts with default_action: accept', async () => {
    const msg = await inboundMessage(work, 'down', plainMessage('down', 'Hello'));
    const port = rspamd.port;
    await rspamd.stop();
    for (const url of [`http://127.0.0.1:${port}`, `http://127.0.0.1:${await freePort()}`]) {
      const down = { ...config, url };
      const [r] = await runScanners({ rspamd: down }, msg, silentLogger);
      assert.equal(r?.action, 'tempfail', JSON.stringify(r));
      assert.deepEqual(r?.status, { code: 451, enhanced: '4.7.1', text: 'Content scanner unavailable, try again later' });
      assert.equal(r?.scanner, 'rspamd');
      const [accepted] = await runScanners({ rspamd: { ...down, default_action: 'accept' } }, msg, silentLogger);
      assert.equal(accepted?.action, 'accept');
      assert.equal(accepted?.log?.rspamd, 'unavailable');
    }
  });
});
