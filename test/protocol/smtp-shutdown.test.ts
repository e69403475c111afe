/**
 * Graceful shutdown with SMTP sessions that stay open (RFC 5321 section 3.8): after
 * shutdown_timeout they get 421 and are disconnected, TLS sessions included, and the shutdown
 * completes; an idle client must not hold the daemon until its idle timeout.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startTestServer } from '../helpers/server.js';

describe('SMTP sessions at shutdown', () => {
  // The idle timeout is far beyond the test's own timeout: only the shutdown can end these sessions.
  it('closes idle MX, submission and LMTP sessions with 421 once shutdown_timeout has passed', { timeout: 20_000 }, async () => {
    const srv = await startTestServer({ config: { limits: { message_size: '1M', idle_timeout: '10m' }, shutdown_timeout: '1s' } });
    const sessions: SmtpClient[] = [];
    for (const [port, tls] of [
      [srv.smtpPort, true],
      [srv.submissionPort, true],
      [srv.lmtpPort, false],
    ] as const) {
      const c = await SmtpClient.connect(port);
      await c.greeting();
      await c.command(port === srv.lmtpPort ? 'LHLO client.example' : 'EHLO client.example');
      if (tls) assert.equal((await c.startTls()).code, 220);
      sessions.push(c);
    }
    const stopped = srv.stop();
    for (const c of sessions) {
      const r = await c.reply();
      assert.equal(r.code, 421, r.lines.join(' '));
      assert.ok(await c.waitClosed(5000), 'disconnected after the 421');
    }
    await stopped;
  });
});
