import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BenchServer } from '../certsync-server-fixture';
import { measureCpuPercent, readRssKiB } from '../proc-sample';
import { round } from '../stats';
import { startProcess } from '../../test/support/processes';
import { agentTransportArgs } from '../../test/support/transport-fixture';

export interface AgentFootprint {
  readonly rssMiB: number;
  /** CPU at rest: from SETTLE_WINDOW_MS after the agent is in sync, over IDLE_WINDOW_MS. */
  readonly idleCpuPercent: number;
  readonly idleWindowMs: number;
  /** CPU over the first SETTLE_WINDOW_MS after the agent is in sync (start-up winding down). */
  readonly settlingCpuPercent: number;
  readonly settlingWindowMs: number;
}

/**
 * After start-up and its first bundle the agent still works for a few seconds: V8 finishes
 * compiling and, about 5–10 s after the last burst of allocation, its memory reducer runs a
 * few garbage collections to shrink the heap (seen with strace as one timer wake-up followed by
 * GC helper threads, 2–3 s after the old 5 s wait). That is start-up, reported on its own; the
 * idle figure starts after it.
 */
const SETTLE_WINDOW_MS = 15_000;
const IDLE_WINDOW_MS = 30_000;

/** One real certsync-agent process (dist/agent/main.js), connected and in sync, left idle. */
export async function measureAgentProcess(
  server: BenchServer,
  workDir: string,
  nodesBefore: number,
): Promise<AgentFootprint> {
  const dir = path.join(workDir, 'agent-process-node');
  await fs.mkdir(dir, { recursive: true });
  const args = [
    '--server',
    server.address,
    '--dir',
    dir,
    '--node-id',
    'agent-process',
    '--log-level',
    'warn',
  ];
  args.push(...agentTransportArgs(server.credentials, 'tls'));
  const agent = await startProcess('agent', args, path.join(workDir, 'agent-process.log'));
  try {
    await server.waitForConnectedNodes(nodesBefore + 1, 30_000);
    const pid = agent.child.pid as number;
    const settlingCpuPercent = await measureCpuPercent(pid, SETTLE_WINDOW_MS);
    const idleCpuPercent = await measureCpuPercent(pid, IDLE_WINDOW_MS);
    return {
      rssMiB: round(readRssKiB(pid) / 1024),
      idleCpuPercent: round(idleCpuPercent, 2),
      idleWindowMs: IDLE_WINDOW_MS,
      settlingCpuPercent: round(settlingCpuPercent, 2),
      settlingWindowMs: SETTLE_WINDOW_MS,
    };
  } finally {
    await agent.stop();
  }
}
