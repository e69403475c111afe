import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig, redactConfig, substituteEnv } from '../../src/config/load.js';
import { parseDuration, parseSize } from '../../src/config/schema.js';
import { ROOT } from '../helpers/daemon.js';

describe('configuration', () => {
  it('parses sizes and durations the way Postfix-minded operators write them', () => {
    assert.equal(parseSize('25M'), 26_214_400);
    assert.equal(parseSize('512k'), 524_288);
    assert.equal(parseSize('1G'), 1_073_741_824);
    assert.equal(parseSize(1000), 1000);
    assert.equal(parseSize('lots'), undefined);
    assert.equal(parseSize(-1), undefined);
    assert.equal(parseDuration('300'), 300_000);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('soon'), undefined);
  });

  it('substitutes ${VAR} and ${VAR:-default}, keeps $${literal}, and names the key of an unset variable', () => {
    const env = { DB: 'secret', PORT: '2525' };
    assert.deepEqual(substituteEnv({ a: '${DB}', b: ['x${PORT}y'], c: '${NOPE:-fallback}', d: '$${DB}' }, env), {
      a: 'secret',
      b: ['x2525y'],
      c: 'fallback',
      d: '${DB}',
    });
    assert.throws(
      () => substituteEnv({ directory: { mysql: { password: '${UNSET_ONE}' } } }, env),
      /directory\.mysql\.password: environment variable UNSET_ONE is not set/,
    );
  });

  it('resolves relative paths from the config file and fills in defaults', () => {
    const cfg = parseConfig('listeners: [{protocol: smtp, port: "2525"}]\nmail: {root: ../mail}\n', '/etc/maild/sub/maild.yaml', {});
    assert.equal(cfg.mail.root, '/etc/maild/mail');
    assert.equal(cfg.data_dir, '/etc/maild/sub/data');
    assert.equal(cfg.listeners[0]!.port, 2525, 'numbers coming from ${VAR} strings are accepted');
    assert.equal(cfg.limits.message_size, 26_214_400);
    assert.deepEqual(cfg.trusted_networks, [], 'nobody may relay by default');
    assert.equal(cfg.directory.backend, 'file');
    assert.equal(cfg.imap.hierarchy_separator, '.', "Dovecot's separator for Maildir++ when its config sets none");
    assert.equal(cfg.auth.cleartext, 'never', 'no passwords before TLS by default');
    assert.equal(cfg.imap.connections_per_user_ip, 10);
  });

  it('reads imap.special_folders in both forms: { use, auto } and the older plain special use', () => {
    const cfg = parseConfig(
      "listeners: [{protocol: smtp, port: 25}]\nimap:\n  special_folders:\n    Sent: '\\Sent'\n    Spam: { use: '\\Junk' }\n    Old: { use: '\\Archive', auto: false }\n    Drafts: { use: '\\Drafts', auto: create }\n",
      '/x.yaml',
      {},
    );
    assert.deepEqual(cfg.imap.special_folders, {
      Sent: { use: '\\Sent', auto: 'subscribe' },
      Spam: { use: '\\Junk', auto: 'no' },
      Old: { use: '\\Archive', auto: 'no' },
      Drafts: { use: '\\Drafts', auto: 'create' },
    });
    assert.equal(cfg.imap.auto_special_folders, 'new_maildir');
    assert.throws(
      () => parseConfig("listeners: [{protocol: smtp, port: 25}]\nimap: {special_folders: {X: {use: '\\Bogus'}}}\n", '/x.yaml', {}),
      /special_folders/,
    );
  });

  it('takes dovecot-auth listeners on a unix socket with mode, owner and group, and their limits', () => {
    const cfg = parseConfig(
      [
        'listeners:',
        '  - {protocol: dovecot-auth, path: /var/spool/postfix/private/maild-auth, socket_mode: "0660", socket_group: postfix}',
        '  - {protocol: dovecot-auth, address: 127.0.0.1, port: 12345}',
        'dovecot_auth: {idle_timeout: 10m}',
        '',
      ].join('\n'),
      '/x.yaml',
      {},
    );
    assert.equal(cfg.listeners[0]!.socket_group, 'postfix');
    assert.equal(cfg.listeners[0]!.socket_owner, undefined);
    assert.equal(cfg.dovecot_auth.idle_timeout, 600_000);
    assert.equal(cfg.dovecot_auth.pending_requests, 64);
  });

  it('refuses listeners that make no sense', () => {
    assert.throws(
      () => parseConfig('listeners: [{protocol: smtp}]\n', '/x.yaml', {}),
      /listeners\[0\]\.port: a listener needs a port or a path/,
    );
    assert.throws(
      () => parseConfig('listeners: [{protocol: smtp, path: /run/x}]\n', '/x.yaml', {}),
      /unix sockets are for lmtp and dovecot-auth listeners/,
    );
    assert.throws(
      () => parseConfig('listeners: [{protocol: dovecot-auth, port: 12345, tls: implicit}]\n', '/x.yaml', {}),
      /dovecot-auth speaks no TLS/,
    );
    assert.throws(
      () => parseConfig('listeners: [{protocol: lmtp, port: 24, socket_group: postfix}]\n', '/x.yaml', {}),
      /socket_owner and socket_group are for unix socket listeners/,
    );
    assert.throws(
      () => parseConfig('listeners: [{protocol: lmtp, path: /run/x, tls: starttls}]\n', '/x.yaml', {}),
      /a unix socket listener takes no TLS/,
    );
    assert.throws(
      () => parseConfig('listeners: [{protocol: smtp, port: 25}]\ntls: {cert: /x.pem}\n', '/x.yaml', {}),
      /tls: give both cert and key/,
    );
    assert.throws(() => parseConfig('listeners: [{protocol: smtp, port: 25}]\nmail: {layout: "../%d"}\n', '/x.yaml', {}), /mail\.layout/);
    assert.throws(
      () => parseConfig('listeners: [{protocol: smtp, port: 25}]\ntrusted_networks: [everyone]\n', '/x.yaml', {}),
      /trusted_networks\[0\]/,
    );
  });

  it('masks secrets in the effective configuration', () => {
    const cfg = parseConfig(
      'listeners: [{protocol: smtp, port: 25}]\ndirectory: {backend: mysql, mysql: {password: "${PW}"}}\n',
      '/x.yaml',
      { PW: 'hunter2' },
    );
    assert.equal(cfg.directory.mysql!.password, 'hunter2');
    assert.ok(!JSON.stringify(redactConfig(cfg)).includes('hunter2'));
  });

  for (const file of ['quickstart.yaml', 'production.example.yaml', 'container.yaml']) {
    it(`ships a valid config/${file}`, async () => {
      const text = await readFile(path.join(ROOT, 'config', file), 'utf8');
      const cfg = parseConfig(text, path.join(ROOT, 'config', file), { MAILD_DB_PASSWORD: 'x' });
      assert.ok(cfg.listeners.length > 0);
    });
  }
});
