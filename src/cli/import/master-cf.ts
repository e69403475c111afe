/**
 * Postfix's master.cf (master(5)): one service per logical line, `service type private unpriv
 * chroot wakeup maxproc command args...`; a line starting with white space continues the
 * previous one; `#` at the start of a line is a comment. `-o name=value` (and Postfix 3.0's
 * `-o { name = value }`) override main.cf for that service.
 */

export interface MasterService {
  /** The service field: `smtp`, `submission`, `127.0.0.1:10587`. */
  service: string;
  type: string;
  command: string;
  /** The chroot field: y, n or - (the default: n since Postfix 3.0). */
  chroot: string;
  /** The `-o` overrides, in order (the last of a name wins). */
  options: Map<string, string>;
  /** 1-based line number of the service line. */
  line: number;
}

export function parseMasterCf(text: string): MasterService[] {
  const logical: Array<{ text: string; line: number }> = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (/^\s*(#|$)/.test(line)) return;
    if (/^\s/.test(line)) {
      const last = logical[logical.length - 1];
      if (last) last.text += ` ${line.trim()}`;
      return;
    }
    logical.push({ text: line.trim(), line: index + 1 });
  });
  const services: MasterService[] = [];
  for (const { text: entry, line } of logical) {
    const words = tokenize(entry);
    if (words.length < 8) continue;
    const [service, type, , , chroot, , , command, ...args] = words;
    const options = new Map<string, string>();
    for (let i = 0; i < args.length; i++) {
      if (args[i] !== '-o' || i + 1 >= args.length) continue;
      const opt = args[++i]!;
      const m = /^\{?\s*([A-Za-z0-9_]+)\s*=\s*(.*?)\s*\}?$/s.exec(opt);
      if (m) options.set(m[1]!, m[2]!);
    }
    services.push({ service: service!, type: type!, command: command!, chroot: chroot!, options, line });
  }
  return services;
}

/** Splits on white space, keeping `{ ... }` groups (Postfix 3.0) as one word. */
function tokenize(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    if (/\s/.test(line[i]!)) {
      i++;
      continue;
    }
    if (line[i] === '{') {
      const end = line.indexOf('}', i);
      const stop = end < 0 ? line.length : end + 1;
      words.push(line.slice(i, stop));
      i = stop;
      continue;
    }
    let j = i;
    while (j < line.length && !/\s/.test(line[j]!)) j++;
    words.push(line.slice(i, j));
    i = j;
  }
  return words;
}

/** Well-known service names of /etc/services that master.cf uses. */
const SERVICE_PORTS: Record<string, number> = { smtp: 25, submission: 587, submissions: 465, smtps: 465, lmtp: 24 };

/** The address and port of an inet service field (`smtp`, `127.0.0.1:10587`, `[::1]:25`). */
export function inetEndpoint(service: string): { host?: string; port: number } | undefined {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?([^:]+)$/.exec(service);
  if (!m) return undefined;
  const portName = m[2]!;
  const port = /^\d+$/.test(portName) ? Number(portName) : SERVICE_PORTS[portName];
  if (port === undefined) return undefined;
  const host = m[1]?.replace(/^\[|\]$/g, '');
  return host ? { host, port } : { port };
}
