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
 * 5. Deadlines. smtp-server only has an idle timeout per read, which a client sending a byte
 *    every few seconds never meets. DATA may last `maildDataTimeout` plus one second for every
 *    `maildDataMinRate` bytes received (Postfix's smtpd_min_data_rate idea: an honest transfer
 *    at that rate or faster always makes it, a trickle is cut). A session may last
 *    `maildSessionTimeout`; past it, it ends at once if it waits for a command, otherwise as soon
 *    as the command or DATA in progress has been answered. Either ends with "421 4.4.2" (RFC
 *    3463: timeout), `maildTimedOut(session, what)` is told, and the connection is closed; a
 *    message cut off this way is never acknowledged, and the stream that the store or queue
 *    reads fails at once, so nothing of it is kept.
 */
import { Readable } from 'node:stream';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Status } from '../status.js';
import { DATA_TIMEOUT, SESSION_TIMEOUT, STARTTLS_FIRST, TOO_MANY_ERRORS, replyText } from './replies.js';

/** A reply text of ours (replyText in replies.ts): smtp-server passes only the text on to send(). */
const EXPLICIT_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

interface PatchedConnection {
  __maildErrors?: number;
  __maildSessionTimer?: NodeJS.Timeout;
  __maildSessionExpired?: boolean;
  __maildDataTimer?: NodeJS.Timeout;
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
      maildDataTimeout?: number;
      maildDataMinRate?: number;
      maildSessionTimeout?: number;
      maildTimedOut?: (session: unknown, what: 'data' | 'session', dataBytes?: number) => void;
      authMethods: string[];
    };
  };
  _closing?: boolean;
  _handlerPending?: boolean;
  _dataStream?: unknown;
  _parser?: { _dataMode: boolean; dataBytes: number } | false;
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

/**
 * Ends the session with a 421 4.4.2. smtp-server's close() ends the socket (and destroys it
 * after its half-close timeout if the client keeps its side open); a message being received is
 * failed at once, as smtp-server fails it when the client goes away, so the store or the queue
 * removes what it wrote of it.
 */
function timeOut(conn: PatchedConnection, reply: Status, what: 'data' | 'session'): void {
  if (conn._closing || conn.__maildClosing) return;
  conn.__maildClosing = true;
  const parser = conn._parser;
  conn._server.options.maildTimedOut?.(conn.session, what, what === 'data' && parser ? parser.dataBytes : undefined);
  conn.send(reply.code, replyText(reply)); // a 421 closes the connection
  const stream = conn._dataStream;
  if (stream instanceof Readable && !stream.destroyed && !stream.readableEnded) {
    const err = Object.assign(new Error('DATA deadline passed before the message was received in full'), { code: 'ETIMEDOUT' });
    stream.destroy(stream.listenerCount('error') ? err : undefined);
  }
}

function clearDeadlines(conn: PatchedConnection): void {
  clearTimeout(conn.__maildSessionTimer);
  clearTimeout(conn.__maildDataTimer);
}

/** Past the session deadline: ends the session once it waits for the client. */
function sessionExpired(conn: PatchedConnection): void {
  conn.__maildSessionExpired = true;
  if (conn._closing) return;
  if (conn._handlerPending || conn._dataStream) {
    // A command or a DATA (bounded by its own deadline) is in progress: look again shortly.
    conn.__maildSessionTimer = setTimeout(() => sessionExpired(conn), 1000);
    conn.__maildSessionTimer.unref();
    return;
  }
  timeOut(conn, SESSION_TIMEOUT, 'session');
}

/** Arms the DATA deadline: `timeout` from now plus a second per `minRate` bytes received. */
function armDataDeadline(conn: PatchedConnection): void {
  const { maildDataTimeout: timeout, maildDataMinRate: minRate } = conn._server.options;
  const parser = conn._parser;
  if (!timeout || !parser || !conn._dataStream) return;
  const started = Date.now();
  const check = () => {
    if (conn._closing || conn._parser !== parser || !parser._dataMode) return; // the message is in
    const earned = minRate ? (parser.dataBytes * 1000) / minRate : 0;
    const left = started + timeout + earned - Date.now();
    if (left <= 0) return timeOut(conn, DATA_TIMEOUT, 'data');
    conn.__maildDataTimer = setTimeout(check, left);
    conn.__maildDataTimer.unref();
  };
  clearTimeout(conn.__maildDataTimer);
  conn.__maildDataTimer = setTimeout(check, timeout);
  conn.__maildDataTimer.unref();
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
        original.call(this, TOO_MANY_ERRORS.code, replyText(TOO_MANY_ERRORS), false);
      }
    } else if (code === 250 && context === 'DATA_OK') {
      this.__maildErrors = 0;
    }
  };

  const lifecycle = SMTPConnection.prototype as unknown as {
    init(this: PatchedConnection): void;
    _onClose(this: PatchedConnection): void;
    _onCommand(this: PatchedConnection, command: Buffer, callback?: () => void): void;
    handler_DATA: Handler;
  };
  const init = lifecycle.init;
  lifecycle.init = function patchedInit(this: PatchedConnection) {
    const ms = this._server.options.maildSessionTimeout;
    if (ms) {
      this.__maildSessionTimer = setTimeout(() => sessionExpired(this), ms);
      this.__maildSessionTimer.unref();
    }
    init.call(this);
  };
  const onClose = lifecycle._onClose;
  lifecycle._onClose = function patchedOnClose(this: PatchedConnection) {
    clearDeadlines(this);
    onClose.call(this);
  };
  const onCommand = lifecycle._onCommand;
  lifecycle._onCommand = function patchedOnCommand(this: PatchedConnection, command, callback) {
    // A command pipelined after the session deadline is not run.
    if (this.__maildSessionExpired) return timeOut(this, SESSION_TIMEOUT, 'session');
    onCommand.call(this, command, callback);
  };
  const data = lifecycle.handler_DATA;
  lifecycle.handler_DATA = function patchedData(this: PatchedConnection, command, callback) {
    data.call(this, command, callback);
    armDataDeadline(this);
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
      this.send(STARTTLS_FIRST.code, replyText(STARTTLS_FIRST));
      return callback();
    }
    return auth.call(this, command, callback);
  };
}
