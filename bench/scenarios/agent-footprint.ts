import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchServer } from '../certsync-server-fixture';
import { measureCpuPercent, readRssKiB } from '../proc-sample';
import { round } from '../stats';
import { startProcess } from '../../test/support/processes';
import { agentTransportArgs } from '../../test/support/transport-fixture';

export interface AgentFootprint {
  readonly rssMiB: number;
  readonly idleCpuPercent: number;
  readonly idleWindowMs: number;
}

const IDLE_WINDOW_MS = 10_000;

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
    // Past start-up work (JIT, first GCs, the hello scan), so the window sees the agent at rest.
    await sleep(5_000);
    const pid = agent.child.pid as number;
    const idleCpuPercent = await measureCpuPercent(pid, IDLE_WINDOW_MS);
    return {
      rssMiB: round(readRssKiB(pid) / 1024),
      idleCpuPercent: round(idleCpuPercent, 2),
      idleWindowMs: IDLE_WINDOW_MS,
    };
  } finally {
    await agent.stop();
  }
}
