import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { runCommand, type CommandOptions, type CommandResult } from './command.js';
import { NAME_PREFIX, NODE_SSL_DIR } from './layout.js';

/** A dockerd the harness started, reached through a socket under its own folder. */
export interface DockerEngine {
  readonly name: string;
  readonly dir: string;
  /** `unix://…` for DOCKER_HOST. */
  readonly host: string;
  readonly logPath: string;
  /** Runs the docker CLI against this engine. */
  docker(args: readonly string[], options?: CommandOptions): Promise<CommandResult>;
  /** Runs the docker CLI and parses its stdout as JSON (for `inspect`). */
  dockerJson<T>(args: readonly string[]): Promise<T>;
  /** Stops dockerd (its containers stop with it) and waits until it has exited. */
  stop(): Promise<void>;
}

export interface EngineOptions {
  /** `cse2e-…`: also the engine's cgroup parent, so its containers can be found by name. */
  name: string;
  dir: string;
  /** Run inside this node's network namespace with its own mount and UTS namespaces. */
  node?: { namespace: string; hostname: string; sslDir: string };
}

/**
 * Workaround: without it every swarm task sat ~20 s in "Preparing" (agents, server, each Vault
 * task of a force-update). Cause: before starting a task, dockerd tries to pull its image from
 * the registry even when the image is present locally; with no registry reachable it waits for
 * the attempt to time out. With this set, dockerd uses the local image and skips the pull. If a
 * later dockerd stops honouring it, tasks still start, only ~20 s slower each.
 */
const OFFLINE_IMAGES_ENV = { DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1' };

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const POLL_INTERVAL_MS = 100;

/**
 * Starts a private dockerd with its own data and exec roots, pid file and socket. A node engine
 * runs in the node's namespace (via nsenter, not `ip netns exec`, which remounts /sys and hides
 * the cgroups) and also listens on /var/run/docker.sock there, so a stack's socket bind works
 * unchanged; the engine without a node (the image builder) keeps the host's network so builds
 * reach the npm registry. Both get a private /run: dockerd would otherwise adopt a system
 * containerd it finds at /run/containerd/containerd.sock.
 */
export async function startEngine(options: EngineOptions): Promise<DockerEngine> {
  if (!options.name.startsWith(`${NAME_PREFIX}-`))
    throw new Error(`engine name ${options.name} lacks ${NAME_PREFIX}-`);
  await mkdir(options.dir, { recursive: true });
  const socketPath = path.join(options.dir, 'docker.sock');
  const logPath = path.join(options.dir, 'dockerd.log');
  const dockerdArgs = [
    `--data-root=${path.join(options.dir, 'data')}`,
    `--exec-root=${path.join(options.dir, 'exec')}`,
    `--pidfile=${pidFilePath(options.dir)}`,
    `--host=unix://${socketPath}`,
    ...(options.node ? ['--host=unix:///var/run/docker.sock'] : []),
    '--iptables=false',
    '--ip-masq=false',
    '--bridge=none',
    `--cgroup-parent=/${options.name}`,
  ];
  if (options.node) {
    await mkdir(options.node.sslDir, { recursive: true });
    await mkdir(NODE_SSL_DIR, { recursive: true });
  }
  const launch = launchCommand(options, dockerdArgs);

  const logFd = openSync(logPath, 'a');
  const child = spawn(launch.command, launch.args, {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, ...OFFLINE_IMAGES_ENV },
  });
  closeSync(logFd);
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await pingSocket(socketPath))) {
    if (exited || Date.now() > deadline) {
      const log = (await readFile(logPath, 'utf8').catch(() => ''))
        .trimEnd()
        .split('\n')
        .slice(-15)
        .join('\n');
      throw new Error(
        `dockerd ${options.name} did not come up (${exited ? 'exited' : 'timed out'})\n${log}`,
      );
    }
    await sleep(POLL_INTERVAL_MS);
  }
  return createEngineHandle(options.name, options.dir, socketPath, logPath);
}

/**
 * `sh -c 'setup && exec dockerd …'` in fresh namespaces: always a private mount namespace with
 * its own /run; for a node also its network namespace, its hostname and its own
 * /opt/iklimco/ssl, bound from the node's host folder.
 */
function launchCommand(options: EngineOptions, dockerdArgs: readonly string[]) {
  const setup = ['mount -t tmpfs tmpfs /run'];
  const namespaces = ['unshare', '-m'];
  if (options.node) {
    setup.unshift(`hostname ${options.node.hostname}`);
    setup.push(`mount --bind ${options.node.sslDir} ${NODE_SSL_DIR}`);
    namespaces.unshift('nsenter', `--net=/var/run/netns/${options.node.namespace}`);
    namespaces.push('-u');
  }
  const script = `${setup.join(' && ')} && exec dockerd ${dockerdArgs.join(' ')}`;
  const [command = 'unshare', ...args] = namespaces;
  return { command, args: [...args, '--propagation', 'private', 'sh', '-c', script] };
}

function createEngineHandle(
  name: string,
  dir: string,
  socketPath: string,
  logPath: string,
): DockerEngine {
  const host = `unix://${socketPath}`;
  const docker = (args: readonly string[], options: CommandOptions = {}) =>
    runCommand('docker', args, {
      ...options,
      env: { DOCKER_HOST: host, DOCKER_BUILDKIT: '0', ...options.env },
    });
  return {
    name,
    dir,
    host,
    logPath,
    docker,
    async dockerJson<T>(args: readonly string[]) {
      return JSON.parse((await docker(args)).stdout) as T;
    },
    stop: () => stopEngineInDir(dir),
  };
}

/** Where dockerd writes its pid; cleanup finds engines of earlier runs through it. */
export function pidFilePath(engineDir: string): string {
  return path.join(engineDir, 'dockerd.pid');
}

/** Stops the dockerd whose pid file is in `engineDir` (SIGTERM, then SIGKILL); no-op if none. */
export async function stopEngineInDir(engineDir: string): Promise<void> {
  const pid = Number((await readFile(pidFilePath(engineDir), 'utf8').catch(() => '')).trim());
  if (!pid || !isDockerd(pid)) return;

  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (isAlive(pid) && Date.now() < deadline) await sleep(POLL_INTERVAL_MS);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(POLL_INTERVAL_MS);
}

/** A pid file can outlive its process and the pid be reused: only signal a dockerd. */
function isDockerd(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'dockerd';
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pingSocket(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ping = request({ socketPath, path: '/_ping', timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    ping.on('timeout', () => ping.destroy());
    ping.on('error', () => resolve(false));
    ping.end();
  });
}
