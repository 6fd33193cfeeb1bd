import type { Logger } from '../common/log';
import { CERTSYNC_VERSION } from '../common/version';
import { createAdminService } from './admin-service';
import { createAgentService } from './agent-service';
import { BundleIntake } from './bundle-intake';
import type { ServerConfig } from './config';
import { FanoutHub } from './fanout-hub';
import { Fleet } from './fleet';
import { startGrpcServer, type RunningGrpcServer } from './grpc-server';
import { VersionStore } from './version-store';

export interface ServerApp {
  /** The bound port (useful when listening on port 0). */
  port: number;
  stop(): Promise<void>;
}

/**
 * Wires the server: version store → intakes (watch, validate, accept) → fan-out hub → gRPC.
 * The first check of every source happens before the server reports SERVING.
 */
export async function startServerApp(config: ServerConfig, log: Logger): Promise<ServerApp> {
  const appLog = log.child({ component: 'server' });
  const bundleNames = config.bundles.map((bundle) => bundle.name);
  const store = await VersionStore.open(config.stateDir, bundleNames, config.versionsKept, log.child({ component: 'store' }));
  const fleet = new Fleet();
  const hub = new FanoutHub(store, fleet, bundleNames, log.child({ component: 'hub' }));

  let grpcServer: RunningGrpcServer | undefined;
  const intakes = config.bundles.map(
    (bundle) =>
      new BundleIntake({
        bundle,
        store,
        settleMs: config.settleMs,
        rescanIntervalMs: config.rescanIntervalMs,
        usePolling: config.usePolling,
        onAccepted: (version) => hub.distribute(version),
        log: log.child({ component: 'intake' }),
      }),
  );

  try {
    grpcServer = await startGrpcServer(config.listen, {
      agentService: createAgentService(hub, log.child({ component: 'agent-service' })),
      adminService: createAdminService({
        bundles: config.bundles,
        store,
        fleet,
        fleetMode: config.fleet.mode,
        serverVersion: CERTSYNC_VERSION,
        log: log.child({ component: 'admin-service' }),
      }),
    });
    await Promise.all(intakes.map((intake) => intake.requestCheck()));
  } catch (error) {
    await Promise.all(intakes.map((intake) => intake.close()));
    await grpcServer?.close();
    throw error;
  }

  for (const service of ['', 'certsync.v1.AgentService', 'certsync.v1.AdminService']) {
    grpcServer.health.setStatus(service, 'SERVING');
  }
  for (const bundle of config.bundles) {
    const current = store.current(bundle.name);
    appLog.info(
      { bundle: bundle.name, version: current?.version ?? 0, source: bundle.source, rejected: store.lastRejected(bundle.name)?.reason },
      current ? 'Serving bundle' : 'Bundle has no valid version yet',
    );
  }
  appLog.info({ listen: config.listen, port: grpcServer.port, version: CERTSYNC_VERSION }, 'certsync-server started');

  const running = grpcServer;
  return {
    port: running.port,
    async stop() {
      for (const service of ['', 'certsync.v1.AgentService', 'certsync.v1.AdminService']) {
        running.health.setStatus(service, 'NOT_SERVING');
      }
      await Promise.all(intakes.map((intake) => intake.close()));
      await running.close();
      appLog.info('certsync-server stopped');
    },
  };
}
