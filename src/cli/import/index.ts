/**
 * `maild import --postfix DIR --dovecot DIR [--output FILE]`: prints (or writes) a maild.yaml
 * equivalent to an existing Postfix + Dovecot installation and names on stderr what it could
 * not carry over. Exit codes: 0 written, 1 unreadable or unusable input, 64 usage.
 */
import { writeFileSync } from 'node:fs';
import { DovecotConfigError } from './dovecot-conf.js';
import { diskFiles } from './files.js';
import { generateConfig, ImportError } from './generate.js';

export interface ImportIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface ImportArgs {
  postfix?: string;
  dovecot?: string;
  output?: string;
}

export function runImport(args: ImportArgs, io: ImportIo): number {
  if (!args.postfix && !args.dovecot) return 64;
  let result;
  try {
    result = generateConfig({
      ...(args.postfix ? { postfixDir: args.postfix } : {}),
      ...(args.dovecot ? { dovecotDir: args.dovecot } : {}),
      files: diskFiles,
    });
  } catch (err) {
    if (err instanceof ImportError || err instanceof DovecotConfigError) {
      io.stderr.write(`maild import: ${err.message}\n`);
      return 1;
    }
    if ((err as NodeJS.ErrnoException).code) {
      io.stderr.write(`maild import: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
  if (args.output) {
    // 0644: the file holds no secret (the database password stays in the environment).
    writeFileSync(args.output, result.yaml, { mode: 0o644 });
    io.stderr.write(`maild import: wrote ${args.output}\n`);
  } else io.stdout.write(result.yaml);
  for (const n of result.notCarried) io.stderr.write(`maild import: not carried over: ${n}\n`);
  if (result.databasePassword !== undefined)
    io.stderr.write("maild import: set MAILD_DB_PASSWORD in maild's environment to the database password of the files read\n");
  return 0;
}
