import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createAgent, type Agent } from '../agent/agent';
import { createAgentConfig } from '../agent/config';
import { createRootLogger } from '../common/log';

/**
 * A child process hosting many real agents (agent/agent.ts, the same code certsync-agent runs),
 * each with its own node ID, folder and gRPC connection. Started by AgentFleet with its settings
 * in CERTSYNC_BENCH_WORKER (JSON); tells the parent `started` over IPC and stops on SIGTERM.
 */
interface WorkerSettings {
  serverAddress: string;
  baseDir: string;
  nodeIds: string[];
  transport: { caFile: string; tokenFile: string; serverName: string };
}

async function main(): Promise<void> {
  const settings = JSON.parse(process.env['CERTSYNC_BENCH_WORKER'] ?? '{}') as WorkerSettings;
  const logger = createRootLogger('warn');
  const agents: Agent[] = [];
  for (const nodeId of settings.nodeIds) {
    const dir = path.join(settings.baseDir, nodeId);
    await fs.mkdir(dir, { recursive: true });
    const config = createAgentConfig({
      serverAddress: settings.serverAddress,
      dir,
      nodeId,
      transport: settings.transport,
    });
    const agent = createAgent(config, logger.child({ nodeId }));
    await agent.start();
    agents.push(agent);
  }
  process.send?.({ started: agents.length });
  process.once('SIGTERM', () => {
    void Promise.all(agents.map((agent) => agent.stop())).finally(() => process.exit(0));
  });
}

main().catch((error: unknown) => {
  process.stderr.write(
    `agent worker failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
});
