/**
 * What each command and test accepts (RFC 5228 and extensions), as the validator checks it at
 * compile time the way Pigeonhole does.
 */
export type ArgType = 'string' | 'stringlist' | 'number';

export interface TagSpec {
  /** Argument the tag takes (":days 7", ":comparator "i;octet""). */
  arg?: ArgType;
  /** Tags of one group exclude each other (match type, address part, comparator). */
  group?: string;
  /** The extension the tag needs. */
  ext?: string;
}

export interface CommandSpec {
  kind: 'command' | 'test';
  ext?: string;
  tags?: Record<string, TagSpec>;
  /** Positional arguments; the first `optional` of them may be left out (setflag's variable). */
  positional: ArgType[];
  optional?: number;
  /** The last `optionalLast` positional arguments may be left out (deleteheader's value patterns). */
  optionalLast?: number;
  /** Names of the positional arguments for the error messages. */
  names?: string[];
  tests?: 'one' | 'list';
  block?: boolean;
}

const comparator: Record<string, TagSpec> = { comparator: { arg: 'string', group: 'comparator' } };
const matchTypes: Record<string, TagSpec> = {
  is: { group: 'match type' },
  contains: { group: 'match type' },
  matches: { group: 'match type' },
  regex: { group: 'match type', ext: 'regex' },
  count: { group: 'match type', ext: 'relational', arg: 'string' },
  value: { group: 'match type', ext: 'relational', arg: 'string' },
};
const addressParts: Record<string, TagSpec> = {
  all: { group: 'address part' },
  localpart: { group: 'address part' },
  domain: { group: 'address part' },
  user: { group: 'address part', ext: 'subaddress' },
  detail: { group: 'address part', ext: 'subaddress' },
};
const matching = { ...comparator, ...matchTypes };
/** RFC 5260 section 6: which occurrence of a header field. */
const indexTags: Record<string, TagSpec> = { index: { arg: 'number', ext: 'index' }, last: { ext: 'index' } };
const flagsTag: Record<string, TagSpec> = { flags: { arg: 'stringlist', ext: 'imap4flags' } };

export const COMMANDS: Record<string, CommandSpec> = {
  require: { kind: 'command', positional: ['stringlist'], names: ['capabilities'] },
  if: { kind: 'command', positional: [], tests: 'one', block: true },
  elsif: { kind: 'command', positional: [], tests: 'one', block: true },
  else: { kind: 'command', positional: [], block: true },
  stop: { kind: 'command', positional: [] },
  keep: { kind: 'command', positional: [], tags: { ...flagsTag } },
  discard: { kind: 'command', positional: [] },
  redirect: {
    kind: 'command',
    positional: ['string'],
    names: ['address'],
    tags: { copy: { ext: 'copy' } },
  },
  fileinto: {
    kind: 'command',
    ext: 'fileinto',
    positional: ['string'],
    names: ['folder'],
    tags: { copy: { ext: 'copy' }, create: { ext: 'mailbox' }, ...flagsTag },
  },
  reject: { kind: 'command', ext: 'reject', positional: ['string'], names: ['reason'] },
  ereject: { kind: 'command', ext: 'ereject', positional: ['string'], names: ['reason'] },
  setflag: {
    kind: 'command',
    ext: 'imap4flags',
    positional: ['string', 'stringlist'],
    optional: 1,
    names: ['variable name', 'list of flags'],
  },
  addflag: {
    kind: 'command',
    ext: 'imap4flags',
    positional: ['string', 'stringlist'],
    optional: 1,
    names: ['variable name', 'list of flags'],
  },
  removeflag: {
    kind: 'command',
    ext: 'imap4flags',
    positional: ['string', 'stringlist'],
    optional: 1,
    names: ['variable name', 'list of flags'],
  },
  vacation: {
    kind: 'command',
    ext: 'vacation',
    positional: ['string'],
    names: ['reason'],
    tags: {
      days: { arg: 'number', group: 'period' },
      seconds: { arg: 'number', group: 'period', ext: 'vacation-seconds' },
      subject: { arg: 'string' },
      from: { arg: 'string' },
      addresses: { arg: 'stringlist' },
      mime: {},
      handle: { arg: 'string' },
    },
  },
  set: {
    kind: 'command',
    ext: 'variables',
    positional: ['string', 'string'],
    names: ['variable name', 'value'],
    tags: {
      lower: { group: 'case' },
      upper: { group: 'case' },
      lowerfirst: { group: 'first' },
      upperfirst: { group: 'first' },
      quotewildcard: { group: 'quote' },
      length: { group: 'length' },
    },
  },
  // RFC 5293 editheader
  addheader: { kind: 'command', ext: 'editheader', positional: ['string', 'string'], names: ['field name', 'value'], tags: { last: {} } },
  deleteheader: {
    kind: 'command',
    ext: 'editheader',
    positional: ['string', 'stringlist'],
    optionalLast: 1,
    names: ['field name', 'value patterns'],
    tags: { ...matching, ...indexTags },
  },
  // RFC 5235 spamtest, spamtestplus, virustest
  spamtest: {
    kind: 'test',
    ext: 'spamtest',
    positional: ['string'],
    names: ['value'],
    tags: { ...matching, percent: { ext: 'spamtestplus' } },
  },
  virustest: { kind: 'test', ext: 'virustest', positional: ['string'], names: ['value'], tags: { ...matching } },
  // RFC 6609 include
  include: {
    kind: 'command',
    ext: 'include',
    positional: ['string'],
    names: ['script name'],
    tags: { personal: { group: 'location' }, global: { group: 'location' }, once: {}, optional: {} },
  },
  return: { kind: 'command', ext: 'include', positional: [] },
  global: { kind: 'command', ext: 'include', positional: ['stringlist'], names: ['variable names'] },
  // RFC 5490 3.1
  mailboxexists: { kind: 'test', ext: 'mailbox', positional: ['stringlist'], names: ['mailbox names'] },
  // RFC 7352 duplicate
  duplicate: {
    kind: 'test',
    ext: 'duplicate',
    positional: [],
    tags: {
      handle: { arg: 'string' },
      header: { arg: 'string', group: 'source' },
      uniqueid: { arg: 'string', group: 'source' },
      seconds: { arg: 'number' },
      last: {},
    },
  },
  // tests
  true: { kind: 'test', positional: [] },
  false: { kind: 'test', positional: [] },
  not: { kind: 'test', positional: [], tests: 'one' },
  allof: { kind: 'test', positional: [], tests: 'list' },
  anyof: { kind: 'test', positional: [], tests: 'list' },
  exists: { kind: 'test', positional: ['stringlist'], names: ['header names'] },
  size: { kind: 'test', positional: ['number'], names: ['limit'], tags: { over: { group: 'size' }, under: { group: 'size' } } },
  header: {
    kind: 'test',
    positional: ['stringlist', 'stringlist'],
    names: ['header names', 'key list'],
    tags: { ...matching, ...indexTags },
  },
  date: {
    kind: 'test',
    ext: 'date',
    positional: ['string', 'string', 'stringlist'],
    names: ['header name', 'date part', 'key list'],
    tags: { ...matching, ...indexTags, zone: { arg: 'string', group: 'zone' }, originalzone: { group: 'zone' } },
  },
  currentdate: {
    kind: 'test',
    ext: 'date',
    positional: ['string', 'stringlist'],
    names: ['date part', 'key list'],
    tags: { ...matching, zone: { arg: 'string', group: 'zone' } },
  },
  address: {
    kind: 'test',
    positional: ['stringlist', 'stringlist'],
    names: ['header list', 'key list'],
    tags: { ...matching, ...addressParts, ...indexTags },
  },
  envelope: {
    kind: 'test',
    ext: 'envelope',
    positional: ['stringlist', 'stringlist'],
    names: ['envelope part', 'key list'],
    tags: { ...matching, ...addressParts },
  },
  hasflag: {
    kind: 'test',
    ext: 'imap4flags',
    positional: ['stringlist', 'stringlist'],
    optional: 1,
    names: ['variable list', 'list of flags'],
    tags: { ...matching },
  },
  string: {
    kind: 'test',
    ext: 'variables',
    positional: ['stringlist', 'stringlist'],
    names: ['source', 'key list'],
    tags: { ...matching },
  },
  body: {
    kind: 'test',
    ext: 'body',
    positional: ['stringlist'],
    names: ['key list'],
    tags: {
      ...matching,
      raw: { group: 'body transform' },
      content: { group: 'body transform', arg: 'stringlist' },
      text: { group: 'body transform' },
    },
  },
};

/** Capabilities `require` accepts (and ManageSieve advertises). */
export const SUPPORTED_EXTENSIONS = [
  'fileinto',
  'reject',
  'ereject',
  'envelope',
  'encoded-character',
  'vacation',
  'vacation-seconds',
  'subaddress',
  'comparator-i;ascii-numeric',
  'relational',
  'regex',
  'imap4flags',
  'copy',
  'body',
  'variables',
  'mailbox',
  'date',
  'index',
  'editheader',
  'spamtest',
  'spamtestplus',
  'virustest',
  'include',
  'duplicate',
];
