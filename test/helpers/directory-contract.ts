/**
 * The directory contract: one suite that every backend must pass, so the file and MySQL
 * backends resolve addresses identically. Each backend test file calls runDirectoryContract
 * with a factory that returns an empty, writable backend.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Directory } from '../../src/directory/directory.js';
import { PasswordService } from '../../src/directory/passwords/index.js';
import type { DirectoryAdmin, DirectorySource } from '../../src/directory/types.js';
import { isMailError, type ErrorCode } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';

export type Backend = DirectorySource & DirectoryAdmin;

export interface BackendFactory {
  create(): Promise<Backend>;
  destroy(backend: Backend): Promise<void>;
  /** Replaces the backend's transport table (the admin side has no transport editing). */
  setTransports(backend: Backend, entries: Record<string, string>): Promise<void>;
}

/** The transport table every backend is loaded with; one key in mixed case, as an admin may write it. */
export const contractTransports: Record<string, string> = {
  'relay.example': 'smtp:[relay.example.com]:587',
  '.relay.example': 'smtp:[sub-relay.example.com]',
  'lan.example': '[10.0.0.5]',
  '.corp.example': 'relay.corp.example',
  'deep.corp.example': 'lmtp:inet:127.0.0.1:24',
  '.deep2.corp.example': 'smtp:[deep2.relay.example]:2525',
  'Mixed.Example': 'smtp:[mixed.relay.example]',
};

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isMailError(err), `expected a MailError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

export function runDirectoryContract(name: string, factory: BackendFactory): void {
  describe(`directory contract: ${name}`, () => {
    let backend: Backend;
    let directory: Directory;
    let passwords: PasswordService;

    before(async () => {
      backend = await factory.create();
      passwords = new PasswordService({ threads: 1 });
      // Caching off, so every assertion sees the backend's current state.
      directory = new Directory(backend, {
        recipientDelimiter: '+',
        cache: { positiveTtlMs: 0, negativeTtlMs: 0, maxEntries: 0 },
        passwords,
        logger: silentLogger,
      });
      const pw = await passwords.hash('s3cret pass', 'SHA512-CRYPT');
      await backend.addDomain('example.com');
      await backend.addDomain('Example.ORG');
      await backend.addDomain('example.net', 'example.com');
      await backend.addDomain('nocatchall.example');
      for (const user of ['alice', 'bob', 'carol', 'catchall', 'postmaster']) {
        await backend.addUser({ email: `${user}@example.com`, password: pw, quotaBytes: 0, enabled: true });
      }
      await backend.addUser({ email: 'Dave@Example.com', password: pw, quotaBytes: 1_000_000, enabled: false });
      await backend.addUser({ email: 'erin@example.org', password: pw, quotaBytes: 0, enabled: true });
      await backend.addAlias('all@example.com', 'alice@example.com');
      await backend.addAlias('all@example.com', 'bob@example.com');
      await backend.addAlias('all@example.com', 'team@example.com');
      await backend.addAlias('team@example.com', 'alice@example.com');
      await backend.addAlias('team@example.com', 'carol@example.com');
      await backend.addAlias('first@example.com', 'second@example.com');
      await backend.addAlias('second@example.com', 'bob@example.com');
      await backend.addAlias('loop1@example.com', 'loop2@example.com');
      await backend.addAlias('loop2@example.com', 'loop1@example.com');
      await backend.addAlias('fwd@example.com', 'someone@remote.example');
      await backend.addAlias('carol@example.com', 'carol@example.com');
      await backend.addAlias('carol@example.com', 'carol.archive@remote.example');
      await backend.addAlias('bob+lists@example.com', 'alice@example.com');
      await backend.addAlias('mixed@example.com', 'dave@example.com');
      await backend.addAlias('mixed@example.com', 'erin@example.org');
      await backend.addAlias('onlydisabled@example.com', 'dave@example.com');
      await backend.addAlias('@example.org', 'erin@example.org');
      await backend.addAlias('@example.com', 'catchall@example.com');
      await factory.setTransports(backend, contractTransports);
    });

    after(async () => {
      await passwords.close();
      await factory.destroy(backend);
    });

    const mailboxesOf = async (address: string) => (await directory.resolve(address)).mailboxes.map((m) => m.email);

    it('knows its hosted and alias domains, case-insensitively', async () => {
      assert.equal(await directory.isLocalDomain('example.com'), true);
      assert.equal(await directory.isLocalDomain('EXAMPLE.com'), true);
      assert.equal(await directory.isLocalDomain('example.org'), true);
      assert.equal(await directory.isLocalDomain('example.net'), true);
      assert.equal(await directory.isLocalDomain('example.com.'), true);
      assert.equal(await directory.isLocalDomain('elsewhere.example'), false);
    });

    it('delivers a user to its own mailbox, case-insensitively', async () => {
      assert.deepEqual(await mailboxesOf('alice@example.com'), ['alice@example.com']);
      assert.deepEqual(await mailboxesOf('ALICE@Example.COM'), ['alice@example.com']);
      const r = await directory.resolve('alice@example.com');
      assert.deepEqual(r.remote, []);
    });

    it('refuses unknown recipients of a domain without a catch-all', async () => {
      await rejectsWith(directory.resolve('nobody@nocatchall.example'), 'RECIPIENT_NOT_FOUND');
      await rejectsWith(directory.resolve('nobody+tag@nocatchall.example'), 'RECIPIENT_NOT_FOUND');
      // An alias domain inherits its target's catch-all, as Postfix resolves @alias -> @target.
      assert.deepEqual(await mailboxesOf('nobody@example.net'), ['catchall@example.com']);
    });

    it('fans an alias out to every target exactly once', async () => {
      const got = await mailboxesOf('all@example.com');
      assert.deepEqual([...got].sort(), ['alice@example.com', 'bob@example.com', 'carol@example.com']);
      assert.equal(new Set(got).size, got.length);
    });

    it('follows aliases of aliases', async () => {
      assert.deepEqual(await mailboxesOf('first@example.com'), ['bob@example.com']);
    });

    it('detects alias loops', async () => {
      await rejectsWith(directory.resolve('loop1@example.com'), 'ALIAS_LOOP');
    });

    it('sends the unknown local parts of a domain to its catch-all, without shadowing mailboxes', async () => {
      assert.deepEqual(await mailboxesOf('whoever@example.com'), ['catchall@example.com']);
      assert.deepEqual(await mailboxesOf('bob@example.com'), ['bob@example.com']);
      assert.deepEqual(await mailboxesOf('random@example.org'), ['erin@example.org']);
    });

    it('maps an alias domain onto its target domain', async () => {
      assert.deepEqual(await mailboxesOf('bob@example.net'), ['bob@example.com']);
      assert.deepEqual(await mailboxesOf('Bob+Tag@Example.NET'), ['bob@example.com']);
    });

    it('strips a recipient delimiter extension only when the full address has no entry', async () => {
      assert.deepEqual(await mailboxesOf('bob+anything@example.com'), ['bob@example.com']);
      assert.deepEqual(await mailboxesOf('bob+lists@example.com'), ['alice@example.com']);
    });

    it('refuses disabled mailboxes and skips them inside aliases', async () => {
      await rejectsWith(directory.resolve('dave@example.com'), 'MAILBOX_DISABLED');
      assert.deepEqual(await mailboxesOf('mixed@example.com'), ['erin@example.org']);
      await rejectsWith(directory.resolve('onlydisabled@example.com'), 'MAILBOX_DISABLED');
    });

    it('reports forwarding destinations outside the hosted domains as remote', async () => {
      const r = await directory.resolve('fwd@example.com');
      assert.deepEqual(r.mailboxes, []);
      assert.deepEqual(r.remote, ['someone@remote.example']);
    });

    it('delivers an alias that names itself to its own mailbox as well', async () => {
      const r = await directory.resolve('carol@example.com');
      assert.deepEqual(
        r.mailboxes.map((m) => m.email),
        ['carol@example.com'],
      );
      assert.deepEqual(r.remote, ['carol.archive@remote.example']);
    });

    it('refuses addresses that could escape the mail root', async () => {
      for (const bad of ['../etc@example.com', 'a/b@example.com', 'x\u0000y@example.com', 'a..b@example.com', 'tab\there@example.com']) {
        await rejectsWith(directory.resolve(bad), 'BAD_ADDRESS');
      }
    });

    it('returns user records with quota and state', async () => {
      const dave = await directory.findUser('dave@example.com');
      assert.ok(dave);
      assert.equal(dave.email, 'dave@example.com');
      assert.equal(dave.quotaBytes, 1_000_000);
      assert.equal(dave.enabled, false);
      assert.equal(await directory.findUser('nobody@example.com'), null);
    });

    it('authenticates with the stored hash, and refuses unknown, wrong and disabled logins', async () => {
      const ok = await directory.authenticate('alice@example.com', 's3cret pass');
      assert.equal(ok.ok, true);
      assert.equal(ok.ok && ok.user.email, 'alice@example.com');
      assert.deepEqual(await directory.authenticate('Alice@EXAMPLE.com', 's3cret pass').then((r) => r.ok), true);
      assert.deepEqual(await directory.authenticate('alice@example.com', 'wrong'), { ok: false, reason: 'bad-password' });
      assert.deepEqual(await directory.authenticate('ghost@example.com', 's3cret pass'), { ok: false, reason: 'unknown-user' });
      assert.deepEqual(await directory.authenticate('dave@example.com', 's3cret pass'), { ok: false, reason: 'disabled' });
      assert.deepEqual(await directory.authenticate('no-at-sign', 's3cret pass'), { ok: false, reason: 'bad-login' });
    });

    it('finds the transport of a domain by its exact entry, case-insensitively', async () => {
      assert.equal(await directory.transportFor('relay.example'), 'smtp:[relay.example.com]:587');
      assert.equal(await directory.transportFor('RELAY.Example'), 'smtp:[relay.example.com]:587');
      assert.equal(await directory.transportFor('relay.example.'), 'smtp:[relay.example.com]:587');
      assert.equal(await directory.transportFor('lan.example'), '[10.0.0.5]');
      assert.equal(await directory.transportFor('deep.corp.example'), 'lmtp:inet:127.0.0.1:24');
      // The key was written Mixed.Example.
      assert.equal(await directory.transportFor('mixed.example'), 'smtp:[mixed.relay.example]');
      assert.equal(await directory.transportFor('MIXED.EXAMPLE'), 'smtp:[mixed.relay.example]');
    });

    it('matches subdomains through ".parent" entries only, the nearest parent first (transport(5))', async () => {
      // The exact entry wins over the .parent entry for the domain itself...
      assert.equal(await directory.transportFor('a.relay.example'), 'smtp:[sub-relay.example.com]');
      assert.equal(await directory.transportFor('X.Y.Relay.Example.'), 'smtp:[sub-relay.example.com]');
      // ...".corp.example" covers subdomains at any depth, but not corp.example itself...
      assert.equal(await directory.transportFor('a.corp.example'), 'relay.corp.example');
      assert.equal(await directory.transportFor('b.a.corp.example'), 'relay.corp.example');
      assert.equal(await directory.transportFor('corp.example'), null);
      // ...an exact "deep.corp.example" does not cover its own subdomains, so ".corp.example" does...
      assert.equal(await directory.transportFor('x.deep.corp.example'), 'relay.corp.example');
      // ...and the nearest .parent wins over a farther one.
      assert.equal(await directory.transportFor('x.deep2.corp.example'), 'smtp:[deep2.relay.example]:2525');
      assert.equal(await directory.transportFor('deep2.corp.example'), 'relay.corp.example');
      // A plain "lan.example" entry does not match sub.lan.example (no parent_domain_matches_subdomains).
      assert.equal(await directory.transportFor('sub.lan.example'), null);
    });

    it('answers null for domains without an entry and for unusable or hostile domains', async () => {
      assert.equal(await directory.transportFor('elsewhere.example'), null);
      assert.equal(await directory.transportFor('example.com'), null);
      assert.equal(await directory.transportFor('example'), null);
      for (const bad of [
        '',
        '.',
        '.relay.example',
        '../relay.example',
        'a/b.relay.example',
        'a\u0000.relay.example',
        'x@relay.example',
        'a b.relay.example',
      ]) {
        assert.equal(await directory.transportFor(bad), null, JSON.stringify(bad));
      }
      for (const hostile of [
        "relay.example' OR '1'='1",
        '%',
        'relay.exampl_',
        '%.example',
        'relay.example ',
        '\\',
        "'",
        '"',
        'relay.examplé',
      ]) {
        assert.equal(await directory.transportFor(hostile), null, JSON.stringify(hostile));
      }
    });

    it('administers domains, users and aliases', async () => {
      const domains = (await backend.listDomains()).map((d) => d.name);
      assert.ok(domains.includes('example.com') && domains.includes('example.org'));
      assert.equal((await backend.listDomains()).find((d) => d.name === 'example.net')?.aliasFor, 'example.com');
      await rejectsWith(backend.addDomain('example.com'), 'ALREADY_EXISTS');
      await rejectsWith(backend.addUser({ email: 'alice@example.com', password: 'x', quotaBytes: 0, enabled: true }), 'ALREADY_EXISTS');

      await backend.addDomain('temp.example');
      await backend.addUser({ email: 'frank@temp.example', password: await passwords.hash('first'), quotaBytes: 0, enabled: true });
      await backend.addAlias('team@temp.example', 'frank@temp.example');
      assert.deepEqual(
        (await backend.listUsers('temp.example')).map((u) => u.email),
        ['frank@temp.example'],
      );
      assert.deepEqual(await backend.listAliases('temp.example'), [{ source: 'team@temp.example', destination: 'frank@temp.example' }]);
      await rejectsWith(backend.deleteDomain('temp.example'), 'ALREADY_EXISTS');

      await backend.updateUser('frank@temp.example', { password: await passwords.hash('second') });
      assert.equal((await directory.authenticate('frank@temp.example', 'second')).ok, true);
      assert.equal((await directory.authenticate('frank@temp.example', 'first')).ok, false);
      await backend.updateUser('frank@temp.example', { enabled: false });
      await rejectsWith(directory.resolve('frank@temp.example'), 'MAILBOX_DISABLED');
      await backend.updateUser('frank@temp.example', { enabled: true, quotaBytes: 5000 });
      assert.equal((await directory.findUser('frank@temp.example'))?.quotaBytes, 5000);

      await backend.deleteAlias('team@temp.example', 'frank@temp.example');
      await rejectsWith(backend.deleteAlias('team@temp.example'), 'NOT_FOUND');
      await backend.deleteUser('frank@temp.example');
      await rejectsWith(backend.deleteUser('frank@temp.example'), 'NOT_FOUND');
      await backend.deleteDomain('temp.example');
      assert.equal(await directory.isLocalDomain('temp.example'), false);
    });

    it('deletes a domain with its users and aliases when forced', async () => {
      await backend.addDomain('gone.example');
      await backend.addUser({ email: 'x@gone.example', password: 'x', quotaBytes: 0, enabled: true });
      await backend.addAlias('y@gone.example', 'x@gone.example');
      await backend.deleteDomain('gone.example', true);
      assert.equal(await directory.isLocalDomain('gone.example'), false);
      assert.deepEqual(await backend.listUsers('gone.example'), []);
      assert.deepEqual(await backend.listAliases('gone.example'), []);
    });
  });
}
