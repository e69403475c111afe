import { decodeBase64 } from '../../auth/login.js';
import type { DovecotAuthCommand } from '../command.js';
import { ProtocolViolation, RequestFailed } from '../errors.js';
import { isRequestId } from '../wire.js';

/**
 * CONT <id> <base64>: the client's answer to our CONT challenge. An id that is not pending
 * (timed out, or never started) gets FAIL, as Dovecot answers; a CONT while the password is
 * being checked breaks the protocol.
 */
export const cont: DovecotAuthCommand = {
  name: 'CONT',
  states: ['ready'],
  run(session, fields) {
    const [id, data] = fields;
    if (id === undefined || !isRequestId(id)) throw new ProtocolViolation('CONT without a valid request id');
    const request = session.requests.get(id);
    if (!request) throw new RequestFailed('UNKNOWN_REQUEST');
    if (request.checking) throw new ProtocolViolation(`CONT for request ${id} while its password is being checked`);
    const response = decodeBase64(data ?? '');
    if (!response) {
      session.end(request);
      throw new RequestFailed('INVALID_BASE64');
    }
    session.advance(request, response);
  },
};
