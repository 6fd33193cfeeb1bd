import { readdir, readFile, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';

import { runCommand } from './command.js';
import { pidFilePath, stopEngineInDir } from './docker-engine.js';
import { NAME_PREFIX, type E2eLayout } from './layout.js';
import { listOwnNamespaces, namespacePids, removeNetwork } from './network-namespaces.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * Removes everything an earlier run (or this one) left: engines by their pid files, processes
 * started on the run folder's files (pebble), processes still in the harness's namespaces or
 * cgroups (containers of a killed engine), the network, and the run folder. Only harness-owned things are touched: `cse2e-*` names and the base folder.
 */
export async function removeLeftovers(
  layout: E2eLayout,
  options: { keepRunDir?: boolean } = {},
): Promise<void> {
  await Promise.all((await engineDirs(layout)).map((dir) => stopEngineInDir(dir)));
  killAll(await processesUsing(layout.runDir));

  for (const namespace of await listOwnNamespaces()) killAll(await namespacePids(namespace));
  for (const cgroup of await ownCgroups()) killAll(await cgroupPids(cgroup));
  await removeNetwork();
  for (const cgroup of (await ownCgroups()).reverse()) await rmdir(cgroup).catch(() => undefined);

  await unmountBelow(layout.baseDir);
  if (!options.keepRunDir) await rm(layout.runDir, { recursive: true, force: true });
}

/**
 * Kills one node the hard way, as a power cut would: every process in its network namespace
 * (dockerd, containerd) and in its cgroups (its containers), with SIGKILL. Returns how many.
 */
export async function killNodeProcesses(namespace: string): Promise<number> {
  const pids = [...(await namespacePids(namespace))];
  for (const cgroup of await ownCgroups()) {
    if (cgroup.split('/').some((part) => part === namespace))
      pids.push(...(await cgroupPids(cgroup)));
  }
  killAll(pids);
  return pids.length;
}

/** Folders that hold (or held) a dockerd pid file: every engine of the run, plus the builder. */
async function engineDirs(layout: E2eLayout): Promise<string[]> {
  const parents = [layout.runDir, layout.cacheDir];
  const dirs: string[] = [];
  for (const parent of parents) {
    const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (entry.isDirectory()) dirs.push(path.join(parent, entry.name));
    }
  }
  const withPid = await Promise.all(
    dirs.map(async (dir) => ((await exists(pidFilePath(dir))) ? dir : undefined)),
  );
  return withPid.filter((dir): dir is string => dir !== undefined);
}

/** The harness's cgroups (`--cgroup-parent=/cse2e-…`) in every v1 controller or the v2 tree, deepest last. */
async function ownCgroups(): Promise<string[]> {
  const roots = [
    CGROUP_ROOT,
    ...(await readdir(CGROUP_ROOT).catch(() => [])).map((name) => path.join(CGROUP_ROOT, name)),
  ];
  const found: string[] = [];
  for (const root of roots) {
    const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (entry.isDirectory() && entry.name.startsWith(`${NAME_PREFIX}-`))
        found.push(...(await walk(path.join(root, entry.name))));
    }
  }
  return found;
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const children = await Promise.all(
    entries.filter((entry) => entry.isDirectory()).map((entry) => walk(path.join(dir, entry.name))),
  );
  return [dir, ...children.flat()];
}

async function cgroupPids(cgroup: string): Promise<number[]> {
  const text = await readFile(path.join(cgroup, 'cgroup.procs'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

/** Processes whose command line names a file below `dir`: e.g. pebble of a killed run (`-config run/pebble/…`). */
async function processesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg.startsWith(`${dir}/`))) pids.push(Number(entry));
  }
  return pids;
}

function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Mounts a killed engine left in the host's mount namespace (e.g. `exec/netns/default`). */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((mountPoint) => mountPoint.startsWith(`${dir}/`))
    .reverse();
  for (const mountPoint of mounts)
    await runCommand('umount', ['-l', mountPoint], { allowFailure: true });
}

async function exists(file: string): Promise<boolean> {
  return readFile(file).then(
    () => true,
    () => false,
  );
}
