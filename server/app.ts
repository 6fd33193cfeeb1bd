import type { Logger } from '../common/log';
import { startMetricsListener, type MetricsListener } from '../common/metrics-listener';
import { CERTSYNC_VERSION } from '../common/version';
import { createAdminService } from './admin-service';
import { createAgentService } from './agent-service';
import { BundleIntake } from './bundle-intake';
import type { ServerConfig } from './config';
import { FanoutHub } from './fanout-hub';
import { createDockerClient, type DockerClient } from './docker-client';
import { createExpectedNodes } from './expected-nodes';
import { ExpiryWatch } from './expiry-watch';
import { Fleet } from './fleet';
import { startGrpcServer, type RunningGrpcServer } from './grpc-server';
import { Prover } from './prover';
import { Reloader } from './reloader';
import { PauseRegistry } from './pause-registry';
import { openStateStore } from './open-state-store';
import { loadServerTransport } from './server-transport';
import { RolloutTracker } from './rollout-tracker';
import type { ServerMetrics } from './server-metrics';
import { SignalDispatcher } from './signal-dispatcher';

export interface ServerApp {
  /** The bound port (useful when listening on port 0). */
  port: number;
  /** The metrics listener's bound port; undefined without `metrics` in the config. */
  metricsPort: number | undefined;
  stop(): Promise<void>;
}

/**
 * Wires the server: version store → intakes (watch, validate, accept) → fan-out hub → gRPC.
 * The first check of every source happens before the server reports SERVING.
 */
export interface ServerAppOptions {
  /**
   * Called when this server lost the swarm state lease to another server (stateStore: swarm).
   * It must stop acting at once; main exits non-zero so Swarm restarts it as a standby.
   */
  onLeaseLost?: (holder: string) => void;
}

/**
 * Loaded only when the config has `metrics`: prom-client and the metric definitions hold about
 * 1.5 MB of heap, which a server without a metrics listener would carry for nothing.
 */
function loadServerMetrics(): typeof ServerMetrics {
  return (require('./server-metrics') as typeof import('./server-metrics')).ServerMetrics;
}

export async function startServerApp(
  config: ServerConfig,
  log: Logger,
  options: ServerAppOptions = {},
): Promise<ServerApp> {
  const appLog = log.child({ component: 'server' });
  // Credentials first: a missing secret fails the start before anything else is opened.
  const transport = loadServerTransport(config, log.child({ component: 'transport' }));
  const bundleNames = config.bundles.map((bundle) => bundle.name);
  const opened = await openStateStore(config, bundleNames, log, {
    onLeaseLost: (holder) => {
      appLog.fatal({ holder }, 'Swarm state lease lost; stopping');
      options.onLeaseLost?.(holder);
    },
  });
  const { versions: store, history, lease } = opened;
  const pauses = await PauseRegistry.open(config.stateDir, log.child({ component: 'pause' }));
  const isPaused = (bundle: string) => pauses.isPaused(bundle);
  const fleet = new Fleet();
  const hub = new FanoutHub(
    store,
    fleet,
    bundleNames,
    log.child({ component: 'hub' }),
    undefined,
    isPaused,
  );
  // Docker is only reached when the fleet or a reload target needs it.
  let docker: DockerClient | undefined;
  const dockerClient = () => (docker ??= createDockerClient());
  const expectedNodes = createExpectedNodes(config.fleet, {
    fleet,
    docker: dockerClient,
    log: log.child({ component: 'fleet' }),
  });
  const signals = new SignalDispatcher(hub, log.child({ component: 'signals' }));
  const expiry = new ExpiryWatch({
    bundleNames,
    store,
    windowDays: config.expiryWarningDays,
    log: log.child({ component: 'expiry' }),
  });
  const metrics = config.metrics
    ? new (loadServerMetrics())({
        bundleNames,
        store,
        fleet,
        expectedNodes,
        expiry,
        serverVersion: CERTSYNC_VERSION,
      })
    : undefined;
  if (metrics) hub.onAgentConnected((nodeId) => metrics.agentConnected(nodeId));
  const tracker = new RolloutTracker({
    bundles: config.bundles,
    store,
    fleet,
    expectedNodes,
    reloader: new Reloader(dockerClient, signals, log.child({ component: 'reloader' })),
    prover: new Prover(dockerClient, log.child({ component: 'prover' })),
    history,
    convergeTimeoutMs: config.convergeTimeoutMs,
    distribute: (version) => hub.distribute(version),
    log: log.child({ component: 'rollout' }),
    events: metrics,
    isPaused,
    serverId: lease?.holderId,
  });
  hub.onFleetChange((nodeId) => tracker.nodeChanged(nodeId));

  let grpcServer: RunningGrpcServer | undefined;
  let metricsListener: MetricsListener | undefined;
  let serving = false;
  const intakes = config.bundles.map(
    (bundle) =>
      new BundleIntake({
        bundle,
        store,
        settleMs: config.settleMs,
        rejectSettleMs: config.rejectSettleMs,
        rescanIntervalMs: config.rescanIntervalMs,
        usePolling: config.usePolling,
        limits: config.limits,
        onAccepted: async (version, trigger) => {
          hub.distribute(version);
          expiry.evaluate();
          await tracker.begin(version, trigger);
        },
        onRejected: (reason) => {
          metrics?.candidateRejected(bundle.name, reason);
          expiry.evaluate();
        },
        isPaused: () => pauses.isPaused(bundle.name),
        log: log.child({ component: 'intake' }),
      }),
  );

  try {
    if (config.metrics && metrics) {
      metricsListener = await startMetricsListener({
        listen: config.metrics.listen,
        registry: metrics.registry,
        // The version store is loaded before this point; gRPC and the first source check are not.
        notReadyReasons: () =>
          serving ? [] : ['gRPC server not serving yet (starting or stopping)'],
        log: log.child({ component: 'metrics' }),
      });
    }
    await expectedNodes.start(() => tracker.evaluateAll());
    await tracker.resume();
    grpcServer = await startGrpcServer(config.listen, {
      transport,
      maxMessageBytes: config.limits.maxMessageBytes,
      log: log.child({ component: 'access' }),
      agentService: createAgentService(
        hub,
        expectedNodes,
        signals,
        log.child({ component: 'agent-service' }),
      ),
      adminService: createAdminService({
        bundles: config.bundles,
        store,
        fleet,
        expectedNodes,
        tracker,
        expiry,
        pauses,
        intakes: new Map(config.bundles.map((bundle, index) => [bundle.name, intakes[index]!])),
        serverVersion: CERTSYNC_VERSION,
        log: log.child({ component: 'admin-service' }),
      }),
    });
    await Promise.all(intakes.map((intake) => intake.requestCheck()));
  } catch (error) {
    await Promise.all(intakes.map((intake) => intake.close()));
    await grpcServer?.close();
    await metricsListener?.close();
    await tracker.close();
    expectedNodes.close();
    await lease?.close();
    throw error;
  }
  expiry.start();

  for (const service of ['', 'certsync.v1.AgentService', 'certsync.v1.AdminService']) {
    grpcServer.health.setStatus(service, 'SERVING');
  }
  serving = true;
  for (const bundle of config.bundles) {
    const current = store.current(bundle.name);
    appLog.info(
      {
        bundle: bundle.name,
        version: current?.version ?? 0,
        source: bundle.source,
        rejected: store.lastRejected(bundle.name)?.reason,
      },
      current ? 'Serving bundle' : 'Bundle has no valid version yet',
    );
  }
  appLog.info(
    {
      listen: config.listen,
      port: grpcServer.port,
      version: CERTSYNC_VERSION,
      tls: config.tls !== undefined,
      clientCertificates: config.tls?.clientCaFile !== undefined,
      tokens: Object.keys(transport.policy.tokens),
      metricsListen: config.metrics?.listen,
      metricsPort: metricsListener?.port,
    },
    'certsync-server started',
  );

  const running = grpcServer;
  const runningMetrics = metricsListener;
  return {
    port: running.port,
    metricsPort: runningMetrics?.port,
    async stop() {
      serving = false;
      for (const service of ['', 'certsync.v1.AgentService', 'certsync.v1.AdminService']) {
        running.health.setStatus(service, 'NOT_SERVING');
      }
      await Promise.all(intakes.map((intake) => intake.close()));
      await tracker.close();
      expiry.close();
      expectedNodes.close();
      await running.close();
      await runningMetrics?.close();
      await lease?.close();
      appLog.info('certsync-server stopped');
    },
  };
}
