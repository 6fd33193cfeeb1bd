import { stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { AgentHello, ApplyReport, BundlePush, SignalRequest } from '../common/contract';
import { createClientTransport, CredentialFileError } from '../common/client-transport';
import type { Logger } from '../common/log';
import { startMetricsListener, type MetricsListener } from '../common/metrics-listener';
import { AgentMetrics } from './agent-metrics';
import { ApplyRetry } from './apply-retry';
import type { AgentConfig } from './config';
import { AgentConnection, type ConnectionState } from './connection';
import { DriftWatcher } from './drift-watcher';
import { scanFolder } from './folder-scan';
import { createLocalDocker, LocalSignaller } from './local-signaller';
import { PushHandler } from './push-handler';
import { SerialQueue } from './serial-queue';
import type { SyncSession } from './sync-session';
import { BundleWriter } from './writer';

/** A running certsync-agent: one folder, one server connection. */
export interface Agent {
  /** Cleans stale temp files, starts watching and connects; rejects if the folder is unusable. */
  start(): Promise<void>;
  /** Closes the stream, stops watching and waits for the apply in progress, if any. */
  stop(): Promise<void>;
  readonly connectionState: ConnectionState;
}

/** Thrown by start() when the agent cannot run at all; the message says what to fix. */
export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
}

/**
 * Wires the agent together. Every piece of work that reads or writes the folder (hello scans,
 * pushes, drift checks) runs through one serial queue, in arrival order.
 */
export function createAgent(config: AgentConfig, logger: Logger): Agent {
  const log = logger.child({ component: 'agent' });
  let transport;
  try {
    transport = createClientTransport(config.transport);
  } catch (error) {
    if (error instanceof CredentialFileError)
      throw new AgentStartError(error.message, { cause: error });
    throw error;
  }
  if (config.transport.insecure) {
    log.warn(
      { insecure: true },
      'INSECURE: plaintext gRPC to the server (--insecure); bundles and tokens cross the network unencrypted',
    );
  }
  const queue = new SerialQueue();
  const metrics = config.metricsListen
    ? new AgentMetrics(() => connection.connectionState === 'connected')
    : undefined;
  let metricsListener: MetricsListener | undefined;
  const writer = new BundleWriter({ dir: config.dir, logger });
  const watcher: DriftWatcher = new DriftWatcher({
    dir: config.dir,
    logger,
    debounceMs: config.driftDebounceMs,
    recheckIntervalMs: config.driftRecheckIntervalMs,
    onSettled: () => void queue.run(reportDrift).catch(logUnexpected),
  });
  const pushHandler = new PushHandler({ dir: config.dir, writer, manifests: watcher, logger });
  const retries = new ApplyRetry({
    policy: config.applyRetry,
    logger,
    retry: (push, stillPending) =>
      queue.run(async () => (stillPending() ? await applyAndReport(push) : undefined)),
  });
  const signaller = new LocalSignaller({
    docker: createLocalDocker(config.dockerSocketPath),
    socketPath: config.dockerSocketPath,
    logger,
  });
  const connection: AgentConnection = new AgentConnection({
    serverAddress: config.serverAddress,
    logger,
    reconnect: config.reconnect,
    connectTimeoutMs: config.connectTimeoutMs,
    keepaliveTimeMs: config.keepaliveTimeMs,
    keepaliveTimeoutMs: config.keepaliveTimeoutMs,
    credentials: transport.credentials,
    // Each agent gets its own HTTP/2 connection even when several run in one process (the
    // benchmark hosts hundreds per process): grpc-js otherwise shares one connection between
    // channels to the same server, which no real fleet of one-agent-per-node processes does.
    channelOptions: { ...transport.channelOptions, 'grpc.use_local_subchannel_pool': 1 },
    metadata: () => transport.metadata(),
    maxMessageBytes: config.maxMessageBytes,
    handlers: {
      createHello: () => queue.run(createHello),
      onPush: (push, session) =>
        void queue.run(() => answerPush(push, session)).catch(logUnexpected),
      // Signals queue behind pushes on purpose. The server asks for a reload only after this
      // node confirmed the bundle, but a repair push (drift, a re-sent version) can still be in
      // the queue; a signal that overtook it would reload the service on the old files. Waiting
      // costs at most one apply (milliseconds), and the Docker calls carry a timeout so a hung
      // engine cannot hold the writes behind it for long.
      onSignal: (request, session) =>
        void queue.run(() => answerSignal(request, session)).catch(logUnexpected),
    },
  });

  async function createHello(): Promise<AgentHello> {
    // A new stream means a server session that has heard nothing; it learns from this hello.
    watcher.forgetReported();
    const files = await scanFolder(config.dir, log);
    return {
      nodeId: config.nodeId,
      hostname: hostname(),
      agentVersion: config.agentVersion,
      dir: config.dir,
      files,
    };
  }

  async function answerPush(push: BundlePush, session: SyncSession): Promise<void> {
    const report = await pushHandler.handle(push);
    metrics?.applyReported(report);
    // A push the node could not write is written again by itself, with backoff, until it is.
    retries.settle(push, report);
    if (!session.send({ message: { $case: 'applyReport', value: report } })) {
      // The next hello describes the folder as this push left it, so nothing is lost.
      log.warn({ bundle: push.bundle, version: push.version }, 'Apply report not sent');
    }
  }

  /** A retry or a local repair: the outcome goes on whichever session is open now, if any. */
  async function applyAndReport(push: BundlePush): Promise<ApplyReport> {
    const report = await pushHandler.handle(push);
    connection.session?.send({ message: { $case: 'applyReport', value: report } });
    return report;
  }

  async function answerSignal(request: SignalRequest, session: SyncSession): Promise<void> {
    const report = await signaller.signal(request);
    if (!session.send({ message: { $case: 'signalReport', value: report } })) {
      // The server's wait for this node times out and names it; it asks again if it must.
      const { service, requestId } = request;
      log.warn({ service, requestId }, 'Signal report not sent');
    }
  }

  /**
   * Looks for drift even while the server is away: a changed mode or owner is put back here and
   * now, from the last confirmed manifest. Each drift is reported (the server logs it and, for
   * changed bytes, sends the content back); without a session the next hello tells instead.
   */
  async function reportDrift(): Promise<void> {
    for (const { report, attributesOnly } of await watcher.findDrift()) {
      const session = connection.session;
      if (session?.send({ message: { $case: 'driftReport', value: report } })) {
        metrics?.driftReported(report.bundle);
        log.info({ bundle: report.bundle, version: report.version }, 'Drift reported');
      }
      if (!attributesOnly) continue;
      const restored = await pushHandler.restoreAttributes(report.bundle);
      if (restored === undefined) continue;
      log.info(
        { bundle: report.bundle, version: restored.version, ok: restored.ok },
        'Attributes restored',
      );
      connection.session?.send({ message: { $case: 'applyReport', value: restored } });
    }
  }

  function logUnexpected(error: unknown): void {
    log.error({ err: error }, 'Agent task failed');
  }

  return {
    async start() {
      await assertFolder(config.dir);
      log.info(
        {
          nodeId: config.nodeId,
          dir: config.dir,
          server: config.serverAddress,
          tls: !config.transport.insecure,
          token: config.transport.tokenFile !== undefined,
          clientCertificate: config.transport.certFile !== undefined,
        },
        'Agent starting',
      );
      await writer.removeStaleTempFiles();
      if (config.metricsListen && metrics) {
        metricsListener = await startMetricsListener({
          listen: config.metricsListen,
          registry: metrics.registry,
          notReadyReasons: () =>
            connection.connectionState === 'connected'
              ? []
              : [`not connected to the server (${connection.connectionState})`],
          log: log.child({ component: 'metrics' }),
        });
      }
      await watcher.start();
      connection.start();
    },
    async stop() {
      retries.stop();
      await connection.stop();
      await watcher.stop();
      await queue.idle();
      await metricsListener?.close();
      log.info({ nodeId: config.nodeId }, 'Agent stopped');
    },
    get connectionState() {
      return connection.connectionState;
    },
  };
}

async function assertFolder(dir: string): Promise<void> {
  const stats = await stat(dir).catch((error: unknown) => {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new AgentStartError(
      `target folder ${dir} is not usable (${reason}); create or mount it (--dir / CERTSYNC_DIR)`,
      {
        cause: error,
      },
    );
  });
  if (!stats.isDirectory()) {
    throw new AgentStartError(`target folder ${dir} is not a folder`);
  }
}
