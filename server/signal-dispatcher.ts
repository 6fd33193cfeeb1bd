import { randomUUID } from 'node:crypto';
import type { SignalReport, SyncResponse } from '../common/contract';
import type { Logger } from '../common/log';
import type { AgentSession } from './fanout-hub';

/** What a `signal` reload target asks of every node, and how long each node gets to answer. */
export interface SignalTarget {
  readonly service: string;
  readonly signal: string;
  /** The bundle version being reloaded, for the agents' logs and ours. */
  readonly bundle: string;
  readonly version: number;
  readonly timeoutMs: number;
}

/** How one node's part of a signal reload ended. */
export interface NodeSignalOutcome {
  readonly nodeId: string;
  readonly ok: boolean;
  /** Names of the containers the node signalled; on failure, the ones it reached first. */
  readonly containers: string[];
  /** Set when ok is false: why, in words an operator can act on. */
  readonly error?: string;
}

/** The one thing the dispatcher needs from the fan-out hub. */
export interface SignalSender {
  /** Sends on the node's live session and returns it; undefined when the node has none. */
  sendToNode(nodeId: string, message: SyncResponse): AgentSession | undefined;
}

interface PendingSignal {
  readonly nodeId: string;
  readonly session: AgentSession;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (outcome: NodeSignalOutcome) => void;
}

/**
 * Asks agents to signal a service's containers on their own nodes and waits for their reports,
 * matched by request ID. Every node ends in an outcome (reported, not connected, timed out or
 * disconnected while waiting), so a reload never hangs on a node.
 */
export class SignalDispatcher {
  private readonly pending = new Map<string, PendingSignal>();

  constructor(
    private readonly sender: SignalSender,
    private readonly log: Logger,
    private readonly newRequestId: () => string = randomUUID,
  ) {}

  /** Signals `target.service` on each node at once; resolves when every node has an outcome. */
  signalNodes(nodeIds: readonly string[], target: SignalTarget): Promise<NodeSignalOutcome[]> {
    const unique = [...new Set(nodeIds)];
    return Promise.all(unique.map((nodeId) => this.signalNode(nodeId, target)));
  }

  /** Called by the agent service for each SignalReport; one nobody waits for is logged. */
  handleReport(session: AgentSession, report: SignalReport): void {
    const pending = this.pending.get(report.requestId);
    if (pending === undefined || pending.session !== session) {
      const fields = { node: session.nodeId, requestId: report.requestId };
      this.log.warn(fields, 'Signal report nobody waits for ignored');
      return;
    }
    const containers = report.containers.map((container) => container.containerName);
    if (report.ok) {
      this.settle(report.requestId, { nodeId: pending.nodeId, ok: true, containers });
      return;
    }
    const error = report.error
      ? `${report.error.code}: ${report.error.message}`
      : 'the node reported a failure without a reason';
    this.settle(report.requestId, { nodeId: pending.nodeId, ok: false, containers, error });
  }

  /** Called when a session ends: a report can no longer come back on it. */
  sessionClosed(session: AgentSession): void {
    for (const [requestId, pending] of this.pending) {
      if (pending.session !== session) continue;
      const error = 'the node disconnected before it reported the signal';
      this.settle(requestId, { nodeId: pending.nodeId, ok: false, containers: [], error });
    }
  }

  private signalNode(nodeId: string, target: SignalTarget): Promise<NodeSignalOutcome> {
    const { service, signal, bundle, version, timeoutMs } = target;
    const requestId = this.newRequestId();
    const message: SyncResponse = {
      message: { $case: 'signal', value: { requestId, service, signal, bundle, version } },
    };
    const session = this.sender.sendToNode(nodeId, message);
    if (session === undefined) {
      const error = `the node is not connected, so its agent could not signal ${service}`;
      return Promise.resolve(this.logged({ nodeId, ok: false, containers: [], error }, target));
    }

    return new Promise<NodeSignalOutcome>((resolve) => {
      const timer = setTimeout(() => {
        const error = `no signal report from the node within ${timeoutMs} ms`;
        this.settle(requestId, { nodeId, ok: false, containers: [], error });
      }, timeoutMs);
      const finish = (outcome: NodeSignalOutcome) => resolve(this.logged(outcome, target));
      this.pending.set(requestId, { nodeId, session, timer, resolve: finish });
    });
  }

  private settle(requestId: string, outcome: NodeSignalOutcome): void {
    const pending = this.pending.get(requestId);
    if (pending === undefined) return;
    this.pending.delete(requestId);
    clearTimeout(pending.timer);
    pending.resolve(outcome);
  }

  private logged(outcome: NodeSignalOutcome, target: SignalTarget): NodeSignalOutcome {
    const { service, signal, bundle, version } = target;
    const fields = { node: outcome.nodeId, service, signal, bundle, version };
    if (outcome.ok) {
      this.log.info({ ...fields, containers: outcome.containers }, 'Node signalled service');
    } else {
      this.log.warn({ ...fields, error: outcome.error }, 'Node did not signal service');
    }
    return outcome;
  }
}
