import type {
  AgentError,
  AgentHello,
  ApplyReport,
  DriftReport,
  FileDigest,
} from '../common/contract';
import type { BundleVersion } from './version-store';

/** What the server knows one node holds of one bundle. */
export interface NodeBundleRecord {
  /** The version whose bytes the node last confirmed; 0 when none. */
  appliedVersion: number;
  files: FileDigest[];
  lastError: AgentError | undefined;
  updatedAt: Date;
  driftRepairs: number;
}

/** One node the server has heard from (connected mode: the fleet is every node seen). */
export interface NodeRecord {
  nodeId: string;
  hostname: string;
  agentVersion: string;
  dir: string;
  peer: string;
  connected: boolean;
  connectedSince: Date | undefined;
  lastSeen: Date;
  bundles: Map<string, NodeBundleRecord>;
  /** Second agents refused while this node was connected (a cloned or misconfigured node ID). */
  duplicateRefusals: number;
  lastDuplicatePeer: string;
  lastDuplicateAt: Date | undefined;
}

/**
 * True when every file of `version` is on the node with the version's digest. A pure decision over
 * data, so it is tested without sockets.
 */
export function isNodeInSync(
  record: NodeBundleRecord | undefined,
  version: BundleVersion | undefined,
): boolean {
  if (!version) return true;
  if (!record) return false;
  return filesMatchVersion(record.files, version);
}

/**
 * True when `files` (as read on a node) hold exactly the bytes of every file of `version`, with its
 * mode: a key chmodded to 0666 is not in sync. (The owner is not in the report; the agent checks
 * and restores that itself.)
 */
export function filesMatchVersion(files: readonly FileDigest[], version: BundleVersion): boolean {
  // A bundle has a handful of files; a scan is cheaper than building a map on every report.
  return version.files.every((file) => {
    const found = files.find((candidate) => candidate.path === file.target);
    return found?.sha256 === file.sha256 && found.mode === (file.mode & 0o7777);
  });
}

/** The nodes certsync expects to hold every bundle, and what each one last reported. */
export class Fleet {
  private readonly records = new Map<string, NodeRecord>();
  /**
   * The records and their IDs sorted by node ID, rebuilt only when a node is first seen: they are
   * read on every report and every status call, and sorting 1000 IDs each time showed up as a hot
   * spot of the server during rollouts.
   */
  private sorted: { nodes: readonly NodeRecord[]; ids: readonly string[] } | undefined;

  /** Every node, sorted by ID. The array is shared: do not change it. */
  nodes(): readonly NodeRecord[] {
    return this.sortedNodes().nodes;
  }

  /** Every node ID, sorted. The same array until a new node is seen, so a caller may compare by identity. */
  nodeIds(): readonly string[] {
    return this.sortedNodes().ids;
  }

  private sortedNodes(): { nodes: readonly NodeRecord[]; ids: readonly string[] } {
    if (!this.sorted) {
      const nodes = [...this.records.values()].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
      this.sorted = { nodes, ids: nodes.map((node) => node.nodeId) };
    }
    return this.sorted;
  }

  get(nodeId: string): NodeRecord | undefined {
    return this.records.get(nodeId);
  }

  /** Records a hello; what the node already holds counts as applied when it matches a version. */
  connect(
    hello: AgentHello,
    peer: string,
    currentVersions: readonly BundleVersion[],
    now: Date,
  ): NodeRecord {
    const record: NodeRecord = this.records.get(hello.nodeId) ?? {
      nodeId: hello.nodeId,
      hostname: '',
      agentVersion: '',
      dir: '',
      peer: '',
      connected: false,
      connectedSince: undefined,
      lastSeen: now,
      bundles: new Map(),
      duplicateRefusals: 0,
      lastDuplicatePeer: '',
      lastDuplicateAt: undefined,
    };
    Object.assign(record, {
      hostname: hello.hostname,
      agentVersion: hello.agentVersion,
      dir: hello.dir,
      peer,
      connected: true,
      connectedSince: now,
      lastSeen: now,
    });
    for (const version of currentVersions) {
      const previous = record.bundles.get(version.bundle);
      const targets = new Set(version.files.map((file) => file.target));
      const files = hello.files.filter((file) => targets.has(file.path));
      const holdsVersion = filesMatchVersion(files, version);
      record.bundles.set(version.bundle, {
        appliedVersion: holdsVersion ? version.version : (previous?.appliedVersion ?? 0),
        files,
        lastError: previous?.lastError,
        updatedAt: now,
        driftRepairs: previous?.driftRepairs ?? 0,
      });
    }
    if (!this.records.has(hello.nodeId)) this.sorted = undefined;
    this.records.set(hello.nodeId, record);
    return record;
  }

  /** Records that a second agent claimed a connected node's ID and was refused. */
  recordDuplicate(nodeId: string, peer: string, now: Date): NodeRecord | undefined {
    const record = this.records.get(nodeId);
    if (!record) return undefined;
    record.duplicateRefusals += 1;
    record.lastDuplicatePeer = peer;
    record.lastDuplicateAt = now;
    return record;
  }

  disconnect(nodeId: string, now: Date): void {
    const record = this.records.get(nodeId);
    if (!record) return;
    record.connected = false;
    record.connectedSince = undefined;
    record.lastSeen = now;
  }

  /** Records an apply report; the applied version moves only when the read-back digests match it. */
  recordApply(
    nodeId: string,
    report: ApplyReport,
    version: BundleVersion | undefined,
    now: Date,
  ): NodeBundleRecord {
    const bundleRecord = this.bundleRecord(nodeId, report.bundle, now);
    if (report.files.length > 0) bundleRecord.files = report.files;
    const confirmed =
      report.ok && version !== undefined && filesMatchVersion(report.files, version);
    if (confirmed) bundleRecord.appliedVersion = report.version;
    bundleRecord.lastError = report.ok ? undefined : report.error;
    bundleRecord.updatedAt = now;
    return bundleRecord;
  }

  recordDrift(nodeId: string, report: DriftReport, now: Date): NodeBundleRecord {
    const bundleRecord = this.bundleRecord(nodeId, report.bundle, now);
    const changed = new Map(report.files.map((file) => [file.path, file]));
    bundleRecord.files = bundleRecord.files.map((file) => changed.get(file.path) ?? file);
    bundleRecord.driftRepairs += 1;
    bundleRecord.updatedAt = now;
    return bundleRecord;
  }

  private bundleRecord(nodeId: string, bundle: string, now: Date): NodeBundleRecord {
    const record = this.records.get(nodeId);
    if (!record) throw new Error(`node ${nodeId} reported before saying hello`);
    record.lastSeen = now;
    let bundleRecord = record.bundles.get(bundle);
    if (!bundleRecord) {
      bundleRecord = {
        appliedVersion: 0,
        files: [],
        lastError: undefined,
        updatedAt: now,
        driftRepairs: 0,
      };
      record.bundles.set(bundle, bundleRecord);
    }
    return bundleRecord;
  }
}
