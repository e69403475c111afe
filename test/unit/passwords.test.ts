/**
 * Password schemes against hashes made by real tools (test/fixtures/passwords.json: doveadm,
 * openssl, mkpasswd, python crypt, the argon2 CLI; see passwords.gen.py), live MariaDB ENCRYPT(),
 * the worker pool's failure handling, and the main thread staying responsive.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createConnection } from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { ITOA64, MD5_CRYPT_GROUPS, SHA512_CRYPT_GROUPS, decodeGroups, encodeGroups } from '../../src/directory/passwords/crypt64.js';
import { NEW_PASSWORD_SCHEMES, PasswordService, SUPPORTED_VERIFY_SCHEMES, identifyScheme } from '../../src/directory/passwords/index.js';
import { md5Crypt } from '../../src/directory/passwords/md5crypt.js';
import { WorkerPool } from '../../src/directory/passwords/pool.js';
import { isMailError } from '../../src/errors.js';
import { costProfile, parseStored } from '../../src/directory/passwords/schemes.js';

interface Fixture {
  tool: string;
  command: string[];
  scheme: string;
  password: string;
  stored: string;
}
const fixtures: Fixture[] = JSON.parse(readFileSync(new URL('../fixtures/passwords.json', import.meta.url), 'utf8')).entries;

/** The normalised scheme verify() should report for a fixture. */
function expectedScheme(f: Fixture): string {
  const body = f.stored.replace(/^\{[^}]*\}/, '');
  if (body.startsWith('$6$')) return 'SHA512-CRYPT';
  if (body.startsWith('$5$')) return 'SHA256-CRYPT';
  if (body.startsWith('$2')) return 'BLF-CRYPT';
  if (body.startsWith('$argon2id$')) return 'ARGON2ID';
  if (body.startsWith('$argon2i$')) return 'ARGON2I';
  if (body.startsWith('$1$') && f.scheme !== 'PBKDF2') return 'MD5-CRYPT';
  if (/^[./0-9A-Za-z]{13}$/.test(body) && !f.stored.startsWith('{PLAIN')) return 'DES-CRYPT';
  const aliases: Record<string, string> = { SHA1: 'SHA', CLEAR: 'PLAIN', CLEARTEXT: 'PLAIN' };
  return aliases[f.scheme] ?? f.scheme;
}

const wrong = (pw: string) => `x${pw}`; // a different first character: DES (8 bytes) and bcrypt (72) truncate the end

function label(f: Fixture): string {
  return `${f.tool.split(' (')[0]} ${f.scheme} ${JSON.stringify(f.password.slice(0, 16))}`;
}

const execFileP = promisify(execFile);
async function hasCommand(cmd: string): Promise<boolean> {
  try {
    await execFileP('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** The schemes the directory must verify (the issue's list, Dovecot's names and aliases). */
const REQUIRED_SCHEMES = [
  'ARGON2I',
  'ARGON2ID',
  'BLF-CRYPT',
  'CLEARTEXT',
  'CRYPT',
  'DES-CRYPT',
  'LDAP-MD5',
  'MD5',
  'MD5-CRYPT',
  'PLAIN',
  'PLAIN-MD5',
  'SHA',
  'SHA256',
  'SHA256-CRYPT',
  'SHA512',
  'SHA512-CRYPT',
  'SSHA',
  'SSHA256',
  'SSHA512',
];

describe('passwords: fixtures from real tools', () => {
  let svc: PasswordService;
  before(() => {
    svc = new PasswordService({ threads: 2 });
  });
  after(() => svc.close());

  it('covers every scheme the task names, from doveadm and the other tools', () => {
    const schemes = new Set(fixtures.map((f) => f.scheme));
    for (const s of [...REQUIRED_SCHEMES, 'SSHA256.HEX']) {
      assert.ok(schemes.has(s), `no fixture for ${s}`);
    }
    assert.ok(
      fixtures.some((f) => f.stored.includes('rounds=')),
      'a rounds= fixture',
    );
    assert.ok(
      fixtures.some((f) => /[^\x00-\x7f]/.test(f.password)),
      'a non-ASCII password',
    );
    assert.ok(
      fixtures.some((f) => f.password.includes(' ')),
      'a password with a space',
    );
    for (const tool of ['doveadm', 'openssl', 'mkpasswd', 'python3', 'argon2 CLI']) {
      assert.ok(
        fixtures.some((f) => f.tool.toLowerCase().startsWith(tool.toLowerCase())),
        `no fixture made by ${tool}`,
      );
    }
  });

  it('verifies every fixture with the right password, rejects a wrong one, and names the scheme', async () => {
    const failures: string[] = [];
    await Promise.all(
      fixtures.map(async (f) => {
        const good = await svc.verify(f.stored, f.password);
        const bad = await svc.verify(f.stored, wrong(f.password));
        if (!good.ok) failures.push(`${label(f)}: right password rejected (${good.reason ?? 'mismatch'})`);
        if (bad.ok) failures.push(`${label(f)}: wrong password accepted`);
        if (bad.reason !== undefined) failures.push(`${label(f)}: a wrong password reported a reason: ${bad.reason}`);
        if (good.scheme !== expectedScheme(f)) failures.push(`${label(f)}: scheme ${good.scheme}, expected ${expectedScheme(f)}`);
      }),
    );
    assert.deepEqual(failures, []);
  });

  it('accepts self-identifying values without a prefix, and prefixes in any case', async () => {
    const selfIdentifying = fixtures.filter(
      (f) => /^(\{[^}]*\})?\$(1|5|6|2[aby]|argon2i|argon2id)\$/.test(f.stored) && f.scheme !== 'PBKDF2',
    );
    assert.ok(selfIdentifying.length > 50);
    await Promise.all(
      selfIdentifying.map(async (f) => {
        const bare = f.stored.replace(/^\{[^}]*\}/, '');
        assert.equal((await svc.verify(bare, f.password)).ok, true, label(f));
      }),
    );
    await Promise.all(
      fixtures
        .filter((x) => x.stored.startsWith('{') && x.password === 'secret')
        .map(async (f) => {
          const lower = f.stored.replace(/^\{[^}]*\}/, (p) => p.toLowerCase());
          assert.equal((await svc.verify(lower, f.password)).ok, true, `${label(f)} as ${lower.slice(0, 20)}`);
        }),
    );
  });

  it('uses the default scheme for values that do not identify themselves', async () => {
    const des = fixtures.find((f) => f.scheme === 'DES-CRYPT' && f.password === 'secret' && !f.stored.startsWith('{'))!;
    assert.deepEqual(await svc.verify(des.stored, 'secret'), { ok: true, scheme: 'DES-CRYPT' });
    const plainMd5 = fixtures.find((f) => f.scheme === 'PLAIN-MD5' && f.password === 'secret')!.stored.replace('{PLAIN-MD5}', '');
    const ssha512 = fixtures.find((f) => f.scheme === 'SSHA512' && f.password === 'secret')!.stored.replace('{SSHA512}', '');
    const md5svc = new PasswordService({ threads: 1, defaultScheme: 'plain-md5' });
    const sshasvc = new PasswordService({ threads: 1, defaultScheme: 'SSHA512' });
    try {
      assert.deepEqual(await md5svc.verify(plainMd5, 'secret'), { ok: true, scheme: 'PLAIN-MD5' });
      assert.equal((await md5svc.verify(plainMd5, 'Secret')).ok, false);
      assert.deepEqual(await sshasvc.verify(ssha512, 'secret'), { ok: true, scheme: 'SSHA512' });
      // A self-identifying value still wins over the default scheme.
      assert.equal((await sshasvc.verify('$1$somesalt$jezmI5TSY7mVTzHLgsK5L.', 'secret')).ok, true);
    } finally {
      await md5svc.close();
      await sshasvc.close();
    }
  });

  it('follows Dovecot for {MD5} (MD5-CRYPT, or PLAIN-MD5 when not $1$) and trailing $ in prefixless $1$', async () => {
    const hex = fixtures.find((f) => f.scheme === 'PLAIN-MD5' && f.password === 'secret')!.stored.replace('{PLAIN-MD5}', '');
    assert.deepEqual(await svc.verify(`{MD5}${hex}`, 'secret'), { ok: true, scheme: 'PLAIN-MD5' });
    // password_get_scheme(): "$1$<salt>$<password>[$<ignored>]"
    assert.equal((await svc.verify('$1$somesalt$jezmI5TSY7mVTzHLgsK5L.$whatever', 'secret')).ok, true);
    // Unsalted digests guess hex when twice the digest size (password_decode()).
    const shaHex = fixtures.find((f) => f.scheme === 'SHA.HEX' && f.password === 'secret')!.stored.replace('{SHA.HEX}', '');
    assert.deepEqual(await svc.verify(`{SHA}${shaHex}`, 'secret'), { ok: true, scheme: 'SHA' });
  });
});

describe('passwords: MariaDB ENCRYPT()', () => {
  // MariaDB's ENCRYPT() is libc crypt(): what MySQL-backed Postfix/Dovecot setups stored.
  const server = {
    host: process.env.MAILD_TEST_MYSQL_HOST ?? '127.0.0.1',
    port: Number(process.env.MAILD_TEST_MYSQL_PORT ?? 3306),
    user: process.env.MAILD_TEST_MYSQL_USER ?? 'root',
    password: process.env.MAILD_TEST_MYSQL_PASSWORD ?? '',
  };
  let svc: PasswordService;
  before(() => {
    svc = new PasswordService({ threads: 2 });
  });
  after(() => svc.close());

  it('verifies hashes made live by ENCRYPT(pw) and ENCRYPT(pw, $6$/$5$/$1$ salt)', async () => {
    const conn = await createConnection({ ...server, charset: 'utf8mb4', connectTimeout: 5000 }).catch((err: Error) => {
      throw new Error(`MariaDB is not reachable at ${server.host}:${server.port} (mysql -uroot -h127.0.0.1 must work): ${err.message}`);
    });
    try {
      const salt = Array.from({ length: 12 }, () => ITOA64[randomInt(64)]).join('');
      for (const pw of ['secret', 'correct horse battery staple', 'Grüße, 世界 €']) {
        const [rows] = await conn.query<RowDataPacket[]>(
          `SELECT ENCRYPT(?) AS des, ENCRYPT(?, CONCAT('$6$', ?)) AS sha512, ENCRYPT(?, CONCAT('$5$', ?)) AS sha256,
                  ENCRYPT(?, CONCAT('$1$', ?)) AS md5, ENCRYPT(?, CONCAT('$6$rounds=12000$', ?)) AS sha512r`,
          [pw, pw, salt, pw, salt, pw, salt.slice(0, 8), pw, salt],
        );
        const row = rows[0]!;
        const expected: Record<string, [RegExp, string]> = {
          des: [/^[./0-9A-Za-z]{13}$/, 'DES-CRYPT'],
          sha512: [/^\$6\$/, 'SHA512-CRYPT'],
          sha256: [/^\$5\$/, 'SHA256-CRYPT'],
          md5: [/^\$1\$/, 'MD5-CRYPT'],
          sha512r: [/^\$6\$rounds=12000\$/, 'SHA512-CRYPT'],
        };
        for (const [col, [shape, scheme]] of Object.entries(expected)) {
          const stored = String(row[col] ?? '');
          // This MariaDB (10.11, glibc/libxcrypt crypt) returns every form; NULL would mean crypt() refused it.
          assert.match(stored, shape, `ENCRYPT form ${col} returned ${row[col] === null ? 'NULL' : stored}`);
          assert.deepEqual(await svc.verify(stored, pw), { ok: true, scheme }, `${col} ${JSON.stringify(pw)}`);
          assert.deepEqual(await svc.verify(`{CRYPT}${stored}`, pw), { ok: true, scheme }, `{CRYPT}${col}`);
          assert.equal((await svc.verify(stored, wrong(pw))).ok, false, `${col} wrong password`);
        }
      }
    } finally {
      await conn.end();
    }
  });
});

describe('passwords: bad stored data', () => {
  let svc: PasswordService;
  before(() => {
    // Bad data still costs a dummy verification; SSHA512 keeps those cheap here.
    svc = new PasswordService({ threads: 1, newScheme: 'SSHA512' });
  });
  after(() => svc.close());

  const sha512 = '$6$saltsalt$' + 'a'.repeat(85) + '.';
  const cases: [string, string, string | null, RegExp][] = [
    ['empty', '', null, /no stored password/],
    ['unknown scheme', '{FOO}bar', null, /unknown password scheme "FOO"/],
    ['empty after the prefix', '{PLAIN}', 'PLAIN', /empty stored password/],
    ['unknown encoding', '{SSHA256.XYZ}abcd', null, /unknown password scheme/],
    ['truncated SHA512-CRYPT', '{SHA512-CRYPT}$6$salt$abc', 'SHA512-CRYPT', /malformed hash part/],
    ['rounds below the minimum', '$6$rounds=10$salt$' + 'a'.repeat(86), 'SHA512-CRYPT', /outside 1000/],
    ['rounds over the limit', '$6$rounds=50000000$salt$' + 'a'.repeat(86), 'SHA512-CRYPT', /exceeds the limit/],
    ['salt too long', '$6$' + 's'.repeat(17) + '$' + 'a'.repeat(86), 'SHA512-CRYPT', /malformed salt/],
    ['bad padding bits', sha512.slice(0, -1) + 'z', 'SHA512-CRYPT', /malformed hash part/],
    ['bcrypt $2x$', '$2x$10$' + 'a'.repeat(53), 'BLF-CRYPT', /not supported/],
    ['bcrypt cost over the limit', '$2y$20$' + 'a'.repeat(53), 'BLF-CRYPT', /exceeds the limit/],
    ['bcrypt too short', '{BLF-CRYPT}$2y$10$abc', 'BLF-CRYPT', /BLF-CRYPT: malformed crypt string/],
    ['SHA-crypt with extra parts', '{CRYPT}$6$a$b$c$d', 'SHA512-CRYPT', /malformed crypt string/],
    ['yescrypt', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7', 'CRYPT', /unsupported crypt method \$y\$/],
    ['BSDi DES', '{CRYPT}_J9..CCCCXBrJUJV154M', 'CRYPT', /BSDi/],
    ['garbage as CRYPT', '{CRYPT}not a hash', 'CRYPT', /not a crypt string/],
    [
      'argon2d without prefix',
      '$argon2d$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA',
      'CRYPT',
      /unsupported crypt method \$argon2d\$/,
    ],
    ['argon2d', '{ARGON2ID}$argon2d$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'ARGON2ID', /argon2d is not supported/],
    ['argon2 tiny memory', '{ARGON2ID}$argon2id$v=19$m=1,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'ARGON2ID', /invalid parameters/],
    [
      'argon2 huge memory',
      '{ARGON2ID}$argon2id$v=19$m=99999999,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA',
      'ARGON2ID',
      /exceeds the limits/,
    ],
    ['argon2 missing t', '{ARGON2ID}$argon2id$v=19$m=65536,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'ARGON2ID', /m, t and p/],
    ['argon2 garbage', '{ARGON2I}$argon2i$nonsense', 'ARGON2I', /malformed argon2/],
    ['SSHA too short', '{SSHA}AAAA', 'SSHA', /too short/],
    ['SHA not base64', '{SHA}not*base64!', 'SHA', /invalid base64/],
    ['SHA wrong length', '{SHA}AAAA', 'SHA', /digest is 3 bytes instead of 20/],
    ['PLAIN-MD5 not hex', '{PLAIN-MD5.HEX}zz', 'PLAIN-MD5.HEX', /invalid hex/],
    ['MD5 neither form', '{MD5}??', 'PLAIN-MD5', /invalid base64/],
    ['PBKDF2 garbage', '{PBKDF2}$1$salt$0$00', 'PBKDF2', /malformed PBKDF2/],
    ['MD5-CRYPT long salt', '$1$123456789$' + 'a'.repeat(22), 'MD5-CRYPT', /malformed salt/],
  ];
  for (const [name, stored, scheme, reason] of cases) {
    it(`${name}: ok false with a reason, no throw`, async () => {
      const r = await svc.verify(stored, 'Secret!Pw');
      assert.equal(r.ok, false);
      assert.equal(r.scheme, scheme);
      assert.match(r.reason ?? '', reason);
      assert.ok(!r.reason!.includes('Secret!Pw'), 'the reason must not contain the password');
    });
  }

  it('turns away unusable passwords without hashing them', async () => {
    const stored = fixtures.find((f) => f.scheme === 'PLAIN' && f.password === 'secret')!.stored;
    assert.deepEqual(await svc.verify(stored, 'sec\0ret'), { ok: false, scheme: 'PLAIN' });
    assert.deepEqual(await svc.verify(stored, 'x'.repeat(5000)), { ok: false, scheme: 'PLAIN' });
    assert.equal(await svc.verifyDummy('x'.repeat(5000)), false);
    await assert.rejects(svc.hash('a\0b'), RangeError);
  });

  it('refuses an unknown default scheme or a bad thread count at construction', () => {
    assert.throws(
      () => new PasswordService({ defaultScheme: 'NOPE' }),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID'),
    );
    assert.throws(
      () => new PasswordService({ threads: 0 }),
      (e: unknown) => isMailError(e, 'CONFIG_INVALID'),
    );
  });
});

describe('passwords: identifyScheme', () => {
  const table: [string, string | undefined, { scheme: string; hash: string } | null][] = [
    ['{SHA512-CRYPT}$6$abc$def', undefined, { scheme: 'SHA512-CRYPT', hash: '$6$abc$def' }],
    ['{crypt}$6$abc$def', undefined, { scheme: 'SHA512-CRYPT', hash: '$6$abc$def' }],
    ['{CRYPT}$5$abc$def', undefined, { scheme: 'SHA256-CRYPT', hash: '$5$abc$def' }],
    ['{CRYPT}abNANd1rDfiNc', undefined, { scheme: 'DES-CRYPT', hash: 'abNANd1rDfiNc' }],
    ['abNANd1rDfiNc', undefined, { scheme: 'DES-CRYPT', hash: 'abNANd1rDfiNc' }],
    ['$2y$10$abc', undefined, { scheme: 'BLF-CRYPT', hash: '$2y$10$abc' }],
    ['$argon2id$v=19$m=1', undefined, { scheme: 'ARGON2ID', hash: '$argon2id$v=19$m=1' }],
    ['$argon2i$v=19$m=1', undefined, { scheme: 'ARGON2I', hash: '$argon2i$v=19$m=1' }],
    ['{ssha256.hex}abcd', undefined, { scheme: 'SSHA256.HEX', hash: 'abcd' }],
    ['{SSHA.base64}abcd', undefined, { scheme: 'SSHA.B64', hash: 'abcd' }],
    ['{SHA1}abcd', undefined, { scheme: 'SHA', hash: 'abcd' }],
    ['{CLEARTEXT}pw', undefined, { scheme: 'PLAIN', hash: 'pw' }],
    ['{MD5}$1$salt$hash', undefined, { scheme: 'MD5-CRYPT', hash: '$1$salt$hash' }],
    ['5ebe2294ecd0e0f08eab7690d2a6ee69', 'PLAIN-MD5', { scheme: 'PLAIN-MD5', hash: '5ebe2294ecd0e0f08eab7690d2a6ee69' }],
    ['hunter2', 'plain', { scheme: 'PLAIN', hash: 'hunter2' }],
    ['{FOO}bar', undefined, null],
    ['hunter2', 'NOPE', null],
    ['', undefined, null],
  ];
  for (const [stored, def, expected] of table) {
    it(`${JSON.stringify(stored)}${def ? ` (default ${def})` : ''}`, () => {
      assert.deepEqual(identifyScheme(stored, def), expected);
    });
  }

  it('lists the supported schemes', () => {
    for (const s of REQUIRED_SCHEMES) {
      assert.ok(SUPPORTED_VERIFY_SCHEMES.includes(s), s);
    }
  });
});

describe('passwords: crypt encodings and MD5-crypt', () => {
  it('decodes what it encodes, and rejects padding bits', () => {
    const digest = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
    const text = encodeGroups(digest, SHA512_CRYPT_GROUPS);
    assert.equal(text.length, 86);
    assert.deepEqual(decodeGroups(text, SHA512_CRYPT_GROUPS, 64), digest);
    assert.equal(decodeGroups(text.slice(0, -1) + 'z', SHA512_CRYPT_GROUPS, 64), null);
    assert.equal(decodeGroups(text.slice(0, -1), SHA512_CRYPT_GROUPS, 64), null);
    assert.equal(encodeGroups(digest.subarray(0, 16), MD5_CRYPT_GROUPS).length, 22);
  });

  it('computes MD5-crypt like openssl passwd -1 and MariaDB ENCRYPT', () => {
    // `openssl passwd -1 -salt abcdefgh 'pässwörd€'` and SELECT ENCRYPT('secret', '$1$somesalt')
    assert.equal(md5Crypt(Buffer.from('pässwörd€'), 'abcdefgh'), '$1$abcdefgh$yf.SYBPl.sbEdP0oHetO21');
    assert.equal(md5Crypt(Buffer.from('secret'), 'somesalt'), '$1$somesalt$jezmI5TSY7mVTzHLgsK5L.');
  });
});

describe('passwords: new hashes', () => {
  let svc: PasswordService;
  before(() => {
    svc = new PasswordService({ threads: 2 });
  });
  after(() => svc.close());

  const shapes: Record<string, RegExp> = {
    ARGON2ID: /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/,
    ARGON2I: /^\{ARGON2I\}\$argon2i\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/,
    'SHA512-CRYPT': /^\{SHA512-CRYPT\}\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$/,
    'SHA256-CRYPT': /^\{SHA256-CRYPT\}\$5\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{43}$/,
    'BLF-CRYPT': /^\{BLF-CRYPT\}\$2y\$10\$[./A-Za-z0-9]{53}$/,
    SSHA512: /^\{SSHA512\}[A-Za-z0-9+/]{107}=$/,
  };
  const pw = 'Grüße, 世界 € and spaces';

  for (const scheme of NEW_PASSWORD_SCHEMES) {
    it(`${scheme}: doveadm's format, and it verifies`, async () => {
      const stored = await svc.hash(pw, scheme);
      assert.match(stored, shapes[scheme]!);
      assert.deepEqual(await svc.verify(stored, pw), { ok: true, scheme });
      assert.deepEqual(await svc.verify(stored, wrong(pw)), { ok: false, scheme });
      assert.notEqual(await svc.hash(pw, scheme), stored, 'salted');
    });
  }

  it('hashes in the configured scheme by default (ARGON2ID)', async () => {
    assert.match(await svc.hash('pw'), /^\{ARGON2ID\}/);
    const sha = new PasswordService({ threads: 1, newScheme: 'SHA512-CRYPT' });
    try {
      assert.match(await sha.hash('pw'), /^\{SHA512-CRYPT\}\$6\$/);
    } finally {
      await sha.close();
    }
  });

  it('makes hashes that doveadm pw -t accepts (skipped without dovecot-core)', async (t) => {
    if (!(await hasCommand('doveadm'))) return t.skip('doveadm is not installed');
    for (const scheme of NEW_PASSWORD_SCHEMES) {
      const stored = await svc.hash(pw, scheme);
      const { stdout } = await execFileP('doveadm', ['pw', '-t', stored, '-p', pw]);
      assert.match(stdout, /\(verified\)/, `${scheme}: ${stdout}`);
    }
  });
});

describe('passwords: verifyDummy', () => {
  it('is always false and imitates the most recent real verification', async () => {
    const svc = new PasswordService({ threads: 1, newScheme: 'BLF-CRYPT' });
    try {
      assert.deepEqual(svc.dummyProfile, { scheme: 'BLF-CRYPT', cost: 10 });
      assert.equal(await svc.verifyDummy('anything'), false);

      const sha = fixtures.find((f) => f.stored.startsWith('$6$rounds=20000$'))!;
      assert.equal((await svc.verify(sha.stored, sha.password)).ok, true);
      assert.deepEqual(svc.dummyProfile, { scheme: 'SHA512-CRYPT', rounds: 20000 });
      assert.equal(await svc.verifyDummy(sha.password), false, 'false even for a password that some user has');

      // Cost follows the profile: the dummy verified against is a hash with the very cost
      // parameters of the last real one (20000 rounds here), so it costs what that one costs;
      // after a PLAIN one it is PLAIN. (Timings themselves belong to bench:passwords.)
      const dummyHash = (profile: typeof svc.dummyProfile) => svc['dummyFor'](profile);
      const parsed = parseStored(await dummyHash(svc.dummyProfile));
      assert.ok(parsed.ok);
      assert.deepEqual(costProfile(parsed.hash), { scheme: 'SHA512-CRYPT', rounds: 20000 });

      const plain = fixtures.find((f) => f.stored.startsWith('{PLAIN}'))!;
      await svc.verify(plain.stored, 'nope');
      assert.deepEqual(svc.dummyProfile, { scheme: 'PLAIN' });
      const plainDummy = parseStored(await dummyHash(svc.dummyProfile));
      assert.ok(plainDummy.ok);
      assert.deepEqual(costProfile(plainDummy.hash), { scheme: 'PLAIN' });
      assert.equal(await svc.verifyDummy('nope'), false);

      const argon = fixtures.find((f) => f.stored.startsWith('$argon2id$v=19$m=8192,t=2,p=4$'))!;
      await svc.verify(argon.stored, 'nope');
      assert.deepEqual(svc.dummyProfile, {
        scheme: 'ARGON2ID',
        memoryCost: 8192,
        timeCost: 2,
        parallelism: 4,
        version: 19,
        hashLength: 32,
      });
      assert.equal(await svc.verifyDummy('nope'), false);
    } finally {
      await svc.close();
    }
  });

  it('bad stored data costs a dummy verification too', async () => {
    const svc = new PasswordService({ threads: 1, newScheme: 'SHA512-CRYPT' });
    try {
      const before = svc.stats.spawned;
      assert.equal((await svc.verify('{FOO}x', 'pw')).ok, false);
      assert.ok(svc.stats.spawned > before, 'a worker did the dummy work');
    } finally {
      await svc.close();
    }
  });
});

describe('passwords: worker pool', () => {
  const sha = fixtures.find((f) => f.stored.startsWith('{SHA512-CRYPT}$6$') && !f.stored.includes('rounds') && f.password === 'secret')!;
  const verifyReq = (stored = sha.stored, plain = sha.password) => ({ op: 'verify' as const, stored, plain, defaultScheme: 'CRYPT' });
  const tempFailMatching = (re: RegExp) => (e: unknown) => isMailError(e, 'TEMP_FAIL') && re.test(e.message);

  it('fails the running task of a crashed worker and carries on with a new worker', async () => {
    const pool = new WorkerPool({ size: 1, maxQueue: 10, taskTimeoutMs: 0 });
    try {
      const crash = pool.run({ op: 'crash' });
      const queued = [pool.run(verifyReq()), pool.run(verifyReq()), pool.run(verifyReq(sha.stored, 'wrong'))];
      await assert.rejects(crash, tempFailMatching(/exited with code 1: crash requested/));
      assert.deepEqual(await Promise.all(queued), [{ ok: true }, { ok: true }, { ok: false }]);
      assert.equal(pool.spawned, 2, 'the crashed worker was replaced');
      // And again, with nothing queued: the next run() spawns the replacement.
      await assert.rejects(pool.run({ op: 'crash' }), tempFailMatching(/crash requested/));
      assert.deepEqual(await pool.run(verifyReq()), { ok: true });
      assert.equal(pool.spawned, 3);
    } finally {
      await pool.close();
    }
  });

  it('answers TEMP_FAIL when a task overruns its timeout, and the worker is reused after', async () => {
    const slow = '$6$rounds=500000$saltsalt$' + 'a'.repeat(85) + '.'; // ~1 s of hashing
    const pool = new WorkerPool({ size: 1, maxQueue: 10, taskTimeoutMs: 100 });
    try {
      const t0 = performance.now();
      await assert.rejects(pool.run(verifyReq(slow, 'x')), tempFailMatching(/longer than 100 ms/));
      const answeredAfter = performance.now() - t0;
      const next = pool.run(verifyReq());
      // The worker finishes the slow hash (it is never terminated mid-task), then takes the next.
      assert.deepEqual(await next, { ok: true });
      const slowEnded = performance.now() - t0;
      assert.ok(answeredAfter < slowEnded / 2, `answered after ${answeredAfter.toFixed(0)} ms, hash took ${slowEnded.toFixed(0)} ms`);
      assert.equal(pool.spawned, 1);
    } finally {
      await pool.close();
    }
  });

  it('bounds the queue: calls beyond it fail at once with TEMP_FAIL', async () => {
    const pool = new WorkerPool({ size: 1, maxQueue: 2, taskTimeoutMs: 0 });
    try {
      const accepted = [pool.run(verifyReq()), pool.run(verifyReq()), pool.run(verifyReq())];
      await assert.rejects(pool.run(verifyReq()), tempFailMatching(/queue is full/));
      assert.deepEqual(await Promise.all(accepted), [{ ok: true }, { ok: true }, { ok: true }]);
    } finally {
      await pool.close();
    }
  });

  it('close() fails queued calls, lets running ones finish, and refuses new ones', async () => {
    const svc = new PasswordService({ threads: 1 });
    const running = svc.verify(sha.stored, sha.password);
    await new Promise((r) => setTimeout(r, 5));
    const queued = assert.rejects(svc.verify(sha.stored, sha.password), tempFailMatching(/closed/));
    await svc.close();
    assert.deepEqual(await running, { ok: true, scheme: 'SHA512-CRYPT' });
    await queued;
    await assert.rejects(svc.verify(sha.stored, sha.password), tempFailMatching(/closed/));
  });

  it('keeps the main thread responsive during a burst of 50 SHA512-CRYPT verifications', async () => {
    const svc = new PasswordService({ threads: 2 });
    try {
      const stored = fixtures.find((f) => f.stored.startsWith('$6$rounds=20000$'))!;
      await svc.verify(stored.stored, stored.password); // start the workers
      const histogram = monitorEventLoopDelay({ resolution: 5 });
      let last = performance.now();
      let maxGap = 0;
      let ticks = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        ticks++;
      }, 5);
      histogram.enable();
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => svc.verify(stored.stored, i % 2 ? stored.password : 'wrong')));
      const batchMs = performance.now() - t0;
      histogram.disable();
      clearInterval(timer);
      assert.equal(results.filter((r) => r.ok).length, 25);
      // 50 x 20000 rounds is ~2 s of hashing: run on the main thread it would stall it for all of it.
      assert.ok(maxGap < batchMs / 5, `max gap ${maxGap.toFixed(1)} ms during a ${batchMs.toFixed(0)} ms batch`);
      assert.ok(ticks > 10, `${ticks} ticks`);
      assert.ok(histogram.max / 1e6 < batchMs / 5, `event loop delay max ${(histogram.max / 1e6).toFixed(1)} ms`);
    } finally {
      await svc.close();
    }
  });
});

describe('passwords: needsRehash (passwords.rehash)', () => {
  const stored = (pred: (f: Fixture) => boolean) => {
    const f = fixtures.find(pred);
    assert.ok(f, 'fixture present');
    return f.stored;
  };
  const argon2 = new PasswordService({ threads: 1 });
  const sha = new PasswordService({ threads: 1, newScheme: 'SHA512-CRYPT' });
  after(async () => {
    await argon2.close();
    await sha.close();
  });

  it('with ARGON2ID configured: every other scheme, and argon2id with less memory or fewer passes, is weaker', async () => {
    const sha512 = stored((f) => f.stored.startsWith('{SHA512-CRYPT}$6$') && !f.stored.includes('rounds='));
    const doveadmArgon2id = stored((f) => f.stored.startsWith('{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$'));
    for (const weak of [
      sha512,
      stored((f) => f.stored.startsWith('$1$')),
      stored((f) => f.scheme === 'DES-CRYPT' && !f.stored.startsWith('{')),
      stored((f) => f.stored.startsWith('{BLF-CRYPT}$2y$08$')),
      stored((f) => f.stored.startsWith('{ARGON2I}$argon2i$')),
      stored((f) => f.stored.startsWith('$argon2id$v=19$m=8192,t=2,p=4$')),
      '{PLAIN}secret',
    ]) {
      assert.equal(argon2.needsRehash(weak), true, weak);
    }
    // doveadm's argon2id has maild's parameters; a new hash is as strong.
    assert.equal(argon2.needsRehash(doveadmArgon2id), false);
    assert.equal(argon2.needsRehash(await argon2.hash('x')), false);
    // node argon2 hash('secret', { memoryCost: 131072, timeCost: 4, parallelism: 2 })
    const stronger = '{ARGON2ID}$argon2id$v=19$m=131072,t=4,p=2$mb8ICUTNLdbEcU0F6a3bbw$WBOKf0Z2ONakX5SeI+ywUofxuBiVuY3AXCcaqA8O0jE';
    assert.equal((await argon2.verify(stronger, 'secret')).ok, true);
    assert.equal(argon2.needsRehash(stronger), false, 'stronger is kept');
    // Values that cannot verify are left alone.
    assert.equal(argon2.needsRehash('{NOPE}x'), false);
    assert.equal(argon2.needsRehash(''), false);
  });

  it('with SHA512-CRYPT configured: argon2id is another scheme (rehashed), fewer rounds are weaker, more are kept', () => {
    assert.equal(sha.needsRehash(stored((f) => f.stored.startsWith('{ARGON2ID}'))), true);
    assert.equal(sha.needsRehash(stored((f) => f.stored.startsWith('{SHA512-CRYPT}$6$') && !f.stored.includes('rounds='))), false);
    assert.equal(sha.needsRehash(stored((f) => f.stored.includes('$6$rounds=10000$'))), false);
    // python3 crypt.crypt('x', '$6$rounds=1000$saltsalt')
    assert.equal(
      sha.needsRehash('$6$rounds=1000$saltsalt$w9KQdgZ0Ki6LoC1UHsgXGBQaO4XJhW7upynW4LSaoTX6YuFX0KIqzhQcvdJFwTJS.I2sYmby8LApILDV7m1xF/'),
      true,
    );
  });
});
