/**
 * The SASL mechanisms offered: PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), both
 * flagged `plaintext` in the MECH lines so that Postfix's smtpd_sasl_security_options =
 * noplaintext can filter them, as with Dovecot. Each exchange is a small state machine fed the
 * client's decoded responses; it asks for more (a challenge) or yields the credentials.
 */
import { decodeSaslPlain } from '../auth/login.js';
import { RequestFailed } from './errors.js';

export interface Credentials {
  username: string;
  password: string;
  /** PLAIN's authorization identity ('' when absent). */
  authzid: string;
}

export type Step = { challenge: Buffer } | { credentials: Credentials };

export interface Exchange {
  /** The client's next response (the initial one first, when it gave one). */
  step(response: Buffer | undefined): Step;
}

class PlainExchange implements Exchange {
  step(response: Buffer | undefined): Step {
    // No initial response: an empty challenge asks for it (RFC 4616 section 2).
    if (response === undefined) return { challenge: Buffer.alloc(0) };
    const plain = decodeSaslPlain(response);
    if (!plain) throw new RequestFailed('MALFORMED_RESPONSE');
    return { credentials: plain };
  }
}

class LoginExchange implements Exchange {
  #username: string | undefined;
  step(response: Buffer | undefined): Step {
    if (response === undefined) return { challenge: Buffer.from('Username:') };
    if (this.#username === undefined) {
      this.#username = response.toString('utf8');
      return { challenge: Buffer.from('Password:') };
    }
    return { credentials: { username: this.#username, password: response.toString('utf8'), authzid: '' } };
  }
}

/** Mechanism name -> its flags for the MECH line and a fresh exchange. */
export const MECHANISMS: ReadonlyMap<string, { flags: string[]; start(): Exchange }> = new Map([
  ['PLAIN', { flags: ['plaintext'], start: () => new PlainExchange() }],
  ['LOGIN', { flags: ['plaintext'], start: () => new LoginExchange() }],
]);
