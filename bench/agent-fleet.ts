import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { profileArgs } from './certsync-server-fixture';

/** Agent worker processes; CERTSYNC_BENCH_WORKERS overrides (for trying other splits). */
export const WORKER_PROCESSES = Number(process.env['CERTSYNC_BENCH_WORKERS'] ?? '') || 4;

/** N real agents spread over a few worker processes (WORKER_PROCESSES, fewer for small N). */
export class AgentFleet {
  private constructor(
    readonly workers: ChildProcess[],
    readonly nodeDirs: string[],
  ) {}

  static async start(options: {
    count: number;
    baseDir: string;
    serverAddress: string;
    transport: { caFile: string; tokenFile: string; serverName: string };
    logFile: string;
  }): Promise<AgentFleet> {
    const nodeIds = Array.from(
      { length: options.count },
      (_, index) => `node-${String(index + 1).padStart(4, '0')}`,
    );
    const workerCount = Math.min(WORKER_PROCESSES, options.count);
    const log = createWriteStream(options.logFile, { flags: 'a' });
    const workers: ChildProcess[] = [];
    const started: Promise<void>[] = [];
    for (let index = 0; index < workerCount; index += 1) {
      const share = nodeIds.filter((_, position) => position % workerCount === index);
      const settings = {
        serverAddress: options.serverAddress,
        baseDir: options.baseDir,
        nodeIds: share,
        transport: options.transport,
      };
      const worker = fork(path.join(__dirname, 'agent-worker.js'), [], {
        env: { ...process.env, CERTSYNC_BENCH_WORKER: JSON.stringify(settings) },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        execArgv: [...process.execArgv, ...profileArgs('agents')],
      });
      worker.stdout?.pipe(log);
      worker.stderr?.pipe(log);
      workers.push(worker);
      started.push(
        new Promise((resolve, reject) => {
          worker.once('message', () => resolve());
          worker.once('exit', (code) =>
            reject(new Error(`agent worker exited with ${code}; see ${options.logFile}`)),
          );
        }),
      );
    }
    await Promise.all(started);
    return new AgentFleet(
      workers,
      nodeIds.map((nodeId) => path.join(options.baseDir, nodeId)),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.exitCode !== null) return resolve();
            const timer = setTimeout(() => worker.kill('SIGKILL'), 10_000);
            worker.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            worker.kill('SIGTERM');
          }),
      ),
    );
  }
}
