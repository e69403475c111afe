import { decodeBase64 } from '../../auth/login.js';
import type { DovecotAuthCommand } from '../command.js';
import { ProtocolViolation, RequestFailed } from '../errors.js';
import { MECHANISMS } from '../mechanisms.js';
import { isRequestId, parseParams } from '../wire.js';

/**
 * AUTH <id> <mechanism> [params]: starts a request. Postfix sends
 * `AUTH id mech service=smtp nologin lip=.. rip=.. [secured] [resp=base64]`. A broken id or a
 * duplicate one breaks the protocol (the connection closes); anything else wrong fails only
 * this request. A password mechanism over a connection that is not `secured` is refused unless
 * auth.cleartext allows it for the client's address (`rip`), Dovecot's disable_plaintext_auth.
 */
export const auth: DovecotAuthCommand = {
  name: 'AUTH',
  states: ['ready'],
  run(session, fields) {
    const [id, mechanismName, ...rest] = fields;
    if (id === undefined || !isRequestId(id)) throw new ProtocolViolation('AUTH without a valid request id');
    if (session.requests.has(id)) throw new ProtocolViolation(`AUTH reuses the id ${id} of a request in progress`);
    if (mechanismName === undefined) throw new ProtocolViolation('AUTH without a mechanism');
    const params = parseParams(rest);
    if (session.requests.size >= session.settings.limits.pendingRequests) throw new RequestFailed('TOO_MANY_REQUESTS');
    const name = mechanismName.toUpperCase();
    const mechanism = MECHANISMS.get(name);
    if (!mechanism) throw new RequestFailed('UNSUPPORTED_MECHANISM');
    if (!params.values.get('service')) throw new RequestFailed('MISSING_SERVICE');
    if (mechanism.flags.includes('plaintext') && !session.passwordsAllowed(params)) throw new RequestFailed('PLAINTEXT_DISABLED');
    const resp = params.values.get('resp');
    let initial: Buffer | undefined;
    if (resp !== undefined) {
      initial = decodeBase64(resp);
      if (!initial) throw new RequestFailed('INVALID_BASE64');
    }
    session.begin({ id, mechanism: name, params, exchange: mechanism.start() }, initial);
  },
};
