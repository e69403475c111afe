/**
 * `maild import`: the parsers of main.cf, master.cf, mysql_table(5) files and Dovecot's
 * configuration, the query translation, and the configuration generated from the fixtures
 * (a real Postfix 3.7 + Dovecot 2.3 installation and three tutorial-style ones), which must
 * load through the real configuration loader and name what it does not carry over.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig, type LoadedConfig } from '../../src/config/load.js';
import {
  DovecotConfigError,
  fileValue,
  findSections,
  parseConnectString,
  parseDovecotConfig,
  parseKeyValueFile,
  setting,
  type FileSource,
} from '../../src/cli/import/dovecot-conf.js';
import { diskFiles } from '../../src/cli/import/files.js';
import { generateConfig, splitMailPath, type ImportResult } from '../../src/cli/import/generate.js';
import { parseMainCf, parseMapReference } from '../../src/cli/import/main-cf.js';
import { inetEndpoint, parseMasterCf } from '../../src/cli/import/master-cf.js';
import { parseMysqlMap } from '../../src/cli/import/postfix-map.js';
import { isIdentityMap, selectColumns, translateDovecotQuery, translatePostfixQuery } from '../../src/cli/import/queries.js';
import { compileQuery, type QueryName } from '../../src/directory/mysql-backend.js';
import { runCliCaptured } from '../helpers/cli.js';
import { ROOT } from '../helpers/daemon.js';

const SHARED = path.join(ROOT, 'test/fixtures/import/postfix-dovecot');
const FIXTURES = path.join(ROOT, 'test/fixtures/import');

/** An in-memory file tree for the Dovecot parser. */
function memoryFiles(tree: Record<string, string>): FileSource {
  return {
    read: (f) => tree[f],
    glob: (pattern) => {
      const re = new RegExp(
        `^${pattern
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '[^/]*')
          .replace(/\?/g, '.')}$`,
      );
      return Object.keys(tree)
        .filter((f) => re.test(f))
        .sort();
    },
  };
}

/**
 * The files of the installation, with Dovecot's /usr/share/dovecot (protocols.d, which the
 * packages fill) taken from the fixtures: what the test machine has installed must not change
 * what an import of the fixtures gives.
 */
const SHARE = '/usr/share/dovecot/';
const FIXTURE_SHARE = path.join(FIXTURES, 'usr-share-dovecot') + '/';
const fixtureFiles: FileSource = {
  read: (file) => diskFiles.read(file.startsWith(SHARE) ? FIXTURE_SHARE + file.slice(SHARE.length) : file),
  glob: (pattern) =>
    pattern.startsWith(SHARE)
      ? diskFiles.glob(FIXTURE_SHARE + pattern.slice(SHARE.length)).map((f) => SHARE + f.slice(FIXTURE_SHARE.length))
      : diskFiles.glob(pattern),
};

function importFixture(
  postfix: string | undefined,
  dovecot: string | undefined,
  files: FileSource = fixtureFiles,
): { result: ImportResult; config: LoadedConfig } {
  const result = generateConfig({
    ...(postfix ? { postfixDir: postfix } : {}),
    ...(dovecot ? { dovecotDir: dovecot } : {}),
    files,
  });
  const config = parseConfig(result.yaml, '/etc/maild/maild.yaml', { MAILD_DB_PASSWORD: 'from-the-environment' });
  return { result, config };
}

/** Every configured query must be one maild's MySQL backend compiles. */
function assertQueriesCompile(config: LoadedConfig): void {
  for (const [name, text] of Object.entries(config.directory.mysql?.queries ?? {})) {
    if (text !== undefined) assert.doesNotThrow(() => compileQuery(name as QueryName, text), `${name}: ${text}`);
  }
}

function listener(config: LoadedConfig, name: string) {
  const l = config.listeners.find((x) => x.name === name);
  assert.ok(l, `no listener ${name} in ${config.listeners.map((x) => x.name).join(', ')}`);
  return l;
}

describe('maild import: main.cf', () => {
  it('joins continuation lines, skips comments (also inside a continued value) and lets the last setting win', () => {
    const cf = parseMainCf(
      [
        '# a comment',
        'virtual_alias_maps = mysql:/etc/postfix/a.cf,',
        '    mysql:/etc/postfix/b.cf',
        '  # indented comment, not a continuation',
        '\tmysql:/etc/postfix/c.cf',
        'message_size_limit = 1',
        'message_size_limit = 2',
        '',
      ].join('\n'),
    );
    assert.equal(cf.get('virtual_alias_maps'), 'mysql:/etc/postfix/a.cf, mysql:/etc/postfix/b.cf mysql:/etc/postfix/c.cf');
    assert.equal(cf.get('message_size_limit'), '2');
    assert.equal(cf.entries.get('message_size_limit')!.line, 7);
  });

  it('expands $name, ${name}, $(name), ${name?text} and ${name:text}, with Postfix defaults for unset names', () => {
    const cf = parseMainCf(
      [
        'mydomain = example.com',
        'myhostname = mail.$mydomain',
        'a = ${myhostname}/$(mydomain)',
        'b = ${mydomain?{set}} ${nothing?set} ${nothing:{empty}} ${mydomain:empty}',
        'c = $$literal',
        'sasl = ${queue_directory}/private/auth',
      ].join('\n'),
    );
    assert.equal(cf.get('myhostname'), 'mail.example.com');
    assert.equal(cf.get('a'), 'mail.example.com/example.com');
    assert.equal(cf.get('b'), 'set  empty ');
    assert.equal(cf.get('c'), '$literal');
    assert.equal(cf.get('sasl'), '/var/spool/postfix/private/auth');
    assert.equal(cf.get('message_size_limit'), '10240000', "Postfix's default");
    assert.equal(cf.has('message_size_limit'), false);
    assert.throws(() => parseMainCf('a = $b\nb = $a\n').get('a'), /recursion/);
  });

  it('reads map references with and without proxy:', () => {
    assert.deepEqual(parseMapReference('proxy:mysql:/etc/postfix/x.cf'), { type: 'mysql', name: '/etc/postfix/x.cf' });
    assert.deepEqual(parseMapReference('hash:/etc/postfix/virtual'), { type: 'hash', name: '/etc/postfix/virtual' });
  });
});

describe('maild import: master.cf', () => {
  it('reads services with their -o overrides, continuation lines and Postfix 3 { } options', () => {
    const services = parseMasterCf(
      [
        '# service type  private unpriv  chroot  wakeup  maxproc command + args',
        'smtp      inet  n       -       y       -       -       smtpd',
        '#submission inet n       -       y       -       -       smtpd',
        '127.0.0.1:10587 inet n   -       n       -       -       smtpd',
        '    -o syslog_name=postfix/submission',
        '  -o { smtpd_recipient_restrictions = permit_sasl_authenticated, reject }',
        'pickup    unix  n       -       y       60      1       pickup',
      ].join('\n'),
    );
    assert.deepEqual(
      services.map((s) => [s.service, s.type, s.command, s.line]),
      [
        ['smtp', 'inet', 'smtpd', 2],
        ['127.0.0.1:10587', 'inet', 'smtpd', 4],
        ['pickup', 'unix', 'pickup', 7],
      ],
    );
    assert.equal(services[1]!.options.get('syslog_name'), 'postfix/submission');
    assert.equal(services[1]!.options.get('smtpd_recipient_restrictions'), 'permit_sasl_authenticated, reject');
  });

  it('turns service fields into endpoints', () => {
    assert.deepEqual(inetEndpoint('smtp'), { port: 25 });
    assert.deepEqual(inetEndpoint('submissions'), { port: 465 });
    assert.deepEqual(inetEndpoint('127.0.0.1:10587'), { host: '127.0.0.1', port: 10587 });
    assert.deepEqual(inetEndpoint('[::1]:25'), { host: '::1', port: 25 });
    assert.equal(inetEndpoint('nosuchservice'), undefined);
  });
});

describe('maild import: mysql_table(5) files', () => {
  it('reads the query form and the older select_field / table / where_field form', () => {
    const modern = parseMysqlMap(
      "user = u\npassword = p#1\nhosts = db.example:3307 db2.example\ndbname = mail\nquery = SELECT 1 FROM d WHERE name='%s'\n",
    );
    assert.deepEqual(
      { ...modern, unused: [...modern.unused] },
      {
        host: 'db.example',
        port: 3307,
        otherHosts: ['db2.example'],
        user: 'u',
        password: 'p#1',
        dbname: 'mail',
        query: "SELECT 1 FROM d WHERE name='%s'",
        unused: [],
      },
    );
    const old = parseMysqlMap(
      'user = mail_admin\npassword = x\ndbname = mail\ntable = forwardings\nselect_field = destination\nwhere_field = source\nadditional_conditions = and active = 1\nhosts = unix:/run/mysqld/mysqld.sock\nresult_format = %d/%u\n',
    );
    assert.equal(old.query, "SELECT destination FROM forwardings WHERE source = '%s' and active = 1");
    assert.equal(old.socket, '/run/mysqld/mysqld.sock');
    assert.deepEqual([...old.unused], [['result_format', '%d/%u']]);
  });
});

describe('maild import: Dovecot configuration', () => {
  it('reads nested sections, includes (globs, include_try, relative paths), quotes, comments and continuations', () => {
    const files = memoryFiles({
      '/etc/dovecot/dovecot.conf': [
        '!include_try /usr/share/dovecot/protocols.d/*.protocol',
        'protocols = imap # trailing comment',
        'listen = "127.0.0.1"',
        '!include conf.d/*.conf',
        '!include_try missing.conf',
      ].join('\n'),
      '/etc/dovecot/conf.d/10-master.conf': [
        'service imap-login {',
        '  inet_listener imaps {',
        '    port = 10993',
        '    ssl = yes',
        '  }',
        '}',
        'protocols = $protocols pop3',
      ].join('\n'),
      '/etc/dovecot/conf.d/20-mail.conf': [
        'mail_location = maildir:/var/mail/vhosts/%d/%n',
        'namespace inbox {',
        '  mailbox "Sent Messages" {',
        '    special_use = \\Sent',
        '  }',
        '}',
        'ssl_cert = </etc/ssl/mail.crt',
        'auth_mechanisms = plain \\',
        '  login',
        'protocol imap {',
        '  mail_plugins = $mail_plugins imap_quota',
        '}',
        'mail_plugins = quota',
      ].join('\n'),
      '/etc/dovecot/conf.d/readme.txt': 'not included',
    });
    const root = parseDovecotConfig('/etc/dovecot/dovecot.conf', files);
    assert.equal(setting(root, 'protocols'), 'imap pop3');
    assert.equal(setting(root, 'listen'), '127.0.0.1');
    assert.equal(setting(root, 'auth_mechanisms'), 'plain login');
    assert.equal(fileValue(setting(root, 'ssl_cert')!), '/etc/ssl/mail.crt');
    assert.equal(fileValue('inline text'), undefined);
    const imaps = findSections(root, 'inet_listener', 'imaps')[0]!;
    assert.equal(setting(imaps, 'port'), '10993');
    assert.equal(imaps.file, '/etc/dovecot/conf.d/10-master.conf');
    const sent = findSections(root, 'mailbox', 'Sent Messages')[0]!;
    assert.equal(setting(sent, 'special_use'), '\\Sent');
    // Set later at the top level, so the protocol section saw it empty.
    assert.equal(setting(findSections(root, 'protocol', 'imap')[0]!, 'mail_plugins'), 'imap_quota');
  });

  it('refuses what Dovecot refuses: a missing !include, an unclosed section, a stray }', () => {
    assert.throws(
      () => parseDovecotConfig('/d/dovecot.conf', memoryFiles({ '/d/dovecot.conf': '!include nothere.conf\n' })),
      (err) => err instanceof DovecotConfigError && /nothere\.conf does not exist/.test(err.message),
    );
    assert.throws(() => parseDovecotConfig('/d/dovecot.conf', memoryFiles({ '/d/dovecot.conf': 'service imap {\n' })), /is not closed/);
    assert.throws(() => parseDovecotConfig('/d/dovecot.conf', memoryFiles({ '/d/dovecot.conf': '}\n' })), /without a section/);
  });

  it('reads dovecot-sql.conf.ext with continued queries and quoted connect strings', () => {
    const kv = parseKeyValueFile(
      "driver = mysql\nconnect = \"host=/run/mysqld/mysqld.sock dbname=mail user=dovecot password='p w'\"\npassword_query = SELECT a \\\n  FROM b WHERE c = '%u'\n",
    );
    assert.equal(kv.get('password_query'), "SELECT a FROM b WHERE c = '%u'");
    assert.deepEqual(Object.fromEntries(parseConnectString(kv.get('connect')!)), {
      host: '/run/mysqld/mysqld.sock',
      dbname: 'mail',
      user: 'dovecot',
      password: 'p w',
    });
  });

  it('splits a mail_location path into maild root and layout', () => {
    assert.deepEqual(splitMailPath('/var/mail/vhosts/%d/%n'), { root: '/var/mail/vhosts', layout: '%d/%n' });
    assert.deepEqual(splitMailPath('/home/vmail/%Ld/%Ln/Maildir/'), { root: '/home/vmail', layout: '%d/%n/Maildir' });
    assert.deepEqual(splitMailPath('/srv/mail/%{user}'), { root: '/srv/mail', layout: '%u' });
    assert.equal(splitMailPath('/var/mail/shared'), undefined);
    assert.equal(splitMailPath('/var/mail/%2.256Hn/%n'), undefined);
  });
});

describe('maild import: queries', () => {
  it("translates Postfix's and Dovecot's placeholders into maild's", () => {
    assert.deepEqual(translatePostfixQuery("SELECT goto FROM alias WHERE address='%s' AND x = '%U@%D';"), {
      ok: true,
      query: "SELECT goto FROM alias WHERE address='%s' AND x = '%u@%d'",
    });
    assert.equal(translatePostfixQuery("SELECT 1 FROM d WHERE name = '%2'").ok, false);
    // Dovecot's %u is the whole user name: maild's %s.
    assert.deepEqual(translateDovecotQuery("SELECT email AS user, password FROM u WHERE email = '%u';"), {
      ok: true,
      query: "SELECT email AS user, password FROM u WHERE email = '%s'",
    });
    assert.deepEqual(translateDovecotQuery("SELECT x FROM u WHERE n = '%Ln' AND d = '%{domain}' AND y LIKE 'a%%'"), {
      ok: true,
      query: "SELECT x FROM u WHERE n = '%n' AND d = '%d' AND y LIKE 'a%%'",
    });
    const refused = translateDovecotQuery("SELECT x FROM u WHERE ip = '%r'");
    assert.equal(refused.ok, false);
    assert.match(!refused.ok ? refused.reason : '', /%r/);
  });

  it('finds the names of the columns a SELECT returns', () => {
    assert.deepEqual(
      selectColumns("SELECT email AS user, u.password, CONCAT('*:bytes=', quota) quota_rule, COUNT(*) FROM users u").map((c) => c.name),
      ['user', 'password', 'quota_rule', undefined],
    );
    assert.ok(isIdentityMap("SELECT email FROM virtual_users WHERE email='%s' AND `enable`=1"));
    assert.ok(!isIdentityMap("SELECT destination FROM virtual_aliases WHERE source='%s'"));
  });
});

describe('maild import: generated configurations', () => {
  it('carries over the real Postfix 3.7 + Dovecot 2.3 installation', () => {
    const { result, config } = importFixture(`${SHARED}/postfix`, `${SHARED}/dovecot`);
    assert.equal(config.hostname, 'mail.example.test');
    assert.deepEqual(config.mail, { root: '/var/mail/vhosts', layout: '%d/%n', blocking_reads: true });
    const summary = (name: string) => {
      const l = listener(config, name);
      return [l.protocol, l.path ?? `${l.address}:${l.port}`, l.tls];
    };
    assert.deepEqual(summary('mx'), ['smtp', '127.0.0.1:10025', 'starttls']);
    assert.deepEqual(summary('submission'), ['submission', '127.0.0.1:10587', 'starttls']);
    assert.deepEqual(summary('submissions'), ['submission', '127.0.0.1:10465', 'implicit']);
    assert.deepEqual(summary('imap'), ['imap', '127.0.0.1:10143', 'starttls']);
    assert.deepEqual(summary('imaps'), ['imap', '127.0.0.1:10993', 'implicit']);
    assert.deepEqual(summary('pop3'), ['pop3', '127.0.0.1:10110', 'starttls']);
    assert.deepEqual(summary('pop3s'), ['pop3', '127.0.0.1:10995', 'implicit']);
    assert.deepEqual(summary('lmtp'), ['lmtp', '/var/spool/postfix/private/dovecot-lmtp', 'none']);
    assert.deepEqual(summary('lmtp-2'), ['lmtp', '127.0.0.1:10024', 'none']);
    assert.deepEqual(summary('dovecot-auth'), ['dovecot-auth', '/var/spool/postfix/private/auth', 'none']);
    assert.equal(listener(config, 'dovecot-auth').socket_mode, '0660');
    assert.equal(config.listeners.length, 10, 'the submission-login listener on port 0 is off');
    assert.deepEqual(config.tls, { cert: '/etc/ssl/mail/mail.crt', key: '/etc/ssl/mail/mail.key' });

    const mysql = config.directory.mysql!;
    assert.equal(config.directory.backend, 'mysql');
    assert.deepEqual([mysql.host, mysql.port, mysql.user, mysql.database], ['127.0.0.1', 3306, 'mailserver', 'mailserver']);
    assert.equal(mysql.password, 'from-the-environment');
    assert.ok(!result.yaml.includes('mailserver123'), 'the password is not written into the file');
    assert.equal(result.databasePassword, 'mailserver123');
    assert.equal(mysql.queries.domain, "SELECT 1 FROM virtual_domains WHERE name='%s'");
    assert.equal(mysql.queries.user, "SELECT email AS user, password FROM virtual_users WHERE email = '%s' AND `enable` = 1");
    assert.equal(mysql.queries.alias, "SELECT destination FROM virtual_aliases WHERE source='%s'", 'email2email is not needed');
    assert.equal(mysql.queries.transport, undefined);
    assertQueriesCompile(config);
    assert.equal(config.passwords.default_scheme, 'SHA512-CRYPT');
    assert.equal(config.limits.message_size, 10_240_000, "Postfix's default message_size_limit");
    assert.equal(config.directory.recipient_delimiter, '+');
    assert.deepEqual(config.trusted_networks, ['127.0.0.0/8']);
    assert.equal(config.auth.cleartext, 'trusted_networks', 'disable_plaintext_auth = no, narrowed to mynetworks');
    assert.equal(config.queue.relayhost, '');

    assert.deepEqual(
      result.notCarried.map((n) => n.split(':')[0]),
      [
        'smtpd_sasl_auth_enable = yes (main.cf) on 127.0.0.1',
        'disable_plaintext_auth = no (conf.d/10-auth.conf)',
        'login_trusted_networks = 127.0.0.0/8 (conf.d/10-auth.conf)',
      ],
    );
    assert.match(result.yaml, /^# not carried over:\n#   - smtpd_sasl_auth_enable = yes/m);
  });

  it('turns blocking reads off for a Dovecot whose mail is on NFS (mail_nfs_storage = yes)', () => {
    const mailConf = `${SHARED}/dovecot/conf.d/10-mail.conf`;
    const onNfs: FileSource = {
      ...fixtureFiles,
      read: (file) => {
        const text = fixtureFiles.read(file);
        return file === mailConf && text !== undefined ? `${text}\nmail_nfs_storage = yes\n` : text;
      },
    };
    const { result, config } = importFixture(`${SHARED}/postfix`, `${SHARED}/dovecot`, onNfs);
    assert.equal(config.mail.blocking_reads, false);
    assert.match(result.yaml, /# mail_nfs_storage = yes \(.*10-mail\.conf.*\): message files are read through the thread pool/);
  });

  it('carries over the 2008 tutorial (domains/users/forwardings, ENCRYPT passwords, select_field maps, dovecot deliver)', () => {
    const dir = `${FIXTURES}/tutorial-2008`;
    const { result, config } = importFixture(`${dir}/postfix`, `${dir}/dovecot`);
    assert.equal(config.hostname, 'server1.example.com', 'myhostname = server1.$mydomain');
    assert.deepEqual(config.mail, { root: '/home/vmail', layout: '%d/%n/Maildir', blocking_reads: true });
    assert.deepEqual(
      config.listeners.map((l) => `${l.name} ${l.protocol} ${l.path ?? l.port} ${l.tls}`),
      [
        'mx smtp 25 starttls',
        'submission submission 587 starttls',
        'submissions submission 465 implicit',
        'imap imap 143 starttls',
        'imaps imap 993 implicit',
        'pop3 pop3 110 starttls',
        'pop3s pop3 995 implicit',
        'dovecot-auth dovecot-auth /var/spool/postfix/private/auth none',
      ],
    );
    const q = config.directory.mysql!.queries;
    assert.equal(q.domain, "SELECT 'virtual' FROM domains WHERE domain = '%s'");
    assert.equal(q.user, "SELECT email AS user, password FROM users WHERE email = '%s'");
    assert.equal(q.alias, "SELECT destination FROM forwardings WHERE source = '%s'");
    assert.equal(q.transport, "SELECT transport FROM transport WHERE domain='%s'");
    assertQueriesCompile(config);
    assert.equal(config.directory.mysql!.database, 'mail');
    // mail_uid = 5000: the Maildirs' owner by number, looked up as such at start.
    assert.equal(config.user, '5000');
    assert.equal(config.passwords.default_scheme, 'CRYPT');
    assert.equal(config.limits.message_size, 30_720_000);
    assert.equal(config.imap.hierarchy_separator, '.');
    assert.deepEqual(config.trusted_networks, ['127.0.0.0/8', '::ffff:127.0.0.0/104', '::1/128']);
    assert.equal(config.auth.cleartext, 'never');
    assert.deepEqual(config.tls, { cert: '/etc/ssl/certs/dovecot.pem', key: '/etc/ssl/private/dovecot.pem' });
    const named = result.notCarried.join('\n');
    for (const expected of [
      /^prefix = INBOX\. \(dovecot\.conf\)/m,
      /^virtual_mailbox_limit_maps = /m,
      /^smtpd_tls_cert_file = \/etc\/postfix\/smtpd\.cert \(main\.cf\): maild has one certificate/m,
      /^inet_protocols = all \(Postfix's default\)/m,
    ])
      assert.match(named, expected);
    // mail_plugins = sieve is carried: maild runs the users' Sieve scripts itself.
    assert.doesNotMatch(named, /sieve/);
    assert.equal(result.notCarried.length, 6, named);
  });

  it('carries over a PostfixAdmin installation (alias domains, quota, LMTP socket, special folders)', () => {
    const dir = `${FIXTURES}/postfixadmin`;
    const { result, config } = importFixture(`${dir}/postfix`, `${dir}/dovecot`);
    const mysql = config.directory.mysql!;
    assert.equal(mysql.socket, '/run/mysqld/mysqld.sock', 'host=localhost: the client library used the socket');
    assert.equal(result.databasePassword, 'Pa$$word#1');
    assert.equal(mysql.queries.domain, "SELECT domain FROM domain WHERE domain='%s' AND active = '1'");
    assert.equal(
      mysql.queries.user,
      "SELECT username AS user, password, quota AS quota FROM mailbox WHERE username = '%s' AND active = '1'",
    );
    assert.equal(mysql.queries.alias, "SELECT goto FROM alias WHERE address='%s' AND active = '1'");
    assert.equal(mysql.queries.alias_domain, "SELECT target_domain FROM alias_domain WHERE alias_domain = '%s' AND active = '1'");
    assertQueriesCompile(config);
    assert.equal(config.passwords.default_scheme, 'MD5-CRYPT');
    assert.deepEqual(
      config.listeners.map((l) => `${l.name} ${l.protocol} ${l.path ?? l.port} ${l.tls}`),
      [
        'mx smtp 25 starttls',
        'submission submission 587 starttls',
        'submissions submission 465 implicit',
        'imaps imap 993 implicit',
        'lmtp lmtp /var/spool/postfix/private/dovecot-lmtp none',
        'dovecot-auth dovecot-auth /var/spool/postfix/private/auth none',
      ],
      'imap on port 0 is off, and pop3 is not in protocols',
    );
    assert.equal(config.imap.hierarchy_separator, '/');
    assert.deepEqual(config.imap.special_folders, {
      Drafts: { use: '\\Drafts', auto: 'subscribe' },
      Sent: { use: '\\Sent', auto: 'subscribe' },
      'Deleted Messages': { use: '\\Trash', auto: 'no' },
      Spam: { use: '\\Junk', auto: 'create' },
    });
    assert.equal(config.imap.auto_special_folders, 'always', 'Dovecot creates its auto folders at every login');
    assert.equal(config.imap.connections_per_user_ip, 20);
    assert.equal(config.queue.relayhost, '[smtp.provider.example]:587');
    assert.equal(config.queue.tls, 'encrypt');
    assert.equal(config.auth.cleartext, 'never');
    assert.deepEqual(config.trusted_networks, ['127.0.0.0/8', '::1/128']);
    // Pigeonhole's 90-sieve.conf: sieve_after names a directory, which stands for its scripts.
    assert.deepEqual(config.sieve.before, ['/etc/dovecot/sieve/spam-to-junk.sieve']);
    assert.deepEqual(config.sieve.after, ['/etc/dovecot/sieve/after.d/10-first.sieve', '/etc/dovecot/sieve/after.d/20-keep.sieve']);
    assert.equal(config.sieve.global_dir, '/etc/dovecot/sieve/global');
    assert.equal(config.sieve.location, 'file:~/sieve/%n;active=~/.dovecot.sieve');
    assert.equal(config.sieve.max_script_size, 1024 * 1024);
    assert.equal(config.sieve.max_actions, 64);
    assert.equal(config.sieve.redirect_envelope_from, 'recipient');
    assert.equal(config.sieve.vacation.min_period, 86_400_000);
    assert.equal(config.sieve.vacation.default_period, 7 * 86_400_000);
    assert.match(result.yaml, /# plugin \{ sieve_max_actions = 64 \} \(conf\.d\/90-sieve\.conf\)\n  max_actions: 64\n/);
    assert.equal(result.notCarried.length, 3, result.notCarried.join('\n'));
    assert.ok(result.notCarried.filter((n) => !/IPv6/.test(n)).every((n) => /^plugin \{ sieve_extensions = .*fixed set/.test(n)));
  });

  it('names everything it cannot carry over, and still writes a configuration that loads', () => {
    const dir = `${FIXTURES}/unsupported`;
    const { result, config } = importFixture(`${dir}/postfix`, `${dir}/dovecot`);
    const named = result.notCarried.join('\n');
    for (const expected of [
      /^mail_location = sdbox:~\/dbox .*Maildir only/m,
      /^namespace shared /m,
      /^passdb \{ driver = passwd-file/m,
      /^passdb \{ driver = ldap/m,
      /^userdb \{ driver = passwd-file/m,
      /^auth_username_format = %Ln/m,
      /^auth_mechanisms = plain login cram-md5 .*CRAM-MD5/m,
      /^content_filter = amavis:\[127\.0\.0\.1\]:10024 \(main\.cf\)/m,
      /^127\.0\.0\.1:10025 inet smtpd \(master\.cf line 12\): the return path of content_filter/m,
      /^non_smtpd_milters = \$smtpd_milters/m,
      /^-o smtpd_milters=inet:localhost:8891 on submission/m,
      /^smtp inet postscreen \(master\.cf line 1\)/m,
      /^smtpd_sasl_type = cyrus/m,
      /^virtual_mailbox_domains = hash:\/etc\/postfix\/vdomains/m,
      /^virtual_mailbox_maps = hash:\/etc\/postfix\/vmailbox/m,
      /^virtual_alias_maps = hash:\/etc\/postfix\/virtual/m,
      /^sender_canonical_maps = /m,
      /^mydestination = .*Unix accounts/m,
      /^smtpd_recipient_restrictions items check_policy_service unix:private\/policyd-spf \(main\.cf\)/m,
      /^mynetworks entry hash:\/etc\/postfix\/network_table/m,
      /^message_size_limit = 0/m,
      /^recipient_delimiter = \+- .*"\+" was kept/m,
      /^smtpd_tls_chain_files = /m,
      /^ssl_min_protocol = TLSv1\.2/m,
      /^pop3_uidl_format = %g \(conf\.d\/20-pop3\.conf\)/m,
      /^inet_interfaces = 192\.0\.2\.10, 127\.0\.0\.1 .*192\.0\.2\.10 was taken/m,
    ])
      assert.match(named, expected);
    // The YAML names them at the top too.
    for (const n of result.notCarried) assert.ok(result.yaml.includes(`#   - ${n}\n`), n);
    assert.equal(config.directory.backend, 'file', 'no MySQL directory to carry over');
    assert.equal(config.directory.recipient_delimiter, '+');
    assert.equal(config.limits.message_size, 26_214_400, "maild's default: Postfix had no limit");
    assert.deepEqual(config.trusted_networks, ['127.0.0.0/8', '192.0.2.0/24']);
    // smtpd_milters with milter_default_action = accept, and the DNSBL of the restrictions.
    assert.deepEqual(
      config.inbound.milters.map((m) => [m.address, m.default_action]),
      [
        ['inet:localhost:8891', 'accept'],
        ['inet:localhost:8893', 'accept'],
      ],
    );
    assert.deepEqual(
      config.inbound.dnsbl.lists.map((l) => [l.zone, l.type, l.allow]),
      [['zen.spamhaus.org', 'ip', false]],
    );
    assert.deepEqual(
      config.listeners.map((l) => `${l.name} ${l.address}:${l.port} ${l.tls}`),
      [
        'mx 192.0.2.10:25 none',
        'submission 192.0.2.10:587 starttls',
        'imap 0.0.0.0:143 starttls',
        'imaps 0.0.0.0:993 implicit',
        'pop3 0.0.0.0:110 starttls',
        'pop3s 0.0.0.0:995 implicit',
        // protocols = ... sieve: Pigeonhole's ManageSieve, on RFC 5804's port.
        'sieve 0.0.0.0:4190 starttls',
      ],
      "no listener for amavis' re-injection port",
    );
  });

  it('names domains listed in main.cf, leaves out the SASL socket Postfix did not use, and points out other database users', () => {
    const map = (query: string) => `hosts = 127.0.0.1\nuser = postfix\npassword = p\ndbname = mail\nquery = ${query}\n`;
    const result = generateConfig({
      postfixDir: '/etc/postfix',
      dovecotDir: '/etc/dovecot',
      files: memoryFiles({
        '/etc/postfix/main.cf': [
          'virtual_mailbox_domains = example.com, example.net',
          'virtual_mailbox_maps = mysql:/etc/postfix/mailboxes.cf',
          'virtual_alias_maps = mysql:/etc/postfix/aliases.cf',
          'smtpd_sasl_type = dovecot',
          'smtpd_sasl_path = private/auth',
        ].join('\n'),
        '/etc/postfix/mailboxes.cf': map("SELECT 1 FROM users WHERE email = '%s'"),
        '/etc/postfix/aliases.cf': map("SELECT dest FROM aliases WHERE src = '%s'"),
        '/etc/dovecot/dovecot.conf':
          'mail_location = maildir:/srv/mail/%d/%n\npassdb {\n  driver = sql\n  args = /etc/dovecot/sql.conf\n}\n',
        '/etc/dovecot/sql.conf':
          "driver = mysql\nconnect = host=127.0.0.1 dbname=mail user=dovecot\npassword_query = SELECT email AS user, password FROM users WHERE email = '%u'\n",
      }),
    });
    assert.match(
      result.notCarried.join('\n'),
      /^virtual_mailbox_domains = example\.com: maild reads MySQL only; names listed in main\.cf are not read/m,
    );
    const config = parseConfig(result.yaml, '/etc/maild/maild.yaml', {});
    assert.ok(!config.listeners.some((l) => l.protocol === 'dovecot-auth'), 'smtpd_sasl_auth_enable was never on');
    assert.equal(config.directory.mysql!.user, 'dovecot');
    assert.match(result.yaml, /read as postfix: give dovecot SELECT on their tables too/);
    assert.equal(config.directory.mysql!.queries.alias, "SELECT dest FROM aliases WHERE src = '%s'");
  });

  it('imports Dovecot alone and Postfix alone', () => {
    const dovecotOnly = importFixture(undefined, `${SHARED}/dovecot`);
    assert.deepEqual(
      dovecotOnly.config.listeners.map((l) => l.protocol),
      ['imap', 'imap', 'pop3', 'pop3', 'lmtp', 'lmtp'],
    );
    assert.equal(
      dovecotOnly.config.directory.mysql!.queries.user,
      "SELECT email AS user, password FROM virtual_users WHERE email = '%s' AND `enable` = 1",
    );
    const postfixOnly = importFixture(`${SHARED}/postfix`, undefined);
    assert.equal(
      postfixOnly.config.directory.mysql!.queries.user,
      "SELECT '%s' AS email, NULL AS password FROM (SELECT 1 FROM virtual_users WHERE email='%s' AND `enable`=1) AS mailbox",
    );
    assertQueriesCompile(postfixOnly.config);
    assert.match(postfixOnly.result.notCarried.join('\n'), /^passwords: no Dovecot SQL password_query/m);
  });
});

describe('maild import: the command', () => {
  const run = runCliCaptured;

  it('exits 64 without --postfix or --dovecot, 1 when a directory cannot be read, and writes --output', async () => {
    assert.equal((await run(['import'])).code, 64);
    assert.equal((await run(['import', 'extra', '--postfix', '/etc/postfix'])).code, 64);
    const missing = await run(['import', '--postfix', '/nonexistent/postfix']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /\/nonexistent\/postfix\/main\.cf: cannot read/);

    const dir = await mkdtemp(path.join(os.tmpdir(), 'maild-import-'));
    try {
      const output = path.join(dir, 'maild.yaml');
      const r = await run(['import', '--postfix', `${SHARED}/postfix`, '--dovecot', `${SHARED}/dovecot`, '--output', output]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /not carried over: login_trusted_networks = 127\.0\.0\.0\/8/);
      assert.match(r.stderr, /MAILD_DB_PASSWORD/);
      const written = await readFile(output, 'utf8');
      assert.ok(parseConfig(written, output, { MAILD_DB_PASSWORD: 'x' }).listeners.length > 0);
      const printed = await run(['import', '--postfix', `${SHARED}/postfix`, '--dovecot', `${SHARED}/dovecot`]);
      assert.equal(printed.stdout, written);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('maild import: the checks of incoming mail', () => {
  it('reads reply filters of reject_rbl_client as the addresses they stand for', async () => {
    const { expandReplyFilter } = await import('../../src/cli/import/inbound.js');
    assert.deepEqual(expandReplyFilter('127.0.0.2'), ['127.0.0.2']);
    assert.deepEqual(expandReplyFilter('127.0.0.[2..4]'), ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    assert.deepEqual(expandReplyFilter('127.0.[0;1].2'), ['127.0.0.2', '127.0.1.2']);
    assert.equal(expandReplyFilter('127.0.[0..255].[0..255]'), undefined, 'too many to list');
    assert.equal(expandReplyFilter('127.0.0.*'), undefined);
  });
});
