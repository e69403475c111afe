/** The command table: name -> module (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH). */
import type { Pop3Command } from '../command.js';
import { auth } from './auth.js';
import { capa } from './capa.js';
import { dele } from './dele.js';
import { list } from './list.js';
import { noop } from './noop.js';
import { pass } from './pass.js';
import { quit } from './quit.js';
import { retr } from './retr.js';
import { rset } from './rset.js';
import { stat } from './stat.js';
import { stls } from './stls.js';
import { top } from './top.js';
import { uidl } from './uidl.js';
import { user } from './user.js';

export function pop3Commands(): Map<string, Pop3Command> {
  const all = [capa, user, pass, auth, stls, quit, stat, list, retr, dele, noop, rset, top, uidl];
  return new Map(all.map((c) => [c.name, c]));
}
