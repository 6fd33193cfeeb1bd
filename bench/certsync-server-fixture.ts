import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BundleStatus } from '../common/contract';
import { AdminClient } from '../ctl/admin-client';
import { freePort, startProcess, type ManagedProcess } from '../test/support/processes';
import {
  clientTransport,
  createTransportFixture,
  LOOPBACK_SERVER_NAME,
  serverTransportConfig,
  type TransportFixture,
} from '../test/support/transport-fixture';

export const BENCH_BUNDLE = 'example';

/**
 * `npm run bench -- --profile DIR` sets CERTSYNC_BENCH_PROFILE_DIR: the server and every agent
 * worker then write a V8 CPU profile into DIR/server/ or DIR/agents/ when they exit (open in Chrome DevTools or speedscope).
 */
export function profileArgs(name: string): string[] {
  const dir = process.env['CERTSYNC_BENCH_PROFILE_DIR'];
  if (!dir) return [];
  return ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, name)}`];
}
export const BENCH_TARGETS = {
  fullchain: 'STAR.example.test.full.crt',
  privkey: 'STAR.example.test_key.pem',
};
// Measured times come from the server's own timestamps, so polling only decides how soon we
// notice; slow enough not to load the server (a GetStatus with 1000 nodes is not free).
const POLL_INTERVAL_MS = 25;
/** Convergence is read from the rollout's own transition time; polling for it is only a wait. */
const CONVERGED_POLL_INTERVAL_MS = 100;

/** A real certsync-server process (TLS with tokens, like production) watching one lineage. */
export class BenchServer {
  private constructor(
    readonly process: ManagedProcess,
    readonly admin: AdminClient,
    readonly address: string,
    readonly credentials: TransportFixture,
  ) {}

  static async start(options: {
    workDir: string;
    liveDir: string;
    /** Omitted: the server's default settle windows, as a deployment without the key gets. */
    settleMs?: number | undefined;
  }): Promise<BenchServer> {
    const port = await freePort();
    const credentials = await createTransportFixture(path.join(options.workDir, 'secrets'));
    const configFile = path.join(options.workDir, 'certsync.yml');
    const config = [
      `listen: 127.0.0.1:${port}`,
      ...serverTransportConfig(credentials, 'tls'),
      `stateDir: ${JSON.stringify(path.join(options.workDir, 'state'))}`,
      ...(options.settleMs === undefined ? [] : [`settleMs: ${options.settleMs}`]),
      'logLevel: warn',
      'convergeTimeoutMs: 600000',
      'versionsKept: 2',
      'fleet: { mode: connected }',
      'bundles:',
      `  - name: ${BENCH_BUNDLE}`,
      `    source: ${JSON.stringify(options.liveDir)}`,
      '    files:',
      `      - { source: fullchain.pem, target: ${BENCH_TARGETS.fullchain}, mode: "0644" }`,
      `      - { source: privkey.pem, target: ${BENCH_TARGETS.privkey}, mode: "0600" }`,
      '    expectNames: ["*.example.test"]',
      '',
    ].join('\n');
    await fs.writeFile(configFile, config);
    const child = await startProcess(
      'server',
      ['--config', configFile],
      path.join(options.workDir, 'server.log'),
      {},
      profileArgs('server'),
    );
    const address = `127.0.0.1:${port}`;
    const admin = new AdminClient(address, clientTransport(credentials, 'tls', 'admin'), 5_000);
    const server = new BenchServer(child, admin, address, credentials);
    await server.waitForBundle((bundle) => bundle.currentVersion >= 1, 20_000);
    return server;
  }

  get pid(): number {
    return this.process.child.pid as number;
  }

  /** What an agent needs to reach this server. */
  agentTransport() {
    return {
      caFile: this.credentials.caFile,
      tokenFile: this.credentials.agentTokenFile,
      serverName: LOOPBACK_SERVER_NAME,
    };
  }

  async bundle(): Promise<BundleStatus> {
    const status = await this.admin.getStatus();
    const bundle = status.bundles.find((candidate) => candidate.name === BENCH_BUNDLE);
    if (!bundle) throw new Error(`bundle ${BENCH_BUNDLE} missing from GetStatus`);
    return bundle;
  }

  /** Polls GetStatus until `done` holds. */
  async waitForBundle(
    done: (bundle: BundleStatus) => boolean,
    timeoutMs: number,
    intervalMs = POLL_INTERVAL_MS,
  ): Promise<BundleStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const bundle = await this.bundle().catch(() => undefined);
      if (bundle && done(bundle)) return bundle;
      if (Date.now() > deadline)
        throw new Error(`timed out after ${timeoutMs} ms waiting for bundle ${BENCH_BUNDLE}`);
      await sleep(intervalMs);
    }
  }

  /** Waits until `version` is accepted; returns the server's acceptance time (ms since epoch). */
  async waitForAccepted(version: number, timeoutMs = 30_000): Promise<number> {
    const bundle = await this.waitForBundle(
      (candidate) => candidate.currentVersion >= version,
      timeoutMs,
    );
    return (bundle.acceptedAt as Date).getTime();
  }

  /**
   * Waits until the rollout of `version` converged (every connected agent wrote, fsynced, read
   * back and reported it) and returns the server's time of that transition.
   */
  async waitForConverged(version: number, timeoutMs = 120_000): Promise<number> {
    const bundle = await this.waitForBundle(
      (candidate) =>
        candidate.rollout?.version === version &&
        candidate.rollout.transitions.some((step) => step.to === 'converged'),
      timeoutMs,
      CONVERGED_POLL_INTERVAL_MS,
    );
    const step = bundle.rollout?.transitions.find((candidate) => candidate.to === 'converged');
    return (step?.at as Date).getTime();
  }

  async waitForConnectedNodes(count: number, timeoutMs = 180_000): Promise<void> {
    await this.waitForBundle(
      (bundle) => bundle.nodes.filter((node) => node.inSync).length >= count,
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    this.admin.close();
    await this.process.stop();
  }
}
