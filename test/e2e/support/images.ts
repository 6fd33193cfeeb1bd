import { createHash } from 'node:crypto';
import {
  chmod,
  copyFile,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';

import { pipeCommands, runCommand } from './command.js';
import type { DockerEngine } from './docker-engine.js';

const BASE_REPOSITORY = 'certsync-test/node-base';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
/** busybox applets the Dockerfiles and fixtures use (`RUN` lines need /bin/sh). */
const BUSYBOX_APPLETS = [
  'sh',
  'ls',
  'cat',
  'cp',
  'mv',
  'rm',
  'mkdir',
  'chmod',
  'chown',
  'ln',
  'id',
  'env',
  'sleep',
  'kill',
  'ps',
  'grep',
  'sed',
];
const BUSYBOX = '/bin/busybox';
/** ENV of the imported image: the host's TLS-intercepting CA, so `npm ci` in a build works. */
const BASE_ENV = ['PATH=/usr/local/bin:/usr/bin:/bin', `NODE_EXTRA_CA_CERTS=${CA_BUNDLE}`];
const BUILD_TIMEOUT_MS = 600_000;

/** One file of the base image's root: copied from `source` (or a symlink to `linkTarget`). */
interface RootEntry {
  readonly target: string;
  readonly source?: string;
  readonly linkTarget?: string;
  readonly content?: string;
}

/**
 * A stand-in for `node:20-bookworm-slim` (no Docker Hub here): the host's node, the glibc it links
 * (all of libc6's libraries — npm packages with native addons, such as ts-proto's dprint-node,
 * need librt), npm, a busybox shell, the CA bundle and a `node` user (uid 1000) as in the
 * official image. Tagged by a hash of everything in it, so a re-run with the same host tools
 * reuses the image already in the builder engine.
 */
export async function ensureBaseImage(engine: DockerEngine, workDir: string): Promise<string> {
  const entries = await baseImageEntries();
  const tag = `${BASE_REPOSITORY}:${await hashEntries(entries)}`;
  const present = await engine.docker(['image', 'inspect', tag], { allowFailure: true });
  if (present.code === 0) return tag;

  const rootDir = path.join(workDir, 'base-rootfs');
  await rm(rootDir, { recursive: true, force: true });
  await writeRoot(rootDir, entries);
  const changes = BASE_ENV.flatMap((env) => ['--change', `ENV ${env}`]);
  await pipeCommands(
    { command: 'tar', args: ['-C', rootDir, '-c', '.'] },
    {
      command: 'docker',
      args: ['import', ...changes, '-', tag],
      env: { DOCKER_HOST: engine.host },
    },
  );
  await rm(rootDir, { recursive: true, force: true });
  return tag;
}

/** `docker build` with the host network (the builder engine has no bridge) and a base image. */
export async function buildImage(
  engine: DockerEngine,
  options: { context: string; dockerfile: string; tag: string; baseImage: string },
): Promise<void> {
  await engine.docker(
    [
      'build',
      '--network=host',
      '--build-arg',
      `NODE_IMAGE=${options.baseImage}`,
      '-f',
      options.dockerfile,
      '-t',
      options.tag,
      options.context,
    ],
    { timeoutMs: BUILD_TIMEOUT_MS },
  );
}

/** Saves `tags` once to a tar file, then loads it into every engine in parallel. */
export async function copyImages(
  from: DockerEngine,
  to: readonly DockerEngine[],
  tags: readonly string[],
  tarPath: string,
): Promise<void> {
  await from.docker(['save', '-o', tarPath, ...tags], { timeoutMs: BUILD_TIMEOUT_MS });
  await Promise.all(
    to.map((engine) =>
      engine.docker(['load', '-q', '-i', tarPath], { timeoutMs: BUILD_TIMEOUT_MS }),
    ),
  );
}

async function baseImageEntries(): Promise<RootEntry[]> {
  const node = '/usr/bin/node';
  const npmCli = await realPath('npm');
  // npm-cli.js sits at <prefix>/lib/node_modules/npm/bin/npm-cli.js.
  const npmDir = path.dirname(path.dirname(npmCli));
  const libraries = new Set([...(await linkedLibraries(node)), ...(await libc6Libraries())]);

  const entries: RootEntry[] = [{ target: node, source: node }];
  for (const library of [...libraries].sort()) entries.push({ target: library, source: library });
  for (const file of await listTree(npmDir)) {
    const target = path.join('/usr/lib/node_modules/npm', path.relative(npmDir, file.path));
    entries.push(
      file.linkTarget === undefined
        ? { target, source: file.path }
        : { target, linkTarget: file.linkTarget },
    );
  }
  entries.push(
    { target: '/usr/bin/npm', linkTarget: '../lib/node_modules/npm/bin/npm-cli.js' },
    { target: '/usr/bin/npx', linkTarget: '../lib/node_modules/npm/bin/npx-cli.js' },
    { target: BUSYBOX, source: BUSYBOX },
    // npm's scripts start with `#!/usr/bin/env node`.
    { target: '/usr/bin/env', linkTarget: BUSYBOX },
    ...BUSYBOX_APPLETS.filter((applet) => applet !== 'env').map((applet) => ({
      target: `/bin/${applet}`,
      linkTarget: 'busybox',
    })),
    { target: CA_BUNDLE, source: CA_BUNDLE },
    {
      target: '/etc/passwd',
      content: 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\n',
    },
    { target: '/etc/group', content: 'root:x:0:\nnode:x:1000:\n' },
  );
  return entries;
}

async function writeRoot(rootDir: string, entries: readonly RootEntry[]): Promise<void> {
  for (const dir of ['tmp', 'root', 'home/node'])
    await mkdir(path.join(rootDir, dir), { recursive: true });
  await chmod(path.join(rootDir, 'tmp'), 0o1777);
  await runCommand('chown', ['1000:1000', path.join(rootDir, 'home/node')]);
  for (const entry of entries) {
    const target = path.join(rootDir, entry.target);
    await mkdir(path.dirname(target), { recursive: true });
    if (entry.linkTarget !== undefined) await symlink(entry.linkTarget, target);
    else if (entry.content !== undefined) await writeFile(target, entry.content);
    else if (entry.source !== undefined) {
      await copyFile(entry.source, target);
      await chmod(target, (await stat(entry.source)).mode & 0o7777);
    }
  }
}

async function hashEntries(entries: readonly RootEntry[]): Promise<string> {
  const hash = createHash('sha256').update(BASE_ENV.join('\n'));
  for (const entry of entries) {
    hash.update(`\0${entry.target}\0${entry.linkTarget ?? ''}\0${entry.content ?? ''}\0`);
    if (entry.source !== undefined) hash.update(await readFile(entry.source));
  }
  return hash.digest('hex').slice(0, 16);
}

async function realPath(command: string): Promise<string> {
  const { stdout } = await runCommand('sh', ['-c', `readlink -f "$(command -v ${command})"`]);
  return stdout.trim();
}

/** The absolute paths `ldd` lists for a binary (the vdso has none and is skipped). */
async function linkedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await runCommand('ldd', [binary]);
  return [...stdout.matchAll(/(\/\S+)/g)].map((match) => match[1] ?? '');
}

async function libc6Libraries(): Promise<string[]> {
  const { stdout } = await runCommand('dpkg', ['-L', 'libc6']);
  return stdout
    .split('\n')
    .filter((file) => /^\/(usr\/)?lib\/x86_64-linux-gnu\/[^/]+\.so[.0-9]*$/.test(file));
}

/** Files and symlinks below `dir`, sorted, so the hash does not depend on directory order. */
async function listTree(dir: string): Promise<Array<{ path: string; linkTarget?: string }>> {
  const found: Array<{ path: string; linkTarget?: string }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await listTree(full)));
    else if (entry.isSymbolicLink()) found.push({ path: full, linkTarget: await readlink(full) });
    else if (entry.isFile()) found.push({ path: full });
  }
  return found.sort((a, b) => (a.path < b.path ? -1 : 1));
}
