/**
 * A command of the protocol and the connection states it is allowed in. The client must say
 * VERSION first and CPID second (Dovecot disconnects a client that does otherwise); AUTH and
 * CONT come after.
 */
import type { DovecotAuthSession } from './session.js';

export type HandshakeState = 'version' | 'cpid' | 'ready';

export interface DovecotAuthCommand {
  name: string;
  states: readonly HandshakeState[];
  /** Runs the command on the fields after its name; throws ProtocolViolation or RequestFailed. */
  run(session: DovecotAuthSession, fields: string[]): void;
}
