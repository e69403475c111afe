import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { MailError } from '../errors.js';
import { configSchema, type Config } from './schema.js';

export interface LoadedConfig extends Config {
  hostname: string;
  /** Absolute path of the file this was read from. */
  configPath: string;
}

/** Formats a key path the way an operator writes it: listeners[1].port */
function formatKeyPath(keyPath: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of keyPath) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += (out ? '.' : '') + String(part);
  }
  return out || '(top level)';
}

/** Turns zod's issues into one line per problem, each naming the key. */
export function describeIssues(issues: ReadonlyArray<z.core.$ZodIssue>): string[] {
  return issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => `${formatKeyPath([...issue.path, k])}: unknown key`).join('\n');
    }
    return `${formatKeyPath(issue.path)}: ${issue.message}`;
  });
}

/**
 * Replaces ${VAR} and ${VAR:-default} in every string value, so secrets can come from the
 * environment (or a systemd EnvironmentFile). A variable that is unset and has no default is an
 * error naming the key. `$${` stands for a literal `${`.
 */
export function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, keyPath: PropertyKey[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (whole, escaped, name: string, fallback?: string) => {
      if (escaped) return whole.slice(1);
      const v = env[name];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      throw new MailError('CONFIG_INVALID', `${formatKeyPath(keyPath)}: environment variable ${name} is not set`);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, [...keyPath, i]));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env, [...keyPath, k])]));
  }
  return value;
}

/** Parses and validates config text; relative paths are taken relative to `baseDir`. */
export function parseConfig(text: string, configPath: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` (line ${err.linePos[0].line})` : '';
    throw new MailError('CONFIG_INVALID', `${configPath}: not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MailError('CONFIG_INVALID', `${configPath}: expected a mapping of settings at the top level`);
  }
  const substituted = substituteEnv(raw, env);
  const result = configSchema.safeParse(substituted);
  if (!result.success) {
    throw new MailError('CONFIG_INVALID', `${configPath}: invalid configuration\n  ${describeIssues(result.error.issues).join('\n  ')}`);
  }
  const cfg = result.data;
  const baseDir = path.dirname(path.resolve(configPath));
  const abs = (p: string) => path.resolve(baseDir, p);
  const dataDir = abs(cfg.data_dir);
  return {
    ...cfg,
    configPath: path.resolve(configPath),
    hostname: cfg.hostname ?? os.hostname(),
    data_dir: dataDir,
    mail: { ...cfg.mail, root: abs(cfg.mail.root) },
    queue: { ...cfg.queue, dir: abs(cfg.queue.dir ?? path.join(cfg.mail.root, '.queue')) },
    dkim: { ...cfg.dkim, keys_dir: abs(cfg.dkim.keys_dir ?? path.join(cfg.data_dir, 'dkim')) },
    tls: { cert: cfg.tls.cert && abs(cfg.tls.cert), key: cfg.tls.key && abs(cfg.tls.key) },
    listeners: cfg.listeners.map((l) => ({ ...l, path: l.path && abs(l.path) })),
    directory: {
      ...cfg.directory,
      file: { path: abs(cfg.directory.file.path), initial: cfg.directory.file.initial && abs(cfg.directory.file.initial) },
    },
  };
}

export function loadConfig(configPath: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    throw new MailError('CONFIG_INVALID', `${configPath}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseConfig(text, configPath, env);
}

/** The effective configuration with secrets masked, for `maild check-config` (like postconf -n). */
export function redactConfig(cfg: LoadedConfig): unknown {
  return JSON.parse(
    JSON.stringify(cfg, (key, value) => (key === 'password' && typeof value === 'string' && value !== '' ? '********' : value)),
  );
}
