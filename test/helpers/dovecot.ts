/**
 * Dovecot's own tools on a Maildir, for the tests that check Dovecot reads what maild wrote:
 * doveadm with a throwaway configuration and in-memory indexes (no daemon needed), so that only
 * the Maildir files can have told it anything. CI installs dovecot-core (.ci/run); without
 * doveadm these tests fail and say so, they are not skipped.
 */
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The path of doveadm, or '' when it is not installed. */
export const doveadmPath = await run('sh', ['-c', 'command -v doveadm']).then(
  (r) => r.stdout.trim(),
  () => '',
);

export const DOVEADM_MISSING =
  'doveadm is not installed: the Dovecot interop tests need the dovecot-core package (apt-get install dovecot-core; .ci/run installs it)';

/** Fails the calling test with a clear message when doveadm is missing. */
export function requireDoveadm(): string {
  if (!doveadmPath) throw new Error(DOVEADM_MISSING);
  return doveadmPath;
}

export interface Doveadm {
  /** `doveadm -f json ARGS...`, parsed. */
  json(...args: string[]): Promise<Array<Record<string, string>>>;
  /** `doveadm ARGS...` as a child process; resolves with its exit code. */
  spawn(args: string[]): Promise<number | null>;
  /** Gives a tree to the user doveadm runs as (after this process wrote into it). */
  chownTree(p: string): Promise<void>;
}

/** The uid/gid Dovecot runs mail processes as in the tests: nobody as root (Dovecot refuses root). */
export function dovecotIds(): { uid: number; gid: number } {
  const root = process.getuid!() === 0;
  return { uid: root ? 65534 : process.getuid!(), gid: root ? 65534 : process.getgid!() };
}

/** Hands a tree to Dovecot's user (as root only); files removed meanwhile are skipped. */
export async function chownForDovecot(p: string): Promise<void> {
  if (process.getuid!() !== 0) return;
  const { uid, gid } = dovecotIds();
  try {
    await chown(p, uid, gid);
    if ((await stat(p)).isDirectory()) for (const e of await readdir(p)) await chownForDovecot(path.join(p, e));
  } catch (err) {
    // e.g. a lock file maild just removed
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * A minimal dovecot.conf in `work` serving the Maildir `maildir` (Maildir++, "/" as separator,
 * in-memory indexes) with `extra` settings; returns its path.
 */
export async function writeDovecotConfig(work: string, maildir: string, extra: string[] = []): Promise<string> {
  const { uid, gid } = dovecotIds();
  const conf = path.join(work, 'dovecot.conf');
  await writeFile(
    conf,
    [
      `base_dir = ${work}/run`,
      `state_dir = ${work}/state`,
      'log_path = /dev/stderr',
      'ssl = no',
      'protocols =',
      `mail_uid = ${uid}`,
      `mail_gid = ${gid}`,
      'first_valid_uid = 1',
      'first_valid_gid = 1',
      'mailbox_list_index = no',
      `mail_location = maildir:${maildir}:LAYOUT=maildir++:INDEX=MEMORY`,
      ...extra,
      'namespace inbox {',
      '  inbox = yes',
      '  separator = /',
      '}',
      '',
    ].join('\n'),
  );
  return conf;
}

/**
 * doveadm for the Maildir at `root` (Maildir++ layout, '/' as the separator). Its configuration
 * and runtime directories go to `work` (by default the Maildir's parent). Dovecot refuses to
 * touch mail as root, so as root the tree is handed to nobody (65534), which root still reaches.
 */
export async function doveadmOn(root: string, work = path.dirname(root)): Promise<Doveadm> {
  const doveadm = requireDoveadm();
  await mkdir(work, { recursive: true });
  const conf = await writeDovecotConfig(work, root);
  await chmod(work, 0o755);
  await chownForDovecot(root);
  const env = { ...process.env, USER: 'fixture', HOME: work };
  return {
    json: async (...args: string[]) =>
      JSON.parse((await run(doveadm, ['-c', conf, '-f', 'json', ...args], { env })).stdout) as Array<Record<string, string>>,
    spawn: (args: string[]) => {
      const child = spawn(doveadm, ['-c', conf, ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
      return new Promise<number | null>((r) => child.on('exit', r));
    },
    chownTree: chownForDovecot,
  };
}
