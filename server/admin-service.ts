import {
  Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import type {
  AdminServiceServer,
  BundleInfo,
  BundleStatus,
  CertificateInfo,
  NodeInfo,
  RolloutInfo,
  WatchRolloutRequest,
  WatchRolloutResponse,
} from '../common/contract';
import { ImportMappingError, type BundleIntake } from './bundle-intake';
import { BundleValidationError } from './bundle-validation-error';
import type { PauseRegistry } from './pause-registry';
import type { Logger } from '../common/log';
import type { CertificateSummary } from './bundle-validator';
import type { BundleConfig } from './config';
import type { ExpectedNodes } from './expected-nodes';
import type { ExpiryWatch } from './expiry-watch';
import { isNodeInSync, type Fleet, type NodeRecord } from './fleet';
import { missingNodes, type RolloutData } from './rollout';
import { FINAL_ROLLOUT_STATES, type RolloutEvent, type RolloutTracker } from './rollout-tracker';
import {
  FailedPreconditionError,
  InvalidRequestError,
  NotFoundError,
  toGrpcStatus,
} from './status-mapping';
import type { VersionStorage } from './state-store';
import type { BundleVersion } from './version-store';

export interface AdminServiceDeps {
  bundles: readonly BundleConfig[];
  store: VersionStorage;
  fleet: Fleet;
  expectedNodes: ExpectedNodes;
  tracker: RolloutTracker;
  /** The expiry warning per bundle; none when absent. */
  expiry?: Pick<ExpiryWatch, 'warning'>;
  pauses: PauseRegistry;
  /** The intake of each bundle, for Resume (read the source again) and Import. */
  intakes: ReadonlyMap<string, BundleIntake>;
  serverVersion: string;
  log: Logger;
}

/** The AdminService implementation. It reports metadata and digests only, never key bytes. */
export function createAdminService(deps: AdminServiceDeps): AdminServiceServer {
  const { store, fleet, log, tracker } = deps;
  const requireBundle = (name: string) => {
    if (!name) throw new InvalidRequestError('bundle is required');
    if (!deps.bundles.some((bundle) => bundle.name === name))
      throw new NotFoundError(`no bundle named "${name}" is configured`);
  };
  return {
    getStatus: unary(log, () => ({
      bundles: deps.bundles.map((bundle) => bundleStatus(bundle, deps)),
      nodes: fleet.nodes().map(nodeInfo),
      fleetMode: deps.expectedNodes.mode,
      serverVersion: deps.serverVersion,
    })),
    listNodes: unary(log, () => ({ nodes: fleet.nodes().map(nodeInfo) })),
    getBundle: unary(log, async (request: { name: string; version: number }) => {
      if (!request.name) throw new InvalidRequestError('name is required');
      if (!deps.bundles.some((bundle) => bundle.name === request.name)) {
        throw new NotFoundError(`no bundle named "${request.name}" is configured`);
      }
      const version =
        request.version === 0
          ? store.current(request.name)
          : await store.get(request.name, request.version);
      if (!version) {
        throw new NotFoundError(
          request.version === 0
            ? `bundle "${request.name}" has no accepted version yet`
            : `bundle "${request.name}" has no version ${request.version} (kept: ${(await store.listVersions(request.name)).join(', ')})`,
        );
      }
      return { bundle: bundleInfo(version) };
    }),
    reload: unary(log, (request: { bundle: string; force: boolean }) => {
      requireBundle(request.bundle);
      log.info({ bundle: request.bundle, force: request.force }, 'Reload requested');
      return { rollout: rolloutInfo(tracker.reload(request.bundle, request.force)) };
    }),
    rollout: unary(log, async (request: { bundle: string; version: number }) => {
      requireBundle(request.bundle);
      log.info({ bundle: request.bundle, version: request.version }, 'Rollout requested');
      return { rollout: rolloutInfo(await tracker.rollout(request.bundle, request.version)) };
    }),
    listRollouts: unary(log, (request: { bundle: string; limit: number }) => {
      requireBundle(request.bundle);
      const rollouts = tracker.list(request.bundle);
      return {
        rollouts: (request.limit > 0 ? rollouts.slice(0, request.limit) : rollouts).map(
          rolloutInfo,
        ),
      };
    }),
    verify: unary(log, async (request: { bundle: string }) => {
      requireBundle(request.bundle);
      log.info({ bundle: request.bundle }, 'Verify requested');
      return tracker.verify(request.bundle);
    }),
    watchRollout: (call: ServerWritableStream<WatchRolloutRequest, WatchRolloutResponse>) => {
      try {
        const { bundle, next, transitionsOnly } = call.request;
        requireBundle(bundle);
        const atCall = tracker.current(bundle);
        let watched = next ? undefined : atCall;
        log.info({ bundle, next, version: atCall?.version }, 'Rollout watch started');
        const snapshot = (rollout: RolloutData) =>
          call.write({
            kind: 'snapshot',
            rollout: rolloutInfo(rollout),
            nodeId: '',
            transition: undefined,
            reload: undefined,
          });
        if (!next) {
          if (!atCall)
            throw new FailedPreconditionError(
              `bundle "${bundle}" has no rollout yet (no accepted version); use --next to wait for one`,
            );
          snapshot(atCall);
          if (FINAL_ROLLOUT_STATES.has(atCall.state)) return call.end();
        }
        const unsubscribe = tracker.subscribe(bundle, (event: RolloutEvent) => {
          if (!watched && event.kind === 'started' && event.rollout !== atCall) {
            watched = event.rollout;
            snapshot(watched);
            return;
          }
          if (event.rollout !== watched || event.kind === 'started') return;
          if (transitionsOnly && event.kind === 'node-confirmed') return;
          call.write(watchEvent(event));
          if (event.kind === 'transition' && FINAL_ROLLOUT_STATES.has(event.transition.to)) {
            unsubscribe();
            call.end();
          }
        });
        call.on('cancelled', unsubscribe);
        call.on('close', unsubscribe);
        // With --next nothing may be written for a long while; the headers tell the client that
        // the subscription is live, so it can start what it wants to watch without a race.
        if (next) call.sendMetadata(new Metadata());
      } catch (error) {
        call.emit('error', toGrpcStatus(error, log, { method: call.getPath() }));
      }
    },
    pause: unary(log, async (request: { bundle: string }) => {
      requireBundle(request.bundle);
      await deps.pauses.set(request.bundle, true);
      return { paused: true };
    }),
    resume: unary(log, async (request: { bundle: string }) => {
      requireBundle(request.bundle);
      const before = store.current(request.bundle)?.version;
      await deps.pauses.set(request.bundle, false);
      await deps.intakes.get(request.bundle)?.requestCheck();
      const current = store.current(request.bundle);
      const rollout = tracker.current(request.bundle);
      if (!current || current.version !== before)
        return { rollout: rollout && rolloutInfo(rollout) };
      // Nothing new arrived: roll out again only what the pause left unfinished.
      const status = bundleStatus(
        deps.bundles.find((bundle) => bundle.name === request.bundle)!,
        deps,
      );
      const settled =
        rollout?.version === current.version &&
        rollout.state === 'done' &&
        status.nodesInSync === status.nodesExpected;
      if (settled) return { rollout: rolloutInfo(rollout) };
      return { rollout: rolloutInfo(await tracker.rollout(request.bundle, 0, 'resume')) };
    }),
    rollback: unary(log, async (request: { bundle: string; toVersion: number }) => {
      requireBundle(request.bundle);
      log.warn({ bundle: request.bundle, toVersion: request.toVersion }, 'Rollback requested');
      return { rollout: rolloutInfo(await tracker.rollback(request.bundle, request.toVersion)) };
    }),
    import: unary(
      log,
      async (request: { bundle: string; cert: Buffer; key: Buffer; chain: Buffer }) => {
        requireBundle(request.bundle);
        if (request.cert.length === 0 || request.key.length === 0)
          throw new InvalidRequestError('cert and key are required');
        if (deps.pauses.isPaused(request.bundle)) {
          throw new FailedPreconditionError(
            `bundle "${request.bundle}" is paused; run \`certsyncctl resume ${request.bundle}\` first`,
          );
        }
        // Sizes only: the key bytes are never logged.
        log.info(
          {
            bundle: request.bundle,
            certBytes: request.cert.length,
            chainBytes: request.chain.length,
          },
          'Import requested',
        );
        let accepted;
        try {
          accepted = await deps.intakes
            .get(request.bundle)!
            .importCandidate({ cert: request.cert, key: request.key, chain: request.chain });
        } catch (error) {
          if (error instanceof BundleValidationError) {
            log.warn({ bundle: request.bundle, reason: error.reason }, 'Imported bundle rejected');
            throw new InvalidRequestError(
              `import rejected (${error.reason}): ${error.message}; the current version stays`,
            );
          }
          if (error instanceof ImportMappingError) throw new FailedPreconditionError(error.message);
          throw error;
        }
        const version = accepted ?? store.current(request.bundle)!;
        const rollout = tracker.current(request.bundle);
        return { bundle: bundleInfo(version), rollout: rollout && rolloutInfo(rollout) };
      },
    ),
  };
}

function watchEvent(event: RolloutEvent): WatchRolloutResponse {
  const rollout = rolloutInfo(event.rollout);
  switch (event.kind) {
    case 'node-confirmed':
      return {
        kind: event.kind,
        rollout,
        nodeId: event.nodeId,
        transition: undefined,
        reload: undefined,
      };
    case 'transition':
      return {
        kind: event.kind,
        rollout,
        nodeId: '',
        transition: { ...event.transition },
        reload: undefined,
      };
    case 'started':
      return { kind: 'snapshot', rollout, nodeId: '', transition: undefined, reload: undefined };
    case 'reload':
    case 'proof':
      return {
        kind: event.kind,
        rollout,
        nodeId: '',
        transition: undefined,
        reload: { ...event.reload },
      };
  }
}

/** Wraps a handler so every failure goes through the one error-to-status mapping. */
function unary<Request, Response>(
  log: Logger,
  handler: (request: Request) => Response | Promise<Response>,
) {
  return (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => {
    Promise.resolve()
      .then(() => handler(call.request))
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(toGrpcStatus(error, log, { method: call.getPath() })),
      );
  };
}

function bundleStatus(bundle: BundleConfig, deps: AdminServiceDeps): BundleStatus {
  const { store, fleet } = deps;
  const current = store.current(bundle.name);
  const rejected = store.lastRejected(bundle.name);
  const expected = deps.expectedNodes.current();
  const seen = fleet.nodes().map((node) => {
    const record = node.bundles.get(bundle.name);
    return {
      nodeId: node.nodeId,
      appliedVersion: record?.appliedVersion ?? 0,
      inSync: isNodeInSync(record, current),
      files: record?.files ?? [],
      lastError: record?.lastError,
      updatedAt: record?.updatedAt,
      driftRepairs: record?.driftRepairs ?? 0,
    };
  });
  // An expected node whose agent never connected is shown too: it is what a rollout waits for.
  const neverSeen = expected
    .filter((nodeId) => !fleet.get(nodeId))
    .map((nodeId) => ({
      nodeId,
      appliedVersion: 0,
      inSync: false,
      files: [],
      lastError: undefined,
      updatedAt: undefined,
      driftRepairs: 0,
    }));
  const nodes = [...seen, ...neverSeen].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  const rollout = deps.tracker.current(bundle.name);
  return {
    name: bundle.name,
    currentVersion: current?.version ?? 0,
    acceptedAt: current?.acceptedAt,
    leafFingerprintSha256: current?.validated.leaf.fingerprintSha256 ?? '',
    notAfter: current?.validated.leaf.notAfter,
    lastRejected: rejected
      ? {
          at: rejected.at,
          reason: `${rejected.reason}: ${rejected.message}`,
          files: rejected.files.map((file) => ({
            path: file.source,
            sha256: file.sha256,
            size: file.size,
            mode: 0,
          })),
        }
      : undefined,
    nodes,
    nodesExpected: expected.length,
    nodesInSync: nodes.filter((node) => node.inSync && expected.includes(node.nodeId)).length,
    rollout: rollout ? rolloutInfo(rollout) : undefined,
    expiryWarning: deps.expiry?.warning(bundle.name) ?? '',
    paused: deps.pauses.isPaused(bundle.name),
  };
}

function rolloutInfo(rollout: RolloutData): RolloutInfo {
  return {
    bundle: rollout.bundle,
    version: rollout.version,
    state: rollout.state,
    startedAt: rollout.startedAt,
    updatedAt: rollout.updatedAt,
    expectedNodes: rollout.expectedNodes,
    confirmedNodes: Object.keys(rollout.confirmedAt).sort(),
    missingNodes: missingNodes(rollout),
    reason: rollout.reason,
    transitions: rollout.transitions.map((transition) => ({ ...transition })),
    reloads: rollout.reloads.map((reload) => ({ ...reload })),
    trigger: rollout.trigger,
    rollbackOf: rollout.rollbackOf,
  };
}

function nodeInfo(node: NodeRecord): NodeInfo {
  return {
    nodeId: node.nodeId,
    hostname: node.hostname,
    connected: node.connected,
    lastSeen: node.lastSeen,
    connectedSince: node.connectedSince,
    agentVersion: node.agentVersion,
    dir: node.dir,
    peer: node.peer,
    duplicateRefusals: node.duplicateRefusals,
    lastDuplicatePeer: node.lastDuplicatePeer,
    lastDuplicateAt: node.lastDuplicateAt,
  };
}

function bundleInfo(version: BundleVersion): BundleInfo {
  return {
    name: version.bundle,
    version: version.version,
    acceptedAt: version.acceptedAt,
    source: version.sourceDir,
    files: version.files.map((file) => ({
      source: file.source,
      target: file.target,
      mode: file.mode,
      sha256: file.sha256,
      size: file.size,
      owner: file.owner,
    })),
    leaf: certificateInfo(version.validated.leaf),
    chain: version.validated.chain.map(certificateInfo),
    warnings: version.validated.warnings,
    keyType: version.validated.keyType,
  };
}

function certificateInfo(summary: CertificateSummary): CertificateInfo {
  return {
    subject: summary.subject,
    issuer: summary.issuer,
    dnsNames: summary.dnsNames,
    serial: summary.serial,
    notBefore: summary.notBefore,
    notAfter: summary.notAfter,
    fingerprintSha256: summary.fingerprintSha256,
  };
}
