/** The command table: name -> module (RFC 3501 section 6 and the extensions in capabilities()). */
import type { ImapCommand } from '../command.js';
import { append } from './append.js';
import { authenticate } from './authenticate.js';
import { capability } from './capability.js';
import { check, close, unselect } from './close.js';
import { copy, move, uidCopy, uidMove } from './copy.js';
import { create } from './create.js';
import { deleteMailbox } from './delete.js';
import { enable } from './enable.js';
import { expunge, uidExpunge } from './expunge.js';
import { id } from './id.js';
import { idle } from './idle.js';
import { listCommand, lsub } from './list.js';
import { login } from './login.js';
import { logout } from './logout.js';
import { namespace } from './namespace.js';
import { noop } from './noop.js';
import { getQuota, getQuotaRoot, setQuota } from './quota.js';
import { rename } from './rename.js';
import { examine, select } from './select.js';
import { fetch, uidFetch } from './fetch.js';
import { search, uidSearch } from './search.js';
import { starttls } from './starttls.js';
import { status } from './status.js';
import { store, uidStore } from './store.js';
import { subscribe, unsubscribe } from './subscribe.js';

export function commandTable(extra: ImapCommand[] = []): Map<string, ImapCommand> {
  const all: ImapCommand[] = [
    capability,
    noop,
    logout,
    starttls,
    authenticate,
    login,
    id,
    enable,
    namespace,
    select,
    examine,
    create,
    deleteMailbox,
    rename,
    subscribe,
    unsubscribe,
    listCommand,
    lsub,
    status,
    append,
    check,
    close,
    unselect,
    expunge,
    uidExpunge,
    store,
    uidStore,
    copy,
    uidCopy,
    move,
    uidMove,
    idle,
    getQuota,
    getQuotaRoot,
    setQuota,
    fetch,
    uidFetch,
    search,
    uidSearch,
    ...extra,
  ];
  return new Map(all.map((c) => [c.name, c]));
}
