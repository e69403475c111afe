/**
 * Runs compiled Sieve (RFC 5228 section 2.10): tests, actions with their duplicate and conflict
 * rules, the implicit keep, stop, runtime errors (keep the message), limits.
 */
import { createHash } from 'node:crypto';
import { datePart, localOffset, parseRfc5322Date, parseZone, type ZonedDate } from './date.js';
import { matchValues, type Comparator, type MatchSpec, type Relation } from './match.js';
import { SieveMessage, decodeMimeWords, domainPart, flattenParts, localPart, parseAddresses } from './message.js';
import { applyModifiers, expandVariables, truncateUtf8, MAX_VARIABLE_SIZE } from './strings.js';
import type { SieveAction, SieveInput, SieveLimits, SieveResult } from './types.js';
import type { Node } from './validator.js';

/** RFC 5293 section 9 (and Pigeonhole): fields a script may not delete (adding is allowed). */
const PROTECTED_HEADERS = new Set(['received', 'auto-submitted']);
/** Header changes one run may make. */
const MAX_HEADER_EDITS = 256;

export class SieveRuntimeError extends Error {}

/** Internal name of the imap4flags variable (RFC 5232 section 3). */
const FLAGS_VARIABLE = '\u0000flags';

/** Flags of a string list: each string split on spaces, duplicates dropped (RFC 5232 3.1). */
export function flagList(strings: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const s of strings)
    for (const f of s.split(' ')) {
      if (!f || seen.has(f.toLowerCase())) continue;
      seen.add(f.toLowerCase());
      out.push(f);
    }
  return out;
}

/** The address within "Name <a@b>" or "<a@b>", or the string itself. */
function bareAddress(s: string): string {
  const m = /<([^>]*)>/.exec(s);
  return (m ? m[1]! : s).trim();
}

/** A compiled script and the scripts its include commands name (RFC 6609). */
export interface ScriptUnit {
  nodes: Node[];
  extensions: ReadonlySet<string>;
  /** Included scripts by "personal:name" / "global:name". */
  includes: ReadonlyMap<string, ScriptUnit>;
}

/** What one script of an include tree sees: its own variables, except the global ones. */
interface Frame {
  unit: ScriptUnit;
  variables: Map<string, string>;
  globals: Set<string>;
  matchVars: string[];
  useVars: boolean;
  useFlags: boolean;
}

/** RFC 6609 3.3: return ends the current script; the including one goes on. */
class ReturnSignal {}

/** Pigeonhole's sieve_duplicate_default_period (RFC 7352 3.3 :seconds when absent). */
const DUPLICATE_PERIOD = 14 * 86400;

/** State the pure interpreter asks its caller about. */
export interface SieveChecks {
  /** RFC 7352: was this duplicate key recorded (and not expired)? Absent: never a duplicate. */
  isDuplicate?: (key: string) => boolean;
  /** RFC 5490 mailboxexists: does the recipient's mailbox exist? Absent: only INBOX does. */
  mailboxExists?: (name: string) => boolean;
}

export function execute(main: ScriptUnit, input: SieveInput, limits: SieveLimits, checks: SieveChecks = {}): SieveResult {
  const message = new SieveMessage(input.message);
  const actions: SieveAction[] = [];
  const globalVariables = new Map<string, string>();
  const newFrame = (unit: ScriptUnit): Frame => ({
    unit,
    variables: new Map(),
    globals: new Set(),
    matchVars: [],
    useVars: unit.extensions.has('variables'),
    useFlags: unit.extensions.has('imap4flags'),
  });
  let frame = newFrame(main);
  const included = new Set<string>();
  let includeDepth = 0;
  /** Variables of the current script, or the shared ones (global names, "global." namespace). */
  const storeFor = (name: string): Map<string, string> =>
    name === FLAGS_VARIABLE || name.startsWith('global.') || frame.globals.has(name) ? globalVariables : frame.variables;
  const getVariable = (name: string): string | undefined => {
    const n = name.toLowerCase();
    return storeFor(n).get(n.startsWith('global.') ? n.slice(7) : n);
  };
  let implicitKeep = true;
  let redirects = 0;
  let headerEdits = 0;
  let stopped = false;
  const deadline = Date.now() + limits.maxCpuMs;

  const scope = { get: getVariable, match: [] as string[] };
  const expand = (s: string): string => {
    if (!frame.useVars) return s;
    scope.match = frame.matchVars;
    return expandVariables(s, scope);
  };
  const strs = (v: unknown): string[] => (v as string[]).map(expand);
  const str = (v: unknown): string => expand((v as string[])[0] ?? '');
  const raw = (v: unknown): string => (v as string[])[0] ?? '';
  const tagStr = (v: unknown): string | undefined => (typeof v === 'string' ? expand(v) : undefined);
  const tagList = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.map(expand) : undefined);

  const setVariable = (name: string, value: string): void => {
    const n = name.toLowerCase();
    storeFor(n).set(n.startsWith('global.') ? n.slice(7) : n, truncateUtf8(value, MAX_VARIABLE_SIZE));
  };
  const currentFlags = (): string[] => flagList([getVariable(FLAGS_VARIABLE) ?? '']);

  /** Adds the action; false when it duplicates an earlier one (RFC 5228 2.10.3). */
  const addAction = (a: SieveAction): boolean => {
    // RFC 5228 2.10.3: the same keep/fileinto/redirect twice is carried out once.
    const same = actions.find((b) => {
      if (a.type === 'keep' || (a.type === 'fileinto' && a.mailbox === 'INBOX'))
        return b.type === 'keep' || (b.type === 'fileinto' && b.mailbox === 'INBOX');
      if (a.type === 'fileinto') return b.type === 'fileinto' && b.mailbox === a.mailbox;
      if (a.type === 'redirect') return b.type === 'redirect' && b.address.toLowerCase() === a.address.toLowerCase();
      if (a.type === 'discard') return b.type === 'discard';
      return false;
    });
    if (a.type === 'vacation' && actions.some((b) => b.type === 'vacation'))
      throw new SieveRuntimeError('duplicate vacation action not allowed');
    if (
      (a.type === 'reject' && actions.some((b) => b.type === 'reject')) ||
      (a.type !== 'reject' &&
        a.type !== 'discard' &&
        actions.some((b) => b.type === 'reject') &&
        (a.type === 'keep' || a.type === 'fileinto' || a.type === 'vacation' || a.type === 'redirect'))
    )
      throw new SieveRuntimeError(`${a.type} action conflicts with earlier reject action`);
    if (
      a.type === 'reject' &&
      actions.some((b) => b.type === 'keep' || b.type === 'fileinto' || b.type === 'vacation' || b.type === 'redirect')
    )
      throw new SieveRuntimeError('reject action conflicts with other action');
    if (same) {
      // Pigeonhole keeps the first one (its :copy, :create) with the later one's flags; the
      // duplicate does not cancel the implicit keep either.
      if ((same.type === 'keep' || same.type === 'fileinto') && (a.type === 'keep' || a.type === 'fileinto')) {
        if (a.flags) same.flags = a.flags;
      }
      return false;
    }
    if (actions.length >= limits.maxActions)
      throw new SieveRuntimeError(`total number of actions exceeds policy limit (${limits.maxActions})`);
    actions.push(a);
    return true;
  };

  const matchSpec = (n: Node): MatchSpec => {
    const t = n.tags;
    const type = (['is', 'contains', 'matches', 'regex', 'count', 'value'] as const).find((k) => k in t) ?? 'is';
    const relation = type === 'count' || type === 'value' ? (t[type] as Relation) : undefined;
    const comparator = ((t.comparator as string | undefined) ?? 'i;ascii-casemap') as Comparator;
    return relation ? { type, relation, comparator } : { type, comparator };
  };

  const finishMatch = (m: MatchSpec, values: string[], keys: string[]): boolean => {
    const r = matchValues(values, keys, m);
    if (r.matched && r.captures && frame.useVars) frame.matchVars = r.captures;
    return r.matched;
  };

  const addressPart = (n: Node, addr: string): string | undefined => {
    const t = n.tags;
    if (t.localpart) return localPart(addr);
    if (t.domain) return domainPart(addr);
    if (t.user || t.detail) {
      const local = localPart(addr);
      const plus = local.indexOf('+');
      if (t.user) return plus < 0 ? local : local.slice(0, plus);
      return plus < 0 ? undefined : local.slice(plus + 1);
    }
    return addr;
  };

  const test = (n: Node): boolean => {
    switch (n.name) {
      case 'true':
        return true;
      case 'false':
        return false;
      case 'not':
        return !test(n.tests[0]!);
      case 'allof':
        return n.tests.every(test);
      case 'anyof':
        return n.tests.some(test);
      case 'size':
        return n.tags.over ? message.size > (n.args[0] as number) : message.size < (n.args[0] as number);
      case 'exists':
        return strs(n.args[0]).every((h) => message.headerValues(h).length > 0);
      case 'header': {
        const values = strs(n.args[0]).flatMap((h) => indexed(n, message.headerValues(h)));
        return finishMatch(matchSpec(n), values, strs(n.args[1]));
      }
      case 'address': {
        const values: string[] = [];
        for (const h of strs(n.args[0]))
          for (const v of indexed(n, message.headerValues(h)))
            for (const a of parseAddresses(v)) {
              const p = addressPart(n, a);
              if (p !== undefined) values.push(p);
            }
        return finishMatch(matchSpec(n), values, strs(n.args[1]));
      }
      case 'envelope': {
        const values: string[] = [];
        for (const part of strs(n.args[0])) {
          const p = part.toLowerCase();
          const addr = p === 'from' ? input.envelope.from : p === 'to' ? input.envelope.to : p === 'auth' ? input.envelope.auth : undefined;
          if (addr === undefined) continue;
          // RFC 5228 5.4: the null reverse-path matches "" with :all only
          const value =
            addr === '' ? (n.tags.localpart || n.tags.domain || n.tags.user || n.tags.detail ? undefined : '') : addressPart(n, addr);
          if (value !== undefined) values.push(value);
        }
        return finishMatch(matchSpec(n), values, strs(n.args[1]));
      }
      case 'date':
      case 'currentdate': {
        const m = matchSpec(n);
        const isDate = n.name === 'date';
        const part = str(n.args[isDate ? 1 : 0]);
        const keys = strs(n.args[isDate ? 2 : 1]);
        const zoneArg = tagStr(n.tags.zone);
        const zone = zoneArg === undefined ? undefined : parseZone(zoneArg);
        const dates: ZonedDate[] = [];
        if (isDate) {
          for (const v of indexed(n, message.headerValues(str(n.args[0])))) {
            // RFC 5260 4.1.1: in Received the date follows the last ";"
            const d = parseRfc5322Date(v.includes(';') ? v.slice(v.lastIndexOf(';') + 1) : v);
            if (d) dates.push(d);
          }
        } else {
          const time = (input.now ?? new Date()).getTime();
          dates.push({ time, offset: localOffset(time) });
        }
        const values = dates.flatMap((d) => {
          const offset = zone ?? (n.tags.originalzone ? d.offset : localOffset(d.time));
          const v = datePart(d, part, offset);
          return v === undefined ? [] : [v];
        });
        return finishMatch(m, values, keys);
      }
      case 'spamtest':
      case 'virustest': {
        // RFC 5235 3: the comparator defaults to i;ascii-numeric
        const m = matchSpec(n);
        if (!('comparator' in n.tags)) m.comparator = 'i;ascii-numeric';
        return finishMatch(m, [testScore(n)], strs(n.args[0]));
      }
      case 'mailboxexists': {
        // RFC 5490 3.1: true when every named mailbox exists; without a store to ask, only INBOX
        const exists = checks.mailboxExists ?? ((name: string) => name.toUpperCase() === 'INBOX');
        return strs(n.args[0]).every((name) => exists(name));
      }
      case 'duplicate': {
        // RFC 7352 3: the unique ID is :uniqueid, the first :header field, or Message-ID
        const t = n.tags;
        const value =
          typeof t.uniqueid === 'string'
            ? expand(t.uniqueid)
            : message.headerValues(typeof t.header === 'string' ? expand(t.header) : 'message-id')[0]?.trim();
        if (value === undefined || value === '') return false;
        const handle = tagStr(t.handle);
        const key = createHash('sha256')
          .update(`${handle ?? ''}\u0000${value}`)
          .digest('hex');
        const seen = checks.isDuplicate?.(key) ?? false;
        if (!actions.some((a) => a.type === 'duplicate' && a.key === key)) {
          const period = typeof t.seconds === 'number' ? t.seconds : DUPLICATE_PERIOD;
          const a: SieveAction = { type: 'duplicate', key, period, last: !!t.last };
          if (handle !== undefined) a.handle = handle;
          actions.push(a);
        }
        return seen;
      }
      case 'hasflag': {
        const names = strs(n.args[0]);
        const flags = names.length === 0 ? currentFlags() : flagList(names.map((v) => getVariable(v) ?? ''));
        return finishMatch(matchSpec(n), flags, strs(n.args[1]));
      }
      case 'string':
        return finishMatch(
          matchSpec(n),
          strs(n.args[0]).filter((s, _i, all) => s !== '' || all.length > 1 || matchSpec(n).type !== 'count'),
          strs(n.args[1]),
        );
      case 'body': {
        const keys = strs(n.args[0]);
        const m = matchSpec(n);
        if (n.tags.raw) return finishMatch(m, [message.body], keys);
        const types = tagList(n.tags.content) ?? ['text'];
        const parts = flattenParts(message.mime()).filter((p) => p.children.length === 0 && !p.contentType.startsWith('multipart/'));
        const wanted = parts.filter((p) =>
          types.some((t) => {
            const ty = t.toLowerCase();
            if (ty === '') return true;
            return ty.includes('/') ? p.contentType === ty : p.contentType.split('/')[0] === ty;
          }),
        );
        return finishMatch(
          m,
          // a part without content offers nothing to match (as Pigeonhole: not even "")
          wanted.map((p) => p.text).filter((t) => t !== ''),
          keys,
        );
      }
    }
    throw new SieveRuntimeError(`unknown test ${n.name}`);
  };

  /** RFC 5260 section 6: :index N (from the end with :last) picks one field occurrence. */
  const indexed = (n: Node, values: string[]): string[] => {
    if (typeof n.tags.index !== 'number') return values;
    const i = n.tags.index;
    const v = n.tags.last ? values[values.length - i] : values[i - 1];
    return i >= 1 && v !== undefined ? [v] : [];
  };

  /**
   * RFC 5235: spamScore is the spamtest value (0 not tested, 1 surely not spam .. 10 surely spam),
   * virusScore the virustest value (0 not tested, 1 clean .. 5 infected); out-of-range values are
   * clamped. :percent (spamtestplus) maps 1..10 onto 0..100.
   */
  const testScore = (n: Node): string => {
    const raw = n.name === 'spamtest' ? input.spamScore : input.virusScore;
    const max = n.name === 'spamtest' ? 10 : 5;
    if (raw === undefined || !Number.isFinite(raw)) return '0';
    const v = Math.min(max, Math.max(1, Math.round(raw)));
    if (n.tags.percent) return String(Math.round(((Math.min(10, Math.max(1, raw)) - 1) * 100) / 9));
    return String(v);
  };

  const flagsFor = (n: Node): string[] | undefined => {
    if (!frame.useFlags) return undefined;
    const f = 'flags' in n.tags ? flagList(tagList(n.tags.flags) ?? []) : currentFlags();
    return f.length ? f : undefined;
  };

  const command = (n: Node): void => {
    if (Date.now() >= deadline) throw new SieveRuntimeError('execution exceeded CPU time limit');
    switch (n.name) {
      case 'stop':
        stopped = true;
        return;
      case 'keep': {
        const flags = flagsFor(n);
        addAction(flags ? { type: 'keep', flags } : { type: 'keep' });
        implicitKeep = false;
        return;
      }
      case 'discard':
        addAction({ type: 'discard' });
        implicitKeep = false;
        return;
      case 'fileinto': {
        const copy = !!n.tags.copy;
        const flags = flagsFor(n);
        const mailbox = str(n.args[0]);
        const a: SieveAction = { type: 'fileinto', mailbox, create: !!n.tags.create, copy };
        if (flags) a.flags = flags;
        if (addAction(a) && !copy) implicitKeep = false;
        return;
      }
      case 'redirect': {
        const copy = !!n.tags.copy;
        const address = bareAddress(str(n.args[0]));
        if (!/^[^@\s]+@[^@\s]+$/.test(address)) throw new SieveRuntimeError(`specified redirect address '${address}' is invalid`);
        if (!actions.some((b) => b.type === 'redirect' && b.address.toLowerCase() === address.toLowerCase())) {
          if (++redirects > limits.maxRedirects)
            throw new SieveRuntimeError(`number of redirect actions exceeds policy limit (${limits.maxRedirects})`);
        }
        if (addAction({ type: 'redirect', address, copy }) && !copy) implicitKeep = false;
        return;
      }
      case 'reject':
      case 'ereject':
        addAction({ type: 'reject', reason: str(n.args[0]), extended: n.name === 'ereject' });
        implicitKeep = false;
        return;
      case 'vacation': {
        const t = n.tags;
        const a: SieveAction = {
          type: 'vacation',
          reason: str(n.args[0]),
          mime: !!t.mime,
          addresses: tagList(t.addresses) ?? [],
        };
        const subject = tagStr(t.subject);
        const from = tagStr(t.from);
        const handle = tagStr(t.handle);
        if (subject !== undefined) a.subject = subject;
        if (from !== undefined) a.from = from;
        // RFC 5230 4.2: no :handle, Pigeonhole's default from the arguments as written
        a.handle =
          handle ??
          `${raw(n.args[0])}${typeof t.subject === 'string' ? t.subject : '<default-subject>'}` +
            `${typeof t.from === 'string' ? t.from : '<default-from>'}${t.mime ? '<MIME>' : '<NO-MIME>'}`;
        if (typeof t.days === 'number') a.period = t.days * 86400;
        if (typeof t.seconds === 'number') a.period = t.seconds;
        addAction(a);
        return;
      }
      case 'setflag':
      case 'addflag':
      case 'removeflag': {
        const names = strs(n.args[0]);
        const target = names.length === 0 ? FLAGS_VARIABLE : names[0]!.toLowerCase();
        const given = flagList(strs(n.args[1]));
        const before = flagList([getVariable(target) ?? '']);
        let after: string[];
        if (n.name === 'setflag') after = given;
        else if (n.name === 'addflag') after = flagList([...before, ...given]);
        else {
          const drop = new Set(given.map((f) => f.toLowerCase()));
          after = before.filter((f) => !drop.has(f.toLowerCase()));
        }
        setVariable(target, after.join(' '));
        return;
      }
      case 'addheader': {
        const name = str(n.args[0]);
        // a value of several lines is folded
        const value = str(n.args[1]).replace(/\r?\n(?![ \t])/g, '\r\n ');
        if (++headerEdits > MAX_HEADER_EDITS) throw new SieveRuntimeError('too many header edits');
        const last = !!n.tags.last;
        if (last) message.headers.push({ name, raw: value });
        else message.headers.unshift({ name, raw: value });
        actions.push({ type: 'addheader', name, value, last });
        return;
      }
      case 'deleteheader': {
        const name = str(n.args[0]);
        if (PROTECTED_HEADERS.has(name.toLowerCase())) return;
        const patterns = strs(n.args[1]);
        const lower = name.toLowerCase();
        const positions = message.headers.flatMap((h, i) => (h.name.toLowerCase() === lower ? [i] : []));
        let chosen = positions.map((p, k) => ({ p, occurrence: k + 1 }));
        if (typeof n.tags.index === 'number') {
          const i = n.tags.index;
          const pick = n.tags.last ? chosen[chosen.length - i] : chosen[i - 1];
          chosen = i >= 1 && pick ? [pick] : [];
        }
        if (patterns.length > 0) {
          const m = matchSpec(n);
          chosen = chosen.filter((c) => matchValues([decodeMimeWords(message.headers[c.p]!.raw)], patterns, m).matched);
        }
        if (chosen.length === 0) return;
        if (++headerEdits > MAX_HEADER_EDITS) throw new SieveRuntimeError('too many header edits');
        if (chosen.length === positions.length && typeof n.tags.index !== 'number' && patterns.length === 0) {
          actions.push({ type: 'deleteheader', name });
        } else {
          // occurrences counted before this command's deletions, so each removal shifts the later ones
          chosen.forEach((c, k) => actions.push({ type: 'deleteheader', name, index: c.occurrence - k }));
        }
        for (const c of [...chosen].reverse()) message.headers.splice(c.p, 1);
        return;
      }
      case 'global':
        // RFC 6609 3.5: these names refer to the variables shared by all scripts
        for (const name of strs(n.args[0])) frame.globals.add(name.toLowerCase());
        return;
      case 'return':
        throw new ReturnSignal();
      case 'include': {
        const location = n.tags.global ? 'global' : 'personal';
        const key = `${location}:${str(n.args[0])}`;
        const unit = frame.unit.includes.get(key);
        if (!unit) {
          if (n.tags.optional) return;
          throw new SieveRuntimeError(`included ${location} script '${str(n.args[0])}' does not exist`);
        }
        if (n.tags.once && included.has(key)) return;
        included.add(key);
        if (++includeDepth > limits.maxIncludeDepth) throw new SieveRuntimeError('include nesting too deep');
        const saved = frame;
        frame = newFrame(unit);
        try {
          block(unit.nodes);
        } catch (e) {
          if (!(e instanceof ReturnSignal)) throw e;
        } finally {
          frame = saved;
          includeDepth--;
        }
        return;
      }
      case 'set':
        setVariable(str(n.args[0]), applyModifiers(str(n.args[1]), n.tags));
        return;
    }
    throw new SieveRuntimeError(`unknown command ${n.name}`);
  };

  const block = (nodes: Node[]): void => {
    let chainDone = true;
    for (const n of nodes) {
      if (stopped) return;
      if (n.name === 'if' || n.name === 'elsif' || n.name === 'else') {
        if (Date.now() >= deadline) throw new SieveRuntimeError('execution exceeded CPU time limit');
        if (n.name === 'if') chainDone = false;
        if (chainDone) continue;
        if (n.name === 'else' || test(n.tests[0]!)) {
          chainDone = true;
          block(n.block ?? []);
        }
        continue;
      }
      command(n);
    }
  };

  try {
    try {
      block(main.nodes);
    } catch (e) {
      if (!(e instanceof ReturnSignal)) throw e;
    }
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    return { actions: [{ type: 'keep' }], implicitKeep: true, error: reason };
  }
  if (implicitKeep) {
    const flags = main.extensions.has('imap4flags') ? currentFlags() : [];
    // listed even after a fileinto :copy "INBOX", as Pigeonhole does (delivery stores once)
    actions.push(flags.length ? { type: 'keep', flags } : { type: 'keep' });
  }
  return { actions, implicitKeep };
}
