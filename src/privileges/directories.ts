/**
 * The directories maild writes (data_dir, mail root, spool, DKIM keys), made by the root phase
 * of the start for the account it drops to: a missing one is created, with its missing parents,
 * owned by that account (mode 0750). Existing ones are left as the operator made them; the start
 * after the drop then reports one the account cannot write.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Account } from './account.js';

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

async function prepareDirectory(dir: string, account: Account): Promise<void> {
  const missing: string[] = [];
  let at = path.resolve(dir);
  while (!(await exists(at))) {
    missing.unshift(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const d of missing) {
    await fs.mkdir(d, { mode: 0o750 });
    await fs.chown(d, account.uid, account.gid);
  }
}

export async function prepareDirectories(
  cfg: { data_dir: string; mail: { root: string }; queue: { dir?: string | undefined }; dkim: { keys_dir?: string | undefined } },
  account: Account,
): Promise<void> {
  for (const dir of [cfg.data_dir, cfg.mail.root, cfg.queue.dir, cfg.dkim.keys_dir]) {
    if (dir) await prepareDirectory(dir, account);
  }
}
