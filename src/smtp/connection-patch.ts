/**
 * Behaviours smtp-server has no option for, added at its single reply choke point
 * (SMTPConnection.send). smtp-server is pinned to an exact version because of this; the
 * protocol tests cover both behaviours, so an upgrade that breaks them fails CI.
 *
 * 1. Exact enhanced status codes (RFC 3463). smtp-server derives the enhanced code from the
 *    reply code alone (554 -> 5.6.0, 452 -> 4.2.2), but a relay refusal is 554 5.7.1 and a
 *    disk error 452 4.3.1. Reply texts of ours start with their enhanced code; for those the
 *    derived one is suppressed and ours is sent as written.
 * 2. An error limit (Postfix's smtpd_hard_error_limit): after `maildErrorLimit` 4xx/5xx replies
 *    without a delivery, the session ends with 421. A "452 4.5.3 too many recipients" is not an
 *    error until a transaction has had `maildRecipientOvershoot` of them (Postfix's
 *    smtpd_recipient_overshoot_limit): a sender with more recipients than the limit sends them
 *    all, gets DATA through to the accepted ones and retries the rest in a new transaction.
 * 3. Reply coalescing: the replies to pipelined commands (RFC 2920) leave in one write, as
 *    Postfix flushes only once it has answered what the client sent. Each reply corks the socket
 *    until the end of the current event-loop turn; a write costs a syscall on loopback and LAN.
 * 4. AUTH per connection (RFC 4954 section 4, RFC 6409 section 4.3): smtp-server offers AUTH in
 *    EHLO before STARTTLS and answers a premature AUTH with a non-standard 538. With the
 *    `maildAuthAllowed(session)` option set (submission listeners), EHLO lists AUTH only when it
 *    returns true (inside TLS, or cleartext from a trusted network when allowed), and AUTH
 *    otherwise gets Postfix's "530 5.7.0 Must issue a STARTTLS command first" (and
 *    `maildAuthRefused(session)` is told, for the log).
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const EXPLICIT_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

interface PatchedConnection {
  __maildErrors?: number;
  /** Recipients refused as too many in the transaction `__maildOvershootEnvelope`. */
  __maildOvershoot?: number;
  __maildOvershootEnvelope?: unknown;
  __maildClosing?: boolean;
  __maildCorked?: boolean;
  _socket?: { cork(): void; uncork(): void; destroyed: boolean; writableCorked: number };
  _upgrading?: boolean;
  _server: {
    options: {
      maildErrorLimit?: number;
      maildRecipientOvershoot?: number;
      maildAuthAllowed?: (session: unknown) => boolean;
      maildAuthRefused?: (session: unknown) => void;
      authMethods: string[];
    };
  };
  session: { envelope?: unknown };
  send(code: number, data?: string | string[] | null, context?: string | false): void;
}

type Handler = (this: PatchedConnection, command: Buffer | string, callback: () => void) => void;

function corkUntilNextTurn(conn: PatchedConnection): void {
  const socket = conn._socket;
  if (conn.__maildCorked || !socket || socket.destroyed || conn._upgrading) return;
  conn.__maildCorked = true;
  socket.cork();
  setImmediate(() => {
    conn.__maildCorked = false;
    // Uncork every level: a socket that was swapped (STARTTLS) or ended has nothing held back.
    while (socket.writableCorked > 0) socket.uncork();
  });
}

/**
 * Whether this too-many-recipients reply counts as an error: only beyond the overshoot limit of
 * its transaction. smtp-server gives every transaction (MAIL after RSET, EHLO or DATA) a new
 * envelope object, which is what resets the count.
 */
function overshootCounts(conn: PatchedConnection): boolean {
  const envelope = conn.session.envelope;
  if (conn.__maildOvershootEnvelope !== envelope) {
    conn.__maildOvershootEnvelope = envelope;
    conn.__maildOvershoot = 0;
  }
  conn.__maildOvershoot = (conn.__maildOvershoot ?? 0) + 1;
  return conn.__maildOvershoot > (conn._server.options.maildRecipientOvershoot ?? 0);
}

let applied = false;

export function applyConnectionPatch(): void {
  if (applied) return;
  applied = true;
  const proto = SMTPConnection.prototype as unknown as {
    send: (code: number, data?: string | string[] | null, context?: string | false) => void;
  };
  const original = proto.send;
  proto.send = function patchedSend(this: PatchedConnection, code, data, context) {
    const explicit = typeof data === 'string' && EXPLICIT_CODE.test(data);
    corkUntilNextTurn(this);
    original.call(this, code, data, explicit ? false : context);
    const limit = this._server.options.maildErrorLimit;
    if (!limit || code === 421 || this.__maildClosing) return;
    if (code === 452 && context === 'TOO_MANY_RECIPIENTS' && !overshootCounts(this)) return;
    if (code >= 400) {
      this.__maildErrors = (this.__maildErrors ?? 0) + 1;
      if (this.__maildErrors >= limit) {
        this.__maildClosing = true;
        original.call(this, 421, '4.7.0 Too many errors, closing connection', false);
      }
    } else if (code === 250 && context === 'DATA_OK') {
      this.__maildErrors = 0;
    }
  };

  const handlers = SMTPConnection.prototype as unknown as { handler_EHLO: Handler; handler_AUTH: Handler };
  const ehlo = handlers.handler_EHLO;
  handlers.handler_EHLO = function patchedEhlo(this: PatchedConnection, command, callback) {
    const options = this._server.options;
    if (!options.maildAuthAllowed || options.maildAuthAllowed(this.session)) return ehlo.call(this, command, callback);
    // handler_EHLO is synchronous: the mechanism list is hidden for this one reply only.
    const methods = options.authMethods;
    options.authMethods = [];
    try {
      ehlo.call(this, command, callback);
    } finally {
      options.authMethods = methods;
    }
  };
  const auth = handlers.handler_AUTH;
  handlers.handler_AUTH = function patchedAuth(this: PatchedConnection, command, callback) {
    const { maildAuthAllowed: allowed, maildAuthRefused: refused } = this._server.options;
    if (allowed && !allowed(this.session)) {
      refused?.(this.session);
      this.send(530, '5.7.0 Must issue a STARTTLS command first');
      return callback();
    }
    return auth.call(this, command, callback);
  };
}
