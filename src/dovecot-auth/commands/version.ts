import type { DovecotAuthCommand } from '../command.js';
import { ProtocolViolation } from '../errors.js';

/** The major version of the protocol spoken; minor versions are compatible. */
export const PROTOCOL_MAJOR = 1;

/**
 * VERSION <major> <minor>: the client's first line. A different major version is not
 * compatible, and the connection closes (as Dovecot does; Postfix checks ours the same way).
 */
export const version: DovecotAuthCommand = {
  name: 'VERSION',
  states: ['version'],
  run(session, fields) {
    const [major, minor] = fields;
    if (major === undefined || minor === undefined || !/^\d+$/.test(major) || !/^\d+$/.test(minor))
      throw new ProtocolViolation('malformed VERSION line');
    if (Number(major) !== PROTOCOL_MAJOR) throw new ProtocolViolation(`client speaks protocol version ${major}, not ${PROTOCOL_MAJOR}`);
    session.handshake = 'cpid';
  },
};
