import type {
  AgentHello,
  ApplyReport,
  BundlePush,
  DriftReport,
  SyncResponse,
} from '../common/contract';
import type { Logger } from '../common/log';
import { EncodedSyncResponse, type OutgoingSyncResponse } from './encoded-response';
import { filesMatchVersion, type Fleet } from './fleet';
import type { VersionStorage } from './state-store';
import type { BundleVersion } from './version-store';

/** One connected agent stream, as the hub sees it. */
export interface AgentSession {
  readonly nodeId: string;
  readonly peer: string;
  send(message: OutgoingSyncResponse): void;
}

/**
 * Thrown when an agent claims the identity of a node that already has a live connection. The
 * first connection wins; the second is refused and reported, so two agents never fight over one
 * node's files.
 */
export class DuplicateNodeError extends Error {
  constructor(
    readonly nodeId: string,
    readonly existingPeer: string,
  ) {
    super(
      `node "${nodeId}" is already connected from ${existingPeer}; a second agent with the same --node-id was refused`,
    );
    this.name = 'DuplicateNodeError';
  }
}

/**
 * Sends every current bundle version to every connected agent and turns agents' reports into fleet
 * state. A node that already holds a version's bytes (told by its hello) gets a manifest without
 * content, so a restarted server rewrites nothing.
 */
export class FanoutHub {
  private readonly sessions = new Map<string, AgentSession>();
  private readonly fleetListeners: Array<(nodeId: string) => void> = [];
  private readonly connectListeners: Array<(nodeId: string) => void> = [];
  /** Each version's push, encoded once for all agents: with content and as a manifest. */
  private readonly encodedPushes = new WeakMap<
    BundleVersion,
    { content?: EncodedSyncResponse; manifest?: EncodedSyncResponse }
  >();

  constructor(
    private readonly store: VersionStorage,
    private readonly fleet: Fleet,
    private readonly bundleNames: readonly string[],
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
    /** A paused bundle is pushed to no node (see PauseRegistry). */
    private readonly isPaused: (bundle: string) => boolean = () => false,
  ) {}

  /** Runs `listener` after every change of what a node holds or whether it is connected. */
  onFleetChange(listener: (nodeId: string) => void): void {
    this.fleetListeners.push(listener);
  }

  /** Runs `listener` after each agent stream is attached (for the connects counter). */
  onAgentConnected(listener: (nodeId: string) => void): void {
    this.connectListeners.push(listener);
  }

  /** Registers a session after its hello and sends it what it must hold. */
  attach(session: AgentSession, hello: AgentHello): void {
    const existing = this.sessions.get(session.nodeId);
    if (existing) {
      const record = this.fleet.recordDuplicate(session.nodeId, session.peer, this.now());
      this.log.warn(
        {
          node: session.nodeId,
          peer: session.peer,
          connectedPeer: existing.peer,
          refusals: record?.duplicateRefusals,
        },
        'Duplicate node identity refused',
      );
      throw new DuplicateNodeError(session.nodeId, existing.peer);
    }

    this.sessions.set(session.nodeId, session);
    const versions = this.currentVersions();
    const record = this.fleet.connect(hello, session.peer, versions, this.now());
    const applied = Object.fromEntries(
      versions.map((version) => [
        version.bundle,
        record.bundles.get(version.bundle)?.appliedVersion ?? 0,
      ]),
    );
    this.log.info(
      {
        node: session.nodeId,
        peer: session.peer,
        hostname: hello.hostname,
        agentVersion: hello.agentVersion,
        applied,
      },
      'Agent connected',
    );
    for (const listener of this.connectListeners) listener(session.nodeId);
    for (const version of versions) {
      if (this.isPaused(version.bundle)) continue;
      const holds = record.bundles.get(version.bundle)?.appliedVersion === version.version;
      this.push(session, version, holds);
    }
    this.notifyFleetChange(session.nodeId);
  }

  /** Forgets a session that ended; false when it was not the node's live session. */
  detach(session: AgentSession, reason: string): boolean {
    if (this.sessions.get(session.nodeId) !== session) return false;
    this.sessions.delete(session.nodeId);
    const connectedSince = this.fleet.get(session.nodeId)?.connectedSince;
    const now = this.now();
    this.fleet.disconnect(session.nodeId, now);
    const durationMs = connectedSince ? now.getTime() - connectedSince.getTime() : undefined;
    this.log.info(
      { node: session.nodeId, peer: session.peer, reason, durationMs },
      'Agent disconnected',
    );
    this.notifyFleetChange(session.nodeId);
    return true;
  }

  /** Called by the intake when a new version becomes current. */
  distribute(version: BundleVersion): void {
    if (this.isPaused(version.bundle)) {
      this.log.info(
        { bundle: version.bundle, version: version.version },
        'Bundle paused; not distributed',
      );
      return;
    }
    this.log.info(
      { bundle: version.bundle, version: version.version, nodes: this.sessions.size },
      'Distributing bundle',
    );
    for (const session of this.sessions.values()) this.push(session, version, false);
  }

  handleApplyReport(session: AgentSession, report: ApplyReport): void {
    const current = this.store.current(report.bundle);
    const version = current?.version === report.version ? current : undefined;
    const record = this.fleet.recordApply(session.nodeId, report, version, this.now());
    const fields = {
      node: session.nodeId,
      bundle: report.bundle,
      version: report.version,
      filesWritten: report.filesWritten,
    };

    if (report.ok && version && filesMatchVersion(report.files, version)) {
      // Debug: at info this was a synchronous write per node per rollout; the rollout's
      // transitions say when all confirmed, and failures below stay at warn.
      this.log.debug(
        fields,
        report.filesWritten > 0 ? 'Node applied bundle' : 'Node confirmed bundle',
      );
      this.notifyFleetChange(session.nodeId);
      return;
    }
    if (report.ok) {
      this.log.warn(
        { ...fields, current: current?.version },
        'Node confirmed a version that is not current',
      );
      if (current) this.push(session, current, false);
      return;
    }
    this.log.warn(
      { ...fields, error: report.error, appliedVersion: record.appliedVersion },
      'Node failed to apply bundle',
    );
    // A manifest the node does not match is answered with the bytes. A failed write is not
    // re-sent from here: the agent keeps the push and retries it itself, with backoff.
    if (report.error?.code === 'DIGEST_MISMATCH' && current) this.push(session, current, false);
  }

  handleDriftReport(session: AgentSession, report: DriftReport): void {
    const record = this.fleet.recordDrift(session.nodeId, report, this.now());
    const current = this.store.current(report.bundle);
    this.log.warn(
      {
        node: session.nodeId,
        bundle: report.bundle,
        version: current?.version,
        files: report.files.map((file) => file.path),
        repairs: record.driftRepairs,
      },
      'Managed file changed on node; restoring',
    );
    if (current && !this.isPaused(current.bundle)) this.push(session, current, false);
  }

  /**
   * Sends one message on a node's live session, for requests that are not bundles (signals).
   * Returns the session it went out on, so the caller can tell that session's loss from a later
   * reconnect of the same node; undefined when the node has no session.
   */
  sendToNode(nodeId: string, message: SyncResponse): AgentSession | undefined {
    const session = this.sessions.get(nodeId);
    session?.send(message);
    return session;
  }

  connectedNodeIds(): string[] {
    return [...this.sessions.keys()];
  }

  private notifyFleetChange(nodeId: string): void {
    for (const listener of this.fleetListeners) listener(nodeId);
  }

  private currentVersions(): BundleVersion[] {
    return this.bundleNames
      .map((name) => this.store.current(name))
      .filter((version): version is BundleVersion => version !== undefined);
  }

  private push(session: AgentSession, version: BundleVersion, manifestOnly: boolean): void {
    session.send(this.encodedPush(version, manifestOnly));
    this.log.debug(
      { node: session.nodeId, bundle: version.bundle, version: version.version, manifestOnly },
      'Pushed bundle',
    );
  }

  private encodedPush(version: BundleVersion, manifestOnly: boolean): EncodedSyncResponse {
    const key = manifestOnly ? 'manifest' : 'content';
    const encoded = this.encodedPushes.get(version) ?? {};
    this.encodedPushes.set(version, encoded);
    return (encoded[key] ??= EncodedSyncResponse.encode({
      message: { $case: 'push', value: pushOf(version, manifestOnly) },
    }));
  }
}

function pushOf(version: BundleVersion, manifestOnly: boolean): BundlePush {
  return {
    bundle: version.bundle,
    version: version.version,
    manifestOnly,
    files: version.files.map((file) => ({
      target: file.target,
      mode: file.mode,
      owner: file.owner,
      sha256: file.sha256,
      size: file.size,
      content: manifestOnly ? Buffer.alloc(0) : file.content,
    })),
  };
}
