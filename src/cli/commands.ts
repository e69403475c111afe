/**
 * Administrative commands. Each returns a process exit code: 0 success, 1 failure or "not
 * found" (as postmap -q), 64 usage error, 75 temporary failure (EX_TEMPFAIL: database down).
 */
import { Writable, type Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { parseDuration, parseSize, type PasswordScheme } from '../config/schema.js';
import { Directory } from '../directory/directory.js';
import { openBackend, type Backend } from '../directory/open.js';
import { PasswordService } from '../directory/passwords/index.js';
import type { MysqlDirectory } from '../directory/mysql-backend.js';
import { isMailError } from '../errors.js';
import { generateKey } from '../queue/dkim.js';
import { QueueUsageError, runQueueCommand } from './queue.js';
import { silentLogger } from '../log.js';
import { resolveConfigPath, SYSTEM_CONFIG_PATH } from '../paths.js';
import { dropPrivileges, planPrivileges } from '../privileges/account.js';
import { prepareDirectories } from '../privileges/directories.js';
import { maildirPath } from '../store/maildir.js';

export interface CliIo {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = `usage: maild [--config PATH] COMMAND ...

  serve                                   run the server (same as npm start)
  domain add DOMAIN [--alias-for DOMAIN]  add a domain, or an alias domain of another
  domain list
  domain del DOMAIN [--force]             --force also deletes its users and aliases
  user add EMAIL [--quota SIZE] [--disabled] [--scheme SCHEME]
  user passwd EMAIL [--scheme SCHEME]     the password is read from a prompt, or from stdin
  user quota EMAIL SIZE                   e.g. 2G, 500M, 0 for unlimited
  user disable EMAIL | user enable EMAIL
  user list [DOMAIN]
  user del EMAIL
  alias add SOURCE DESTINATION...         SOURCE may be @domain (catch-all)
  alias list [DOMAIN]
  alias del SOURCE [DESTINATION]
  pw [-s SCHEME] [-p PASSWORD]            hash a password, like doveadm pw
  lookup ADDRESS                          what an address resolves to, like postmap -q
  migrate                                 create or upgrade the MySQL schema (idempotent)
  check-config                            print the effective configuration, secrets masked;
                                          run each MySQL query once (exit 1: one cannot run, 75: MySQL unreachable)
  queue list                              the outbound queue, like postqueue -p (! marks held messages)
  queue flush [ID]                        try every deferred message (or one) now, like postqueue -f / -i
  queue delete ID|ALL                     remove without notice, like postsuper -d
  queue hold ID | queue release ID        keep a message from delivery until released (postsuper -h / -H)
  dkim generate DOMAIN [--selector S]     create a DKIM key and print the DNS TXT record to publish
  init --hostname HOST --domain DOMAIN [--user EMAIL] [--listen ADDRESS] [--container]
       [--data-dir DIR] [--mail-root DIR]
                                          write a first configuration (never over an existing one) and
                                          a directory with one user; prints its random password once
  health [--timeout SECONDS]              exit 0 when the running daemon answers, 1 otherwise
  sieve check FILE                        compile a Sieve script; errors with their lines (exit 1)
  sieve list EMAIL | sieve activate EMAIL [NAME]
                                          a user's scripts (ACTIVE marked), or activate one (none: deactivate)
  sieve test SCRIPT MESSAGE [--from A] [--to B]
                                          the actions a script takes on a message, printed as
                                          Pigeonhole's sieve-test prints them
  import --postfix DIR --dovecot DIR [--output FILE]
                                          write a maild.yaml from a Postfix + Dovecot installation
                                          (/etc/postfix, /etc/dovecot); names what it cannot carry over

The configuration is --config PATH, else $MAILD_CONFIG, else /etc/maild/maild.yaml; in the repository,
npm start and npm run maild use config/quickstart.yaml. Commands that change something name the file.
Schemes: ARGON2ID (default), ARGON2I, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, SSHA512.
`;

class UsageError extends Error {}

const CONFIG_LOOKUP = `the configuration is --config PATH, else $MAILD_CONFIG, else ${SYSTEM_CONFIG_PATH} (in the repository, npm start and npm run maild use config/quickstart.yaml)`;

/** Commands that change the directory, the database schema, DKIM keys or the queue. */
function writesSomething(command: string, sub: string | undefined): boolean {
  switch (command) {
    case 'migrate':
      return true;
    case 'domain':
    case 'alias':
      return sub === 'add' || sub === 'del';
    case 'user':
      return sub !== undefined && sub !== 'list';
    case 'sieve':
      return sub === 'activate';
    case 'dkim':
      return sub === 'generate';
    case 'queue':
      return sub !== undefined && sub !== 'list';
    default:
      return false;
  }
}

const SCHEMES = new Set(['ARGON2ID', 'ARGON2I', 'SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT', 'SSHA512']);

function scheme(value: string | undefined, fallback: PasswordScheme): PasswordScheme {
  if (value === undefined) return fallback;
  const s = value.toUpperCase();
  if (!SCHEMES.has(s)) throw new UsageError(`unknown scheme ${value}; one of ${[...SCHEMES].join(', ')}`);
  return s as PasswordScheme;
}

/** Reads a password: from a prompt without echo on a terminal (asked twice), else the first line of stdin. */
async function readPassword(io: CliIo, confirm: boolean): Promise<string> {
  if (io.stdin.isTTY) {
    const ask = async (prompt: string) => {
      let muted = false;
      const output = new Writable({
        write(chunk, _enc, cb) {
          if (!muted) io.stderr.write(chunk);
          cb();
        },
      });
      const rl = createInterface({ input: io.stdin, output, terminal: true });
      const answer = new Promise<string>((resolve) => rl.question(prompt, resolve));
      muted = true;
      const value = await answer;
      rl.close();
      io.stderr.write('\n');
      return value;
    };
    const first = await ask('Password: ');
    if (confirm && (await ask('Retype password: ')) !== first) throw new UsageError('the passwords do not match');
    if (!first) throw new UsageError('empty password');
    return first;
  }
  const rl = createInterface({ input: io.stdin });
  for await (const line of rl) {
    rl.close();
    if (!line) throw new UsageError('empty password on stdin');
    return line;
  }
  throw new UsageError('no password on stdin');
}

function need(positionals: string[], n: number, what: string): string[] {
  if (positionals.length < n) throw new UsageError(`missing ${what}`);
  return positionals;
}

export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const out = (line = '') => io.stdout.write(`${line}\n`);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'alias-for': { type: 'string' },
        force: { type: 'boolean' },
        quota: { type: 'string' },
        disabled: { type: 'boolean' },
        scheme: { type: 'string', short: 's' },
        password: { type: 'string', short: 'p' },
        selector: { type: 'string' },
        postfix: { type: 'string' },
        dovecot: { type: 'string' },
        output: { type: 'string', short: 'o' },
        hostname: { type: 'string' },
        domain: { type: 'string' },
        user: { type: 'string' },
        listen: { type: 'string' },
        container: { type: 'boolean' },
        'data-dir': { type: 'string' },
        'mail-root': { type: 'string' },
        timeout: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    io.stderr.write(`maild: ${(err as Error).message}\n\n${USAGE}`);
    return 64;
  }
  const { values: opts, positionals } = parsed;
  const [command, sub, ...rest] = positionals;
  if (!command || opts.help || command === 'help') {
    io.stdout.write(USAGE);
    return command || opts.help ? 0 : 64;
  }

  if (command === 'import') {
    // Needs no configuration: it writes one.
    if (sub !== undefined || (!opts.postfix && !opts.dovecot)) {
      io.stderr.write(`maild: import takes --postfix DIR and/or --dovecot DIR\n\n${USAGE}`);
      return 64;
    }
    const { runImport } = await import('./import/index.js');
    return runImport({ postfix: opts.postfix, dovecot: opts.dovecot, output: opts.output }, io);
  }

  if (command === 'sieve' && (sub === 'check' || sub === 'test')) {
    // Works on files: needs no configuration.
    const { sieveCheck, sieveTest } = await import('./sieve.js');
    if (sub === 'check' && rest.length === 1) return sieveCheck(rest[0]!, io);
    if (sub === 'test' && rest.length === 2)
      return sieveTest(
        rest[0]!,
        rest[1]!,
        { ...(opts.from !== undefined ? { from: opts.from } : {}), ...(opts.to ? { to: opts.to } : {}) },
        io,
      );
    io.stderr.write(`maild: sieve check FILE | sieve test SCRIPT MESSAGE\n\n${USAGE}`);
    return 64;
  }
  if (command === 'sieve' && !((sub === 'list' && rest.length === 1) || (sub === 'activate' && (rest.length === 1 || rest.length === 2)))) {
    io.stderr.write(`maild: sieve check FILE | sieve test SCRIPT MESSAGE | sieve list EMAIL | sieve activate EMAIL [NAME]\n\n${USAGE}`);
    return 64;
  }

  if (command === 'init') {
    // Writes the configuration, so it reads none.
    const { runInit, InitUsageError } = await import('./init.js');
    try {
      if (sub !== undefined) throw new InitUsageError(`init takes no argument ${sub}`);
      return await runInit(
        {
          configPath: resolveConfigPath(opts.config),
          hostname: opts.hostname,
          domain: opts.domain,
          user: opts.user,
          listen: opts.listen,
          container: opts.container ?? false,
          dataDir: opts['data-dir'],
          mailRoot: opts['mail-root'],
        },
        io,
      );
    } catch (err) {
      if (!(err instanceof InitUsageError)) throw err;
      io.stderr.write(`maild: ${err.message}\n\n${USAGE}`);
      return 64;
    }
  }

  let config: LoadedConfig;
  const configPath = resolveConfigPath(opts.config);
  try {
    config = loadConfig(configPath);
  } catch (err) {
    io.stderr.write(`maild: ${isMailError(err) ? `config error: ${err.message}` : String(err)}\n`);
    if (!opts.config) io.stderr.write(`maild: ${CONFIG_LOOKUP}\n`);
    return 1;
  }
  // A change written to a configuration the daemon does not read is a change lost: say which one.
  if (writesSomething(command, sub)) io.stderr.write(`maild: using ${config.configPath}\n`);
  // Run as root, a command that writes files (the directory file, DKIM keys, the spool) does it as
  // the account the daemon serves as, so the daemon can still read and rewrite them.
  // (Without user: it stays root, as before; only the daemon refuses to serve as root.)
  if (command !== 'check-config' && config.user !== undefined) {
    try {
      const plan = planPrivileges(config);
      if (plan.kind === 'drop') {
        await prepareDirectories(config, plan.account);
        dropPrivileges(plan.account);
      }
    } catch (err) {
      io.stderr.write(`maild: ${isMailError(err) ? `config error: ${err.message}` : String(err)}\n`);
      return 1;
    }
  }

  let backend: Backend | undefined;
  let passwords: PasswordService | undefined;
  const getPasswords = () =>
    (passwords ??= new PasswordService({ threads: 1, defaultScheme: config.passwords.default_scheme, newScheme: config.passwords.scheme }));
  const getBackend = async () => (backend ??= await openBackend(config.directory, silentLogger, { watch: false, createIfMissing: true }));

  try {
    switch (command) {
      case 'check-config': {
        const { checkConfig } = await import('./check-config.js');
        return await checkConfig(config, { out, note: (line) => io.stderr.write(`${line}\n`) });
      }
      case 'health': {
        const timeoutMs = parseDuration(opts.timeout ?? '5s');
        if (timeoutMs === undefined || timeoutMs === 0) throw new UsageError(`bad --timeout ${opts.timeout}`);
        const { runHealth } = await import('./health.js');
        return await runHealth(config, timeoutMs, io);
      }
      case 'pw': {
        const password = opts.password ?? (await readPassword(io, true));
        out(await getPasswords().hash(password, scheme(opts.scheme, config.passwords.scheme)));
        return 0;
      }
      case 'migrate': {
        if (config.directory.backend !== 'mysql')
          throw new UsageError('migrate applies to the mysql backend; this configuration uses the file backend');
        const db = (await getBackend()) as MysqlDirectory;
        const { applied } = await db.migrate();
        out(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
        return 0;
      }
      case 'sieve': {
        // list / activate: the user's scripts where ManageSieve and delivery find them.
        const user = await (await getBackend()).lookupUser(rest[0]!.toLowerCase());
        if (!user) {
          io.stderr.write(`maild: no mailbox ${rest[0]}\n`);
          return 1;
        }
        const { SieveScripts, resolveSieveLocation, sieveHome } = await import('../store/sieve-scripts.js');
        const home = sieveHome(config.mail.root, config.mail.layout, user);
        const quota = {
          maxScripts: config.managesieve.max_scripts,
          maxScriptSize: config.managesieve.max_script_size,
          maxStorage: config.managesieve.max_storage,
        };
        const scripts = new SieveScripts(home, quota, resolveSieveLocation(config.sieve.location, home, user));
        if (sub === 'list') {
          for (const s of await scripts.list()) out(`${s.name}${s.active ? '\tACTIVE' : ''}`);
          return 0;
        }
        try {
          await scripts.setActive(rest[1] ?? '');
        } catch (err) {
          io.stderr.write(`maild: ${(err as Error).message}\n`);
          return 1;
        }
        out(rest[1] ? `${rest[1]} is active for ${user.email}` : `no script is active for ${user.email}`);
        return 0;
      }
      case 'lookup': {
        const [address] = need(sub ? [sub] : [], 1, 'ADDRESS');
        const directory = new Directory(await getBackend(), {
          recipientDelimiter: config.directory.recipient_delimiter,
          cache: { positiveTtlMs: 0, negativeTtlMs: 0, maxEntries: 0 },
          passwords: getPasswords(),
          logger: silentLogger,
        });
        if (!address!.includes('@') || !(await directory.isLocalDomain(address!.split('@').pop()!))) {
          out(`${address}: not a hosted domain (mail would be relayed, if allowed)`);
          return 1;
        }
        const r = await directory.resolve(address!);
        for (const m of r.mailboxes) {
          out(
            `${m.email}\tmailbox\t${maildirPath(config.mail.root, config.mail.layout, m)}${m.quotaBytes ? `\tquota=${m.quotaBytes}` : ''}`,
          );
        }
        for (const remote of r.remote) out(`${remote}\tforward`);
        return 0;
      }
      case 'domain': {
        const db = await getBackend();
        if (sub === 'add') {
          const [domain] = need(rest, 1, 'DOMAIN');
          await db.addDomain(domain!, opts['alias-for']);
          out(`added domain ${domain!.toLowerCase()}${opts['alias-for'] ? ` (alias of ${opts['alias-for']})` : ''}`);
          return 0;
        }
        if (sub === 'list') {
          for (const d of await db.listDomains()) out(d.aliasFor ? `${d.name}\talias of ${d.aliasFor}` : d.name);
          return 0;
        }
        if (sub === 'del') {
          const [domain] = need(rest, 1, 'DOMAIN');
          await db.deleteDomain(domain!, opts.force ?? false);
          out(`deleted domain ${domain!.toLowerCase()}`);
          return 0;
        }
        throw new UsageError('domain add|list|del');
      }
      case 'user': {
        const db = await getBackend();
        switch (sub) {
          case 'add': {
            const [email] = need(rest, 1, 'EMAIL');
            const quota = opts.quota === undefined ? 0 : parseSize(opts.quota);
            if (quota === undefined) throw new UsageError(`bad quota ${opts.quota}`);
            const password = await readPassword(io, true);
            const hash = await getPasswords().hash(password, scheme(opts.scheme, config.passwords.scheme));
            await db.addUser({ email: email!, password: hash, quotaBytes: quota, enabled: !opts.disabled });
            out(`added user ${email!.toLowerCase()}`);
            return 0;
          }
          case 'passwd': {
            const [email] = need(rest, 1, 'EMAIL');
            const password = await readPassword(io, true);
            await db.updateUser(email!, { password: await getPasswords().hash(password, scheme(opts.scheme, config.passwords.scheme)) });
            out(`password of ${email!.toLowerCase()} changed`);
            return 0;
          }
          case 'quota': {
            const [email, size] = need(rest, 2, 'EMAIL SIZE');
            const quota = parseSize(size);
            if (quota === undefined) throw new UsageError(`bad quota ${size}`);
            await db.updateUser(email!, { quotaBytes: quota });
            out(`quota of ${email!.toLowerCase()} set to ${quota ? `${quota} bytes` : 'unlimited'}`);
            return 0;
          }
          case 'disable':
          case 'enable': {
            const [email] = need(rest, 1, 'EMAIL');
            await db.updateUser(email!, { enabled: sub === 'enable' });
            out(`${email!.toLowerCase()} ${sub}d`);
            return 0;
          }
          case 'list': {
            for (const u of await db.listUsers(rest[0])) {
              out(`${u.email}\t${u.enabled ? 'enabled' : 'disabled'}\t${u.quotaBytes ? `quota=${u.quotaBytes}` : 'quota=unlimited'}`);
            }
            return 0;
          }
          case 'del': {
            const [email] = need(rest, 1, 'EMAIL');
            await db.deleteUser(email!);
            out(`deleted user ${email!.toLowerCase()} (the Maildir is left on disk)`);
            return 0;
          }
        }
        throw new UsageError('user add|passwd|quota|disable|enable|list|del');
      }
      case 'alias': {
        const db = await getBackend();
        if (sub === 'add') {
          const [source, ...destinations] = need(rest, 2, 'SOURCE DESTINATION');
          for (const d of destinations) await db.addAlias(source!, d);
          out(`added ${source!.toLowerCase()} -> ${destinations.join(', ')}`);
          return 0;
        }
        if (sub === 'list') {
          for (const a of await db.listAliases(rest[0])) out(`${a.source}\t${a.destination}`);
          return 0;
        }
        if (sub === 'del') {
          const [source, destination] = need(rest, 1, 'SOURCE');
          await db.deleteAlias(source!, destination);
          out(`deleted ${source!.toLowerCase()}${destination ? ` -> ${destination}` : ''}`);
          return 0;
        }
        throw new UsageError('alias add|list|del');
      }
      case 'dkim': {
        if (sub !== 'generate') throw new UsageError('dkim generate DOMAIN [--selector S]');
        const [domain] = need(rest, 1, 'DOMAIN');
        // keys_dir was made absolute (relative to the configuration file) when the config was loaded.
        const dir = config.dkim.keys_dir!;
        const key = await generateKey(dir, domain!, opts.selector ?? config.dkim.selector);
        out(`private key: ${key.path}`);
        out('publish this DNS TXT record:');
        out(`  name:  ${key.name}`);
        out(`  value: ${key.record}`);
        out('zone file line:');
        out(key.zone);
        return 0;
      }
      case 'queue': {
        try {
          return await runQueueCommand(positionals.slice(1), config, io);
        } catch (err) {
          if (err instanceof QueueUsageError) throw new UsageError(err.message);
          throw err;
        }
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`maild: ${err.message}\n\n${USAGE}`);
      return 64;
    }
    if (isMailError(err)) {
      io.stderr.write(`maild: ${err.message}\n`);
      return err.code === 'TEMP_FAIL' ? 75 : 1;
    }
    io.stderr.write(`maild: ${(err as Error).stack ?? err}\n`);
    return 1;
  } finally {
    await backend?.close();
    await passwords?.close();
  }
}
