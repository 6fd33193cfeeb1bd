import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentFleet, WORKER_PROCESSES } from '../agent-fleet';
import { BENCH_TARGETS, BenchServer } from '../certsync-server-fixture';
import { BenchLineage } from '../lineage';
import { measureCpuPercent, readCpuMs, readRssKiB, startRssSampler } from '../proc-sample';
import { round, summarize, type DurationSummary } from '../stats';
import { waitForFiles } from '../target-poll';
import { DEFAULT_SETTLE_MS } from '../../server/config';

export interface ServerFootprint {
  readonly idleRssMiB: number;
  readonly idleCpuPercent: number;
  readonly rolloutPeakRssMiB: number;
  /** Server CPU during rollouts: CPU time used / wall time from link swap to convergence. */
  readonly rolloutCpuPercent: number;
  /** Server CPU time per rollout divided by the number of agents. */
  readonly rolloutCpuMsPerAgent: number;
}

export interface PropagationResult {
  readonly agents: number;
  readonly workerProcesses: number;
  readonly rollouts: number;
  /** The settleMs in effect (the server's default unless the run set one). */
  readonly settleMs: number;
  /** From the server accepting a version to every agent having written, fsynced and reported it. */
  readonly propagation: DurationSummary;
  /** From the last link swap to the same point: detection plus propagation. */
  readonly swapToAll: DurationSummary;
  readonly server: ServerFootprint;
  readonly serverRssBeforeAgentsMiB: number;
  /** Where the node folders were: `disk` (the work folder) or `tmpfs` (fsync costs nothing). */
  readonly nodeFolders: 'disk' | 'tmpfs';
  /**
   * CPU time (user + system) all agent workers used per agent per rollout, over the whole series
   * of rollouts (writes, read-back, reports and the drift re-check that follows each apply).
   */
  readonly agentCpuMsPerApply: number;
}

const IDLE_WINDOW_MS = 5_000;

/** Starts a server and `agents` real agents, then times `rollouts` certbot-style renewals. */
export async function runPropagation(options: {
  workDir: string;
  agents: number;
  rollouts: number;
  /** Undefined: the server's default. */
  settleMs?: number | undefined;
  /**
   * Puts the node folders on tmpfs (/dev/shm). On one machine every simulated node fsyncs to the
   * same disk, one after another; a real fleet has a disk per node. tmpfs shows the rest.
   */
  tmpfsNodes?: boolean;
  /** Called with the running fleet before it is stopped (the agent-process footprint uses it). */
  whileRunning?: (server: BenchServer) => Promise<void>;
}): Promise<PropagationResult> {
  const { workDir, agents } = options;
  const settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
  const lineage = await BenchLineage.create(path.join(workDir, 'letsencrypt'));
  await lineage.prepare(options.rollouts);
  const server = await BenchServer.start({
    workDir,
    liveDir: lineage.liveDir,
    settleMs: options.settleMs,
  });
  const serverRssBeforeAgentsMiB = readRssKiB(server.pid) / 1024;
  let fleet: AgentFleet | undefined;
  const nodesDir = options.tmpfsNodes
    ? await fs.mkdtemp(path.join('/dev/shm', 'certsync-bench-nodes-'))
    : path.join(workDir, 'nodes');
  try {
    fleet = await AgentFleet.start({
      count: agents,
      baseDir: nodesDir,
      serverAddress: server.address,
      transport: server.agentTransport(),
      logFile: path.join(workDir, 'agents.log'),
    });
    await server.waitForConnectedNodes(agents);
    await sleep(1_000);
    const idleRssMiB = readRssKiB(server.pid) / 1024;
    const idleCpuPercent = await measureCpuPercent(server.pid, IDLE_WINDOW_MS);

    const propagationMs: number[] = [];
    const swapToAllMs: number[] = [];
    let rolloutCpuMs = 0;
    let rolloutWallMs = 0;
    const rss = startRssSampler(server.pid);
    const workerPids = fleet.workers.map((worker) => worker.pid as number);
    const agentsCpu = () => workerPids.reduce((sum, pid) => sum + readCpuMs(pid), 0);
    const agentsCpuBefore = agentsCpu();
    for (let version = 2; version < options.rollouts + 2; version += 1) {
      const cpuBefore = readCpuMs(server.pid);
      const next = await server.watchNextRollout(version);
      const { swappedAtMs } = await lineage.renew();
      const convergedAtMs = await next.converged;
      rolloutCpuMs += readCpuMs(server.pid) - cpuBefore;
      rolloutWallMs += Date.now() - swappedAtMs;
      const acceptedAtMs = await next.acceptedAt();
      propagationMs.push(convergedAtMs - acceptedAtMs);
      swapToAllMs.push(convergedAtMs - swappedAtMs);
      await sleep(settleMs + 100);
    }
    const agentCpuMs = agentsCpu() - agentsCpuBefore;
    const rolloutPeakRssMiB = rss.stop() / 1024;
    await checkNodeFolders(fleet.nodeDirs, lineage.current.fullchain, lineage.current.privkey);
    await options.whileRunning?.(server);
    return {
      agents,
      workerProcesses: Math.min(WORKER_PROCESSES, agents),
      rollouts: options.rollouts,
      settleMs,
      propagation: summarize(propagationMs),
      swapToAll: summarize(swapToAllMs),
      server: {
        idleRssMiB: round(idleRssMiB),
        idleCpuPercent: round(idleCpuPercent, 2),
        rolloutPeakRssMiB: round(rolloutPeakRssMiB),
        rolloutCpuPercent: round((rolloutCpuMs / rolloutWallMs) * 100),
        rolloutCpuMsPerAgent: round(rolloutCpuMs / options.rollouts / agents, 2),
      },
      agentCpuMsPerApply: round(agentCpuMs / options.rollouts / agents, 2),
      serverRssBeforeAgentsMiB: round(serverRssBeforeAgentsMiB),
      nodeFolders: options.tmpfsNodes ? 'tmpfs' : 'disk',
    };
  } finally {
    await fleet?.stop();
    await server.stop();
    if (options.tmpfsNodes) await fs.rm(nodesDir, { recursive: true, force: true });
  }
}

/** Every node folder must hold the last version's bytes: a fast wrong answer is no answer. */
async function checkNodeFolders(
  nodeDirs: readonly string[],
  fullchain: string,
  privkey: string,
): Promise<void> {
  const files = nodeDirs.flatMap((dir) => [
    { path: path.join(dir, BENCH_TARGETS.fullchain), bytes: Buffer.from(fullchain) },
    { path: path.join(dir, BENCH_TARGETS.privkey), bytes: Buffer.from(privkey) },
  ]);
  await waitForFiles(files, 1_000);
  const mode = (await fs.stat(files[1]?.path as string)).mode & 0o777;
  if (mode !== 0o600) throw new Error(`key file mode is ${mode.toString(8)}, expected 600`);
}
