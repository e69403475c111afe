/**
 * Postfix's mysql_table(5) files: `name = value` lines (main.cf syntax). The query is either
 * `query = ...` or, in the form older tutorials use, `select_field`, `table`, `where_field` and
 * `additional_conditions`.
 */
import { parseMainCf, splitList } from './main-cf.js';

export interface MysqlMap {
  /** hosts: the first one (`host`, `host:port`, `inet:host:port`, `unix:/path`). */
  host?: string;
  port?: number;
  socket?: string;
  /** Further hosts Postfix would have tried in turn. */
  otherHosts: string[];
  user?: string;
  password?: string;
  dbname?: string;
  query?: string;
  /** Settings present in the file that the importer does not use (result_format, domain, tls_*...). */
  unused: Map<string, string>;
}

const USED = new Set(['hosts', 'user', 'password', 'dbname', 'query', 'select_field', 'table', 'where_field', 'additional_conditions']);
/** Settings whose default or usual value changes nothing for maild. */
const HARMLESS: Record<string, (v: string) => boolean> = {
  result_format: (v) => v === '%s',
  expansion_limit: () => true,
  idle_interval: () => true,
  retry_interval: () => true,
  option_group: (v) => v === 'client',
};

export function parseMysqlMap(text: string): MysqlMap {
  const cf = parseMainCf(text);
  const get = (name: string) => (cf.has(name) ? cf.raw(name)!.trim() : undefined);
  const hosts = splitList(get('hosts') ?? '');
  const map: MysqlMap = { otherHosts: hosts.slice(1), unused: new Map() };
  const first = hosts[0];
  if (first) {
    const unix = /^unix:(.+)$/.exec(first);
    const inet = /^(?:inet:)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(first);
    if (unix) map.socket = unix[1]!;
    else if (inet) {
      map.host = inet[1]!.replace(/^\[|\]$/g, '');
      if (inet[2]) map.port = Number(inet[2]);
    }
  }
  for (const key of ['user', 'password', 'dbname'] as const) {
    const v = get(key);
    if (v !== undefined) map[key] = v;
  }
  const query = get('query');
  if (query) map.query = query;
  else if (get('select_field') && get('table') && get('where_field')) {
    const extra = get('additional_conditions');
    map.query = `SELECT ${get('select_field')} FROM ${get('table')} WHERE ${get('where_field')} = '%s'${extra ? ` ${extra}` : ''}`;
  }
  for (const [name, entry] of cf.entries) {
    if (USED.has(name) || HARMLESS[name]?.(entry.value)) continue;
    map.unused.set(name, entry.value);
  }
  return map;
}
