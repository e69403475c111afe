/**
 * Postfix's main.cf (postconf(5)): `name = value` logical lines; a line that starts with white
 * space continues the previous one; lines whose first non-blank character is `#` are comments,
 * also inside a continued value. Values are expanded on use: `$name`, `${name}`, `$(name)`,
 * `${name?text}` (text when name is non-empty), `${name:text}` (text when it is empty).
 */

export interface MainCfEntry {
  value: string;
  /** 1-based line number where the setting starts. */
  line: number;
}

/** Postfix's built-in defaults of the settings the importer reads (postconf -d on Postfix 3.7). */
const DEFAULTS: Record<string, string> = {
  config_directory: '/etc/postfix',
  queue_directory: '/var/spool/postfix',
  message_size_limit: '10240000',
  recipient_delimiter: '',
  relayhost: '',
  inet_interfaces: 'all',
  smtpd_sasl_type: 'cyrus',
  smtpd_sasl_path: 'smtpd',
  smtpd_sasl_auth_enable: 'no',
  smtpd_tls_cert_file: '',
  smtpd_tls_key_file: '$smtpd_tls_cert_file',
  smtpd_tls_security_level: '',
  virtual_transport: 'virtual',
  virtual_mailbox_domains: '$virtual_mailbox_maps',
  virtual_alias_domains: '$virtual_alias_maps',
};

const MAX_DEPTH = 20;

export class MainCf {
  readonly entries: ReadonlyMap<string, MainCfEntry>;

  constructor(entries: Map<string, MainCfEntry>) {
    this.entries = entries;
  }

  /** Whether main.cf sets the parameter (defaults do not count). */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The raw text of a parameter as written, or its built-in default. */
  raw(name: string): string | undefined {
    return this.entries.get(name)?.value ?? DEFAULTS[name];
  }

  /** The expanded value of a parameter ('' when neither set nor known). */
  get(name: string): string {
    return this.#expand(this.raw(name) ?? '', 0);
  }

  /** Expands $name references in any text as Postfix would. */
  expand(text: string): string {
    return this.#expand(text, 0);
  }

  #expand(text: string, depth: number): string {
    if (depth > MAX_DEPTH) throw new Error(`main.cf: recursion in $variable expansion of ${JSON.stringify(text)}`);
    let out = '';
    let i = 0;
    while (i < text.length) {
      const c = text[i]!;
      if (c !== '$') {
        out += c;
        i++;
        continue;
      }
      const next = text[i + 1];
      if (next === '$') {
        out += '$';
        i += 2;
        continue;
      }
      if (next === '{' || next === '(') {
        const close = next === '{' ? '}' : ')';
        const end = matchingClose(text, i + 1, next, close);
        if (end < 0) {
          out += text.slice(i);
          break;
        }
        const inner = text.slice(i + 2, end);
        const m = /^([A-Za-z0-9_]+)(?:([?:])(.*))?$/s.exec(inner);
        if (m) {
          const value = this.#expand(this.raw(m[1]!) ?? '', depth + 1);
          if (m[2] === undefined) out += value;
          else {
            // ${name?{text}} and ${name?text} (Postfix 3.0 allows the braces).
            const alt = m[3]!.replace(/^\{(.*)\}$/s, '$1');
            const nonEmpty = value !== '';
            if ((m[2] === '?') === nonEmpty) out += this.#expand(alt, depth + 1);
          }
        }
        i = end + 1;
        continue;
      }
      const m = /^[A-Za-z0-9_]+/.exec(text.slice(i + 1));
      if (m) {
        out += this.#expand(this.raw(m[0]) ?? '', depth + 1);
        i += 1 + m[0].length;
      } else {
        out += '$';
        i++;
      }
    }
    return out;
  }
}

function matchingClose(text: string, open: number, o: string, c: string): number {
  let depth = 0;
  for (let j = open; j < text.length; j++) {
    if (text[j] === o) depth++;
    else if (text[j] === c && --depth === 0) return j;
  }
  return -1;
}

/** Parses main.cf text. The last setting of a name wins, as in Postfix. */
export function parseMainCf(text: string): MainCf {
  const entries = new Map<string, MainCfEntry>();
  let current: { name: string; value: string; line: number } | undefined;
  const flush = () => {
    if (current) entries.set(current.name, { value: current.value.trim(), line: current.line });
    current = undefined;
  };
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    if (/^\s*(#|$)/.test(line)) return;
    if (/^\s/.test(line)) {
      if (current) current.value += ` ${line.trim()}`;
      return;
    }
    flush();
    const m = /^([A-Za-z0-9_.-]+)\s*=\s*(.*)$/.exec(line);
    if (m) current = { name: m[1]!, value: m[2]!, line: index + 1 };
  });
  flush();
  return new MainCf(entries);
}

/** Splits a list value the way Postfix does: on commas and white space. */
export function splitList(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}

/** A map reference such as `proxy:mysql:/etc/postfix/x.cf`: its type (without proxy:) and name. */
export function parseMapReference(ref: string): { type: string; name: string } {
  let rest = ref.trim();
  if (rest.startsWith('proxy:')) rest = rest.slice('proxy:'.length);
  const colon = rest.indexOf(':');
  if (colon < 0 || rest.startsWith('/')) return { type: 'file', name: rest };
  return { type: rest.slice(0, colon), name: rest.slice(colon + 1) };
}

/** Yes/no values as Postfix reads them. */
export function isYes(value: string): boolean {
  return /^(yes|true|1)$/i.test(value.trim());
}
