import type { DovecotAuthCommand } from '../command.js';
import { auth } from './auth.js';
import { cont } from './cont.js';
import { cpid } from './cpid.js';
import { version } from './version.js';

export function dovecotAuthCommands(): ReadonlyMap<string, DovecotAuthCommand> {
  return new Map([version, cpid, auth, cont].map((c) => [c.name, c]));
}
