/**
 * Implicit TLS (RFC 8314 section 3.3) on a socket handed over by the socket front: the handshake
 * comes first, the protocol's greeting only once it has completed. Bytes already read past a
 * PROXY header (the start of the ClientHello) are in the socket's buffer and reach the handshake.
 */
import type net from 'node:net';
import tls from 'node:tls';

/** How long a client may take to complete the handshake. */
const TLS_HANDSHAKE_TIMEOUT_MS = 30_000;

export interface ImplicitTls {
  /** The TLS socket; destroy this one (never the raw socket) to abandon the handshake. */
  socket: tls.TLSSocket;
  /** Resolves once the handshake has completed; rejects (the socket destroyed) when it fails. */
  secured: Promise<void>;
}

export function implicitTls(raw: net.Socket, secureContext: tls.SecureContext, timeoutMs = TLS_HANDSHAKE_TIMEOUT_MS): ImplicitTls {
  const socket = new tls.TLSSocket(raw, { isServer: true, secureContext, requestCert: false, rejectUnauthorized: false });
  const secured = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('TLS handshake timed out')), timeoutMs);
    const onClose = () => fail(new Error('connection closed during the TLS handshake'));
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('error', fail);
      socket.off('close', onClose);
    };
    function fail(err: Error): void {
      cleanup();
      socket.on('error', () => undefined);
      socket.destroy();
      reject(err);
    }
    socket.once('error', fail);
    socket.once('close', onClose);
    socket.once('secure', () => {
      cleanup();
      resolve();
    });
  });
  return { socket, secured };
}
