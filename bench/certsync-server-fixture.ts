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

/** The rollout a renewal is about to start, followed from before the renewal. */
export interface NextRollout {
  /**
   * The server's time of the `converged` transition: every connected agent wrote, fsynced, read
   * back and reported the version. Resolves once the rollout is final (done right after, since
   * the bench bundle has no reload targets).
   */
  readonly converged: Promise<number>;
  /** The server's acceptance time of the version (one GetBundle; call after convergence). */
  acceptedAt(): Promise<number>;
}

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
   * Subscribes to the next rollout of the bundle and returns once the server confirmed the
   * subscription; start the renewal after that. The server pushes the rollout's state changes
   * (WatchRollout without per-node events), so waiting costs it neither a GetStatus per poll
   * nor a message per node inside the very window being measured.
   */
  async watchNextRollout(version: number, timeoutMs = 120_000): Promise<NextRollout> {
    let subscribed!: () => void;
    const live = new Promise<void>((resolve) => (subscribed = resolve));
    let convergedAt: Date | undefined;
    let wrongVersion: number | undefined;
    const ended = this.admin.watchRollout(
      BENCH_BUNDLE,
      (event) => {
        const rollout = event.rollout;
        if (event.kind === 'snapshot' && rollout && rollout.version !== version)
          wrongVersion = rollout.version;
        if (event.kind === 'transition' && event.transition?.to === 'converged')
          convergedAt ??= event.transition.at;
      },
      { next: true, transitionsOnly: true, timeoutMs, onSubscribed: subscribed },
    );
    await Promise.race([live, ended]);
    return {
      converged: ended.then(async (finished) => {
        if (wrongVersion !== undefined)
          throw new Error(`expected a rollout of version ${version}, got ${wrongVersion}`);
        if (!finished || !convergedAt)
          throw new Error(`rollout of version ${version} did not converge within ${timeoutMs} ms`);
        return convergedAt.getTime();
      }),
      acceptedAt: async () => {
        const { bundle } = await this.admin.getBundle(BENCH_BUNDLE, version);
        return (bundle?.acceptedAt as Date).getTime();
      },
    };
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
