import type { DovecotAuthCommand } from '../command.js';
import { ProtocolViolation } from '../errors.js';

/** CPID <pid>: the client process's id (for the log), the end of the client's handshake. */
export const cpid: DovecotAuthCommand = {
  name: 'CPID',
  states: ['cpid'],
  run(session, fields) {
    const pid = fields[0];
    if (pid === undefined || !/^\d{1,10}$/.test(pid) || Number(pid) === 0) throw new ProtocolViolation('malformed CPID line');
    session.clientPid = Number(pid);
    session.handshake = 'ready';
  },
};
