/**
 * The container files agree with each other and with maild, as far as can be checked without a
 * Docker engine: the Dockerfile's stages, ports, user, entrypoint and healthcheck; what
 * .dockerignore keeps out of the build context; compose.yaml's services and its maild
 * configuration (run against MariaDB in test/protocol/container.test.ts).
 */
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { ROOT } from '../helpers/daemon.js';

const read = (file: string) => readFile(path.join(ROOT, file), 'utf8');

/** Dockerfile instructions per stage, continuation lines joined, comments dropped. */
async function dockerfileStages(): Promise<Array<{ from: string; instructions: Array<[string, string]> }>> {
  const text = (await read('Dockerfile')).replace(/\\\n/g, ' ');
  const stages: Array<{ from: string; instructions: Array<[string, string]> }> = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(line.trim());
    if (!m || line.trim().startsWith('#')) continue;
    if (m[1] === 'FROM') stages.push({ from: m[2]!, instructions: [] });
    else stages.at(-1)!.instructions.push([m[1]!, m[2]!.replace(/\s+/g, ' ')]);
  }
  return stages;
}

const containerPorts = (file: string, env: NodeJS.ProcessEnv = {}) =>
  loadConfig(path.join(ROOT, file), env)
    .listeners.map((l) => l.port)
    .sort();

describe('Dockerfile', () => {
  it('builds the release in node:22-bookworm-slim and unpacks it to /opt/maild on debian:bookworm-slim', async () => {
    const [build, image, ...more] = await dockerfileStages();
    assert.equal(more.length, 0);
    assert.equal(build!.from, 'node:22-bookworm-slim AS build');
    const run = build!.instructions.filter(([k]) => k === 'RUN').map(([, v]) => v);
    assert.ok(run.some((r) => r.includes('npm ci') && r.includes('npm run release')));
    assert.equal(image!.from, 'debian:bookworm-slim');
    // Plain instructions only, so the stage can be replayed in a debootstrapped root filesystem.
    for (const [k] of image!.instructions)
      assert.ok(['COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'VOLUME', 'HEALTHCHECK', 'ENTRYPOINT', 'CMD', 'STOPSIGNAL'].includes(k), k);
    const all = image!.instructions.map(([k, v]) => `${k} ${v}`);
    assert.ok(all.some((i) => /^RUN .*apt-get install -y --no-install-recommends ca-certificates/.test(i)));
    assert.ok(all.some((i) => /^RUN tar -xzf \S+ -C \/opt /.test(i)));
    assert.ok(all.includes('USER vmail'));
  });

  it('starts through config/docker-entrypoint (from the release tarball) and checks health with maild health', async () => {
    const [, image] = await dockerfileStages();
    const get = (k: string) => image!.instructions.find(([key]) => key === k)?.[1];
    assert.equal(get('ENTRYPOINT'), '["/opt/maild/bin/docker-entrypoint"]');
    assert.equal(get('CMD'), '["serve"]');
    assert.ok(
      image!.instructions.some(
        ([k, v]) => k === 'RUN' && v.includes('install -m 0755 /opt/maild/config/docker-entrypoint /opt/maild/bin/docker-entrypoint'),
      ),
    );
    await access(path.join(ROOT, 'config', 'docker-entrypoint'), constants.X_OK);
    assert.match(get('HEALTHCHECK') ?? '', /CMD \["\/opt\/maild\/bin\/maild", "health"\]$/);
    assert.match(get('ENV') ?? '', /MAILD_CONFIG=\/etc\/maild\/maild\.yaml/);
  });

  it('exposes exactly the ports of config/container.yaml, which has no user, no seed and nothing in the clear', async () => {
    const [, image] = await dockerfileStages();
    const exposed = image!.instructions
      .filter(([k]) => k === 'EXPOSE')
      .flatMap(([, v]) => v.split(' ').map(Number))
      .sort();
    assert.deepEqual(exposed, containerPorts('config/container.yaml'));
    const cfg = loadConfig(path.join(ROOT, 'config/container.yaml'), {});
    assert.equal(cfg.directory.file.initial, undefined);
    assert.equal(cfg.auth.cleartext, 'never');
    assert.ok(cfg.listeners.every((l) => l.tls !== 'none'));
    assert.ok(!cfg.listeners.some((l) => l.protocol === 'lmtp'));
  });
});

describe('.dockerignore', () => {
  it('keeps keys, state, dependencies, builds, tarballs and secrets out of the build context, and nothing the release needs', async () => {
    const patterns = (await read('.dockerignore'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const p of ['.git', '**/node_modules', 'dist', 'data', '**/*.pem', '**/*.key', '.env', '*.tar.gz', '*.tgz'])
      assert.ok(patterns.includes(p), `${p} missing`);
    for (const needed of ['src', 'config', 'migrations', 'scripts', 'package.json', 'package-lock.json', 'tsconfig.json', 'README.md'])
      assert.ok(!patterns.some((p) => p === needed || p === `${needed}/` || p === `/${needed}`), `${needed} is ignored`);
  });
});

describe('compose.yaml', () => {
  it('runs MariaDB with a healthcheck, migrates, then starts maild on config/compose/maild.yaml', async () => {
    const compose = parse(await read('compose.yaml')) as {
      services: Record<string, Record<string, unknown>>;
      volumes: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(compose.services).sort(), ['maild', 'mariadb', 'migrate']);
    const { mariadb, migrate, maild } = compose.services as Record<string, Record<string, any>>;
    assert.match(mariadb!.image, /^mariadb:/);
    assert.ok(mariadb!.healthcheck.test.includes('healthcheck.sh'));
    assert.deepEqual(migrate!.command, ['migrate']);
    assert.deepEqual(migrate!.depends_on, { mariadb: { condition: 'service_healthy' } });
    assert.deepEqual(maild!.depends_on, {
      mariadb: { condition: 'service_healthy' },
      migrate: { condition: 'service_completed_successfully' },
    });
    for (const service of [migrate!, maild!]) {
      assert.equal(service.build, '.');
      assert.ok(service.volumes.includes('./config/compose/maild.yaml:/etc/maild/maild.yaml:ro'));
    }
    assert.ok(maild!.volumes.includes('state:/var/lib/maild') && maild!.volumes.includes('mail:/var/mail/vhosts'));
    assert.deepEqual(Object.keys(compose.volumes).sort(), ['db', 'mail', 'state']);

    assert.equal(mariadb!.environment.MARIADB_RANDOM_ROOT_PASSWORD, '1');
    // Passwords only from the environment, required: no default anyone could know.
    for (const service of Object.values(compose.services))
      for (const [key, value] of Object.entries((service.environment ?? {}) as Record<string, string>))
        if (key !== 'MARIADB_RANDOM_ROOT_PASSWORD' && /PASSWORD/.test(key)) assert.match(value, /^\$\{MAILD_DB_PASSWORD:\?[^}]+\}$/, key);

    // Every listener of the configuration is published.
    const published = (maild!.ports as string[]).map((p) => Number(p.split(':')[1])).sort();
    assert.deepEqual(published, containerPorts('config/compose/maild.yaml', { MAILD_HOSTNAME: 'h.example', MAILD_DB_PASSWORD: 'x' }));
  });

  it('config/compose/maild.yaml: MariaDB as the directory, host, user and password from the environment', () => {
    const cfg = loadConfig(path.join(ROOT, 'config/compose/maild.yaml'), {
      MAILD_HOSTNAME: 'mail.example.com',
      MAILD_DB_PASSWORD: 's3cret',
    });
    assert.equal(cfg.hostname, 'mail.example.com');
    assert.equal(cfg.directory.backend, 'mysql');
    assert.deepEqual(
      [cfg.directory.mysql!.host, cfg.directory.mysql!.user, cfg.directory.mysql!.password, cfg.directory.mysql!.database],
      ['mariadb', 'mailuser', 's3cret', 'mailserver'],
    );
    assert.throws(
      () => loadConfig(path.join(ROOT, 'config/compose/maild.yaml'), { MAILD_HOSTNAME: 'mail.example.com' }),
      /MAILD_DB_PASSWORD is not set/,
    );
  });
});
