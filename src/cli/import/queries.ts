/**
 * Translating lookup queries into maild's query syntax (directory.mysql.queries): `%s` the key,
 * `%u`/`%n` its local part, `%d` its domain, `%%` a percent sign.
 *
 * Postfix (mysql_table(5)): `%s` key, `%u` local part, `%d` domain, upper-case forms the same,
 * `%1`..`%9` domain labels. Dovecot: `%u` the whole user name, `%n` its local part, `%d` its
 * domain, with modifiers such as `%Lu` (lower case) and long forms `%{user}`, `%{username}`,
 * `%{domain}`; `%w` (the password), `%r` (the client's address) and the like have no
 * counterpart in maild.
 */

export type QueryTranslation = { ok: true; query: string } | { ok: false; reason: string };

export function translatePostfixQuery(query: string): QueryTranslation {
  let bad: string | undefined;
  const out = query.replace(/%(.)/g, (whole, c: string) => {
    if (c === '%') return '%%';
    if ('sSuUdD'.includes(c)) return `%${c.toLowerCase()}`;
    bad ??= whole;
    return whole;
  });
  if (bad) return { ok: false, reason: `${bad} has no counterpart in maild's queries (only %s, %u, %d)` };
  return { ok: true, query: out.replace(/;\s*$/, '').trim() };
}

const DOVECOT_LONG: Record<string, string> = { user: '%s', username: '%n', domain: '%d' };
const DOVECOT_SHORT: Record<string, string> = { u: '%s', n: '%n', d: '%d' };

export function translateDovecotQuery(query: string): QueryTranslation {
  let bad: string | undefined;
  // %[modifiers]c or %[modifiers]{name}; L (lower case) changes nothing, since maild looks up lower-cased keys.
  const out = query.replace(/%(L?)(\{[^}]*\}|.)/gs, (whole, mods: string, v: string) => {
    if (v === '%' && !mods) return '%%';
    const mapped = v.startsWith('{') ? DOVECOT_LONG[v.slice(1, -1)] : DOVECOT_SHORT[v];
    if (!mapped) {
      bad ??= whole;
      return whole;
    }
    return mapped;
  });
  if (bad) return { ok: false, reason: `${bad} has no counterpart in maild's queries (only %u, %n, %d)` };
  return { ok: true, query: out.replace(/;\s*$/, '').trim() };
}

/**
 * The names of the columns a SELECT returns: `AS alias`, or the column itself (`t.email` gives
 * email). Undefined for an expression without an alias. Empty when the text is no SELECT.
 */
export function selectColumns(query: string): Array<{ name: string | undefined; expression: string }> {
  const m = /^\s*SELECT\s+(?:DISTINCT\s+)?(.*?)\s+FROM\s/is.exec(query);
  if (!m) return [];
  const list = splitTopLevel(m[1]!);
  return list.map((expression) => {
    const alias = /\s+(?:AS\s+)?[`"']?([A-Za-z_][A-Za-z0-9_]*)[`"']?\s*$/i.exec(expression);
    if (alias && !/^\s*[A-Za-z_][A-Za-z0-9_.`]*\s*$/.test(expression)) return { name: alias[1]!.toLowerCase(), expression };
    const plain = /^\s*(?:[`A-Za-z0-9_]+\.)?`?([A-Za-z_][A-Za-z0-9_]*)`?\s*$/.exec(expression);
    return { name: plain ? plain[1]!.toLowerCase() : undefined, expression };
  });
}

/** Splits on commas outside parentheses and quotes. */
function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\') {
        cur += c + (text[i + 1] ?? '');
        i++;
        continue;
      }
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** The first table a query reads from (`FROM virtual_users u` gives virtual_users). */
export function fromTable(query: string): string | undefined {
  const m = /\sFROM\s+`?([A-Za-z0-9_.]+)`?/i.exec(query);
  return m?.[1]!.toLowerCase();
}

/**
 * Whether an alias query only maps an address to itself (`SELECT email FROM virtual_users WHERE
 * email = '%s'`, the tutorials' email2email map that keeps a catch-all from shadowing mailboxes;
 * maild never lets a catch-all shadow a mailbox, so the map is not needed).
 */
export function isIdentityMap(query: string): boolean {
  const m = /^\s*SELECT\s+`?([A-Za-z0-9_]+)`?\s+FROM\s+\S+\s+WHERE\s+`?([A-Za-z0-9_]+)`?\s*=\s*'%s'/i.exec(query);
  return !!m && m[1]!.toLowerCase() === m[2]!.toLowerCase();
}
