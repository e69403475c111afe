/** The command table: name -> module (RFC 5804 section 2). */
import type { ManageSieveCommand } from '../command.js';
import { authenticate } from './authenticate.js';
import { capability } from './capability.js';
import { checkscript } from './checkscript.js';
import { deletescript } from './deletescript.js';
import { getscript } from './getscript.js';
import { havespace } from './havespace.js';
import { listscripts } from './listscripts.js';
import { logout } from './logout.js';
import { noop } from './noop.js';
import { putscript } from './putscript.js';
import { renamescript } from './renamescript.js';
import { setactive } from './setactive.js';
import { starttls } from './starttls.js';
import { unauthenticate } from './unauthenticate.js';

export function manageSieveCommands(): Map<string, ManageSieveCommand> {
  const all = [
    capability,
    starttls,
    authenticate,
    logout,
    noop,
    unauthenticate,
    havespace,
    putscript,
    checkscript,
    listscripts,
    setactive,
    getscript,
    deletescript,
    renamescript,
  ];
  return new Map(all.map((c) => [c.name, c]));
}
