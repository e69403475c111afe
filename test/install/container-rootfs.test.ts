/**
 * The container image's root filesystem, built the way `docker build` builds the Dockerfile's last
 * stage, without a Docker engine: FROM debian:bookworm(-slim) is a debootstrapped Debian 12 tree
 * (test/helpers/rootfs.ts), and RUN, COPY, ENV, USER, WORKDIR and VOLUME are carried out in it in
 * order, RUN chrooted as the current USER with the ENV so far. Then ENTRYPOINT + CMD start as the
 * image's USER with the first-run variables of the Dockerfile's own example, the HEALTHCHECK command
 * must pass, and the process that accepts a connection on the first EXPOSEd port must not be root.
 *
 * The one substitution: the build stage (node image, `npm ci`, `npm run release`) is this
 * checkout's `npm run release`; a `COPY --from=<stage>` of a .tar.gz copies that tarball.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  assertPortsFree,
  freshRootfs,
  passwdEntry,
  processesServing,
  processTree,
  removeRootfs,
  runChrooted,
  spawnChrooted,
  stopTree,
  uids,
} from '../helpers/rootfs.js';

const run = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOCKER_DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Instruction {
  keyword: string;
  args: string;
}

/** The Dockerfile's stages, each a list of instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const line = pending + raw;
    if (/\\\s*$/.test(line)) {
      pending = line.replace(/\\\s*$/, ' ');
      continue;
    }
    pending = '';
    const m = /^\s*(\w+)\s+([\s\S]*?)\s*$/.exec(line);
    if (!m) continue;
    const instruction = { keyword: m[1]!.toUpperCase(), args: m[2]! };
    if (instruction.keyword === 'FROM') stages.push([]);
    assert.ok(stages.length > 0, `Dockerfile: ${instruction.keyword} before FROM`);
    stages.at(-1)!.push(instruction);
  }
  return stages;
}

/** Exec form (a JSON array) as it is; shell form through /bin/sh -c. */
function commandLine(args: string): string[] {
  return args.trimStart().startsWith('[') ? (JSON.parse(args) as string[]) : ['/bin/sh', '-c', args];
}

/** $VAR and ${VAR} from the environment so far, as Docker expands them in ENV, WORKDIR, COPY and USER. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? '');
}

/** ENV K=V K2="V 2" ... (or the old ENV K V). */
function parseEnv(args: string, env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^\w+=/.test(args)) {
    const [key, ...rest] = args.split(/\s+/);
    out[key!] = expand(rest.join(' '), env);
    return out;
  }
  for (const m of args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const value = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
    out[m[1]!] = expand(value, { ...env, ...out });
  }
  return out;
}

test(
  'the container image built from the Dockerfile on Debian 12 starts, is healthy and serves as its non-root user',
  { timeout: 10 * 60_000 },
  async () => {
    const stages = parseDockerfile(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'));
    const image = stages.at(-1)!;
    const [from, ...steps] = image;
    assert.match(from!.args, /^debian:bookworm(-slim)?$/, 'the image is built FROM debian:bookworm-slim (what this test can build)');
    const buildStages = stages.slice(0, -1).map((stage) => /\bAS\s+(\S+)/i.exec(stage[0]!.args)?.[1]);

    const { stdout } = await run('bash', [path.join(REPO, 'scripts/release.sh'), '--no-build'], { cwd: REPO, maxBuffer: 64 << 20 });
    const tarball = stdout.trim().split('\n').pop()!;
    const rootfs = await freshRootfs();
    let mainPid: number | undefined;
    let log = '';
    try {
      let env: Record<string, string> = { PATH: DOCKER_DEFAULT_PATH };
      let user = 'root';
      let workdir = '/';
      let entrypoint: string[] = [];
      let cmd: string[] = [];
      let healthcheck: string[] | undefined;
      const exposed: number[] = [];
      const userspec = () => {
        const [name, group] = user.split(':');
        const entry = /^\d+$/.test(name!) ? { uid: Number(name), gid: Number(group ?? name) } : passwdEntry(rootfs, name!);
        return `${entry.uid}:${group && /^\d+$/.test(group) ? group : entry.gid}`;
      };
      const home = () =>
        user === 'root'
          ? '/root'
          : (readFileSync(path.join(rootfs, 'etc/passwd'), 'utf8')
              .split('\n')
              .find((l) => l.startsWith(`${user.split(':')[0]}:`))
              ?.split(':')[5] ?? '/');

      for (const { keyword, args } of steps) {
        switch (keyword) {
          case 'RUN': {
            const result = await runChrooted(rootfs, commandLine(args), { user: userspec(), env: { HOME: home(), ...env }, cwd: workdir });
            assert.equal(result.code, 0, `RUN ${args}\n${result.output.slice(-4000)}`);
            break;
          }
          case 'COPY':
          case 'ADD': {
            const words = args.split(/\s+/);
            const flags = words.filter((w) => w.startsWith('--'));
            const [dest, ...sourcesReversed] = words.filter((w) => !w.startsWith('--')).reverse();
            const sources = sourcesReversed.reverse();
            const fromStage = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
            const target = path.join(rootfs, expand(dest!, env));
            await mkdir(dest!.endsWith('/') ? target : path.dirname(target), { recursive: true });
            if (fromStage !== undefined) {
              assert.ok(buildStages.includes(fromStage), `COPY --from=${fromStage}: a stage of this Dockerfile`);
              assert.ok(
                sources.length === 1 && sources[0]!.endsWith('.tar.gz'),
                `COPY --from=${fromStage} ${sources.join(' ')}: only the release tarball comes from the build stage`,
              );
              await copyFile(tarball, dest!.endsWith('/') ? path.join(target, path.basename(tarball)) : target);
            } else {
              await run('cp', ['-a', ...sources.map((s) => path.join(REPO, s)), target]);
            }
            break;
          }
          case 'ENV':
            env = { ...env, ...parseEnv(args, env) };
            break;
          case 'USER':
            user = expand(args, env);
            break;
          case 'WORKDIR':
            workdir = path.posix.resolve(workdir, expand(args, env));
            await mkdir(path.join(rootfs, workdir), { recursive: true });
            break;
          case 'VOLUME':
            for (const dir of args.trimStart().startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/))
              await mkdir(path.join(rootfs, dir), { recursive: true });
            break;
          case 'EXPOSE':
            exposed.push(...args.split(/\s+/).map((p) => Number(p.split('/')[0])));
            break;
          case 'HEALTHCHECK': {
            const m = /^(?:--\S+\s+)*(NONE|CMD\s+([\s\S]*))$/.exec(args);
            assert.ok(m, `HEALTHCHECK ${args}`);
            healthcheck = m[2] === undefined ? undefined : commandLine(m[2]);
            break;
          }
          case 'ENTRYPOINT':
            entrypoint = commandLine(args);
            cmd = [];
            break;
          case 'CMD':
            cmd = commandLine(args);
            break;
          case 'STOPSIGNAL':
          case 'LABEL':
          case 'ARG':
            break;
          default:
            assert.fail(`Dockerfile: ${keyword} is not carried out by this test`);
        }
      }

      assert.notEqual(user.split(':')[0], 'root', 'the image runs as a user other than root');
      assert.ok(healthcheck, 'the image has a HEALTHCHECK');
      assert.ok(exposed.length > 0, 'the image EXPOSEs its ports');
      await assertPortsFree(exposed);

      // docker run -e MAILD_HOSTNAME=... -e MAILD_DOMAIN=... (the first run of the Dockerfile's example).
      const runEnv = { HOSTNAME: 'maild-test', HOME: home(), ...env, MAILD_HOSTNAME: 'mail.example.com', MAILD_DOMAIN: 'example.com' };
      const container = spawnChrooted(rootfs, [...entrypoint, ...(entrypoint.length > 0 && !args0IsShell(entrypoint) ? cmd : [])], {
        user: userspec(),
        env: runEnv,
        cwd: workdir,
      });
      mainPid = container.pid;
      container.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      container.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      let exited = false;
      container.on('exit', () => (exited = true));

      // Docker's start period: the healthcheck may fail until the daemon is up.
      let health = { code: null as number | null, output: '' };
      for (let attempt = 0; attempt < 60 && !exited; attempt++) {
        health = await runChrooted(rootfs, healthcheck, { user: userspec(), env: runEnv, cwd: workdir });
        if (health.code === 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(health.code, 0, `HEALTHCHECK ${healthcheck.join(' ')}: ${health.output}\n--- container output:\n${log.slice(-4000)}`);

      const imageUser = passwdEntry(rootfs, user.split(':')[0]!);
      const serving = await processesServing(exposed[0]!, processTree(mainPid!));
      assert.ok(serving.length > 0, `a process of the container accepted the connection on port ${exposed[0]}`);
      for (const pid of serving)
        assert.deepEqual(uids(pid), [imageUser.uid, imageUser.uid, imageUser.uid, imageUser.uid], `process ${pid} serves as ${user}`);
    } finally {
      if (mainPid && existsSync(`/proc/${mainPid}`)) await stopTree(mainPid);
      await removeRootfs(rootfs);
    }
  },
);

/** A shell-form ENTRYPOINT ignores CMD, as Docker does. */
function args0IsShell(argv: string[]): boolean {
  return argv[0] === '/bin/sh' && argv[1] === '-c';
}
