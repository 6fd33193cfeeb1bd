import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type {
  AdminServiceServer,
  BundleInfo,
  BundleStatus,
  CertificateInfo,
  NodeInfo,
  RolloutInfo,
} from '../common/contract';
import type { Logger } from '../common/log';
import type { CertificateSummary } from './bundle-validator';
import type { BundleConfig } from './config';
import type { ExpectedNodes } from './expected-nodes';
import { isNodeInSync, type Fleet, type NodeRecord } from './fleet';
import { missingNodes, type RolloutData } from './rollout';
import type { RolloutTracker } from './rollout-tracker';
import { InvalidRequestError, NotFoundError, toGrpcStatus } from './status-mapping';
import type { VersionStorage } from './state-store';
import type { BundleVersion } from './version-store';

export interface AdminServiceDeps {
  bundles: readonly BundleConfig[];
  store: VersionStorage;
  fleet: Fleet;
  expectedNodes: ExpectedNodes;
  tracker: RolloutTracker;
  serverVersion: string;
  log: Logger;
}

/** The AdminService implementation. It reports metadata and digests only, never key bytes. */
export function createAdminService(deps: AdminServiceDeps): AdminServiceServer {
  const { store, fleet, log, tracker } = deps;
  const requireBundle = (name: string) => {
    if (!name) throw new InvalidRequestError('bundle is required');
    if (!deps.bundles.some((bundle) => bundle.name === name)) throw new NotFoundError(`no bundle named "${name}" is configured`);
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
        request.version === 0 ? store.current(request.name) : await store.get(request.name, request.version);
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
      return { rollouts: (request.limit > 0 ? rollouts.slice(0, request.limit) : rollouts).map(rolloutInfo) };
    }),
    verify: unary(log, async (request: { bundle: string }) => {
      requireBundle(request.bundle);
      log.info({ bundle: request.bundle }, 'Verify requested');
      return tracker.verify(request.bundle);
    }),
  };
}

/** Wraps a handler so every failure goes through the one error-to-status mapping. */
function unary<Request, Response>(log: Logger, handler: (request: Request) => Response | Promise<Response>) {
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
    .map((nodeId) => ({ nodeId, appliedVersion: 0, inSync: false, files: [], lastError: undefined, updatedAt: undefined, driftRepairs: 0 }));
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
          files: rejected.files.map((file) => ({ path: file.source, sha256: file.sha256, size: file.size, mode: 0 })),
        }
      : undefined,
    nodes,
    nodesExpected: expected.length,
    nodesInSync: nodes.filter((node) => node.inSync && expected.includes(node.nodeId)).length,
    rollout: rollout ? rolloutInfo(rollout) : undefined,
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
