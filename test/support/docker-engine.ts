import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, promises as fs } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { findTool, REQUIRE_TOOLS_ENV, type ToolCheck } from './tools';

const execFileAsync = promisify(execFile);

/** A static busybox runs in an image that holds nothing else (Debian: busybox-static). */
const BUSYBOX_STATIC = '/bin/busybox';
const ENGINE_START_TIMEOUT_MS = 15_000;
const ENGINE_STOP_TIMEOUT_MS = 10_000;

/** A private dockerd with its own folders and socket, stopped by the pid it wrote. */
export interface DockerEngine {
  /** The folder holding data-root, exec-root, pid file, socket and log. */
  readonly dir: string;
  readonly socketPath: string;
  readonly logFile: string;
  /** Runs the docker CLI against this engine; rejects with stderr when it fails. */
  docker(args: readonly string[]): Promise<string>;
  /** Imports a folder holding busybox (sh, sleep) as `tag`, for dummy service containers. */
  importBusyboxImage(tag: string): Promise<void>;
  /** Removes every container, then stops the engine and deletes its folders. */
  stop(): Promise<void>;
}

/**
 * Whether a private dockerd can run here: root, dockerd, the docker CLI and a static busybox.
 * Use as checkTools: `{ skip: engineCheck.skip }`, then `engineCheck.require()` in the body.
 */
export function checkDockerEngine(): ToolCheck {
  const missing = ['dockerd', 'docker'].filter((tool) => findTool(tool) === undefined);
  const reasons: string[] = [];
  if (process.getuid?.() !== 0) reasons.push('dockerd needs root');
  if (missing.length > 0) reasons.push(`${missing.join(', ')} missing: apt-get install docker.io`);
  if (!existsSync(BUSYBOX_STATIC)) reasons.push('busybox missing: apt-get install busybox-static');
  const reason = reasons.join('; ');
  const mustFail = process.env[REQUIRE_TOOLS_ENV] === '1';

  return {
    skip: reason !== '' && !mustFail ? reason : false,
    require() {
      if (reason !== '') throw new Error(`${reason} (${REQUIRE_TOOLS_ENV}=1 forbids skipping)`);
      return { dockerd: findTool('dockerd') ?? '', docker: findTool('docker') ?? '' };
    },
  };
}

/**
 * Starts a dockerd under os.tmpdir()/NAME (no bridge, no iptables: containers run with
 * `--network none`). Idempotent: an engine left by an earlier run under the same name is
 * killed from its pid file and its folders removed first.
 */
export async function startDockerEngine(name: string): Promise<DockerEngine> {
  const dockerd = findTool('dockerd');
  const dockerCli = findTool('docker');
  if (dockerd === undefined || dockerCli === undefined) {
    throw new Error('dockerd and docker are needed: apt-get install docker.io');
  }
  const dir = path.join(os.tmpdir(), name);
  await removeLeftoverEngine(dir, dockerCli);
  await fs.mkdir(dir, { recursive: true });

  const socketPath = path.join(dir, 'docker.sock');
  const logFile = path.join(dir, 'dockerd.log');
  const log = openSync(logFile, 'a');
  // setsid: the engine gets its own session, so a Ctrl-C on the test run does not hit it
  // half-way; it is stopped by its pid file instead.
  const child = spawn(
    'setsid',
    [
      dockerd,
      ...['--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec')],
      ...['--pidfile', path.join(dir, 'docker.pid'), '--host', `unix://${socketPath}`],
      ...['--bridge=none', '--iptables=false', '--ip-masq=false', '--shutdown-timeout', '2'],
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  child.unref();
  await waitForPing(socketPath, child.pid ?? 0, logFile);

  const docker = async (args: readonly string[]): Promise<string> => {
    const env = { ...process.env, DOCKER_HOST: `unix://${socketPath}` };
    const { stdout } = await execFileAsync(dockerCli, [...args], { env }).catch((error) => {
      const stderr = (error as { stderr?: string }).stderr ?? '';
      throw new Error(`docker ${args.join(' ')} failed: ${stderr.trim()}`, { cause: error });
    });
    return stdout.trim();
  };

  return {
    dir,
    socketPath,
    logFile,
    docker,
    async importBusyboxImage(tag) {
      const rootfs = path.join(dir, 'busybox-rootfs');
      await fs.mkdir(path.join(rootfs, 'bin'), { recursive: true });
      await fs.copyFile(BUSYBOX_STATIC, path.join(rootfs, 'bin', 'busybox'));
      for (const applet of ['sh', 'sleep']) {
        await fs.symlink('busybox', path.join(rootfs, 'bin', applet));
      }
      const tarball = path.join(dir, 'busybox.tar');
      await execFileAsync('tar', ['-C', rootfs, '-cf', tarball, '.']);
      await docker(['import', tarball, tag]);
    },
    stop: () => removeLeftoverEngine(dir, dockerCli),
  };
}

/**
 * Stops whatever an engine under `dir` left running, then unmounts and deletes `dir`. Containers
 * go first while the engine still answers (a shell as pid 1 ignores the SIGTERM a stopping
 * dockerd sends, which would cost its whole stop timeout); shims of a killed engine, and the
 * containers under them, are killed by what their command line names.
 */
async function removeLeftoverEngine(dir: string, dockerCli: string): Promise<void> {
  const socketPath = path.join(dir, 'docker.sock');
  if (await ping(socketPath)) {
    const env = { ...process.env, DOCKER_HOST: `unix://${socketPath}` };
    const run = async (args: string[]) => (await execFileAsync(dockerCli, args, { env })).stdout;
    const ids = (await run(['ps', '-aq']).catch(() => '')).split('\n').filter((id) => id !== '');
    if (ids.length > 0) await run(['rm', '-f', ...ids]).catch(() => '');
  }
  await stopByPidFile(path.join(dir, 'docker.pid'), dir);
  await stopByPidFile(path.join(dir, 'exec', 'containerd', 'containerd.pid'), dir);
  await killOrphanedShims(dir);
  await unmountUnder(dir);
  await fs.rm(dir, { recursive: true, force: true });
}

/** A containerd shim outlives a SIGKILLed engine, and keeps its container running. */
async function killOrphanedShims(dir: string): Promise<void> {
  const processes = await listProcesses();
  const shims = processes.filter((entry) => entry.cmdline.includes(`${dir}/`));
  for (const shim of shims) {
    for (const child of processes.filter((entry) => entry.ppid === shim.pid)) {
      signalQuietly(child.pid, 'SIGKILL');
    }
    signalQuietly(shim.pid, 'SIGKILL');
  }
}

async function listProcesses(): Promise<Array<{ pid: number; ppid: number; cmdline: string }>> {
  const pids = (await fs.readdir('/proc')).filter((name) => /^\d+$/.test(name));
  const entries = await Promise.all(
    pids.map(async (pid) => {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      // The field after the ")" that closes the command name: state, then ppid.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return { pid: Number(pid), ppid, cmdline };
    }),
  );
  return entries.filter((entry) => entry.pid !== process.pid);
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** SIGTERM, then SIGKILL after a grace period, but only to a process started for `dir`. */
async function stopByPidFile(pidFile: string, dir: string): Promise<void> {
  const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes(dir)) return; // gone, or the pid now belongs to someone else

  signalQuietly(pid, 'SIGTERM');
  const deadline = Date.now() + ENGINE_STOP_TIMEOUT_MS;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) signalQuietly(pid, 'SIGKILL');
}

/** Overlay and shm mounts a killed engine left behind would make the folder undeletable. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
  const points = mounts
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of points) await execFileAsync('umount', ['-l', point]).catch(() => undefined);
}

async function waitForPing(socketPath: string, pid: number, logFile: string): Promise<void> {
  const deadline = Date.now() + ENGINE_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await ping(socketPath)) return;
    if (!isAlive(pid)) break;
    await sleep(50);
  }
  const tail = (await fs.readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-5);
  throw new Error(`dockerd did not answer on ${socketPath}; last log lines:\n${tail.join('\n')}`);
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ socketPath, path: '/_ping', timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
