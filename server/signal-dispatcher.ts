import { randomUUID } from 'node:crypto';
import type { SignalReport, SyncResponse } from '../common/contract';
import type { Logger } from '../common/log';
import type { NodeSignalOutcome, SignalSender } from './reloader';

/** Sends a message to one node's live session; false when the node is not connected. */
export type SendToNode = (nodeId: string, message: SyncResponse) => boolean;

interface Pending {
  nodeId: string;
  resolve: (outcome: NodeSignalOutcome) => void;
}

/**
 * Sends SignalRequests to agents and matches their SignalReports by request ID. Every node gets an
 * outcome — its report, "not connected", "disconnected while waiting" or a timeout — so a reload
 * never hangs on one silent node.
 */
export class SignalDispatcher implements SignalSender {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly sendToNode: SendToNode,
    private readonly log: Logger,
  ) {}

  async signalNodes(
    nodeIds: readonly string[],
    request: { service: string; signal: string; bundle: string; version: number; timeoutMs: number },
  ): Promise<NodeSignalOutcome[]> {
    return Promise.all(nodeIds.map((nodeId) => this.signalNode(nodeId, request)));
  }

  /** Called by the agent service for every SignalReport a node sends. */
  handleReport(nodeId: string, report: SignalReport): void {
    const pending = this.pending.get(report.requestId);
    if (!pending || pending.nodeId !== nodeId) {
      this.log.warn({ node: nodeId, requestId: report.requestId }, 'Signal report for no pending request ignored');
      return;
    }
    pending.resolve({
      nodeId,
      ok: report.ok,
      containers: report.containers.map((container) => container.containerName),
      error: report.error ? `${report.error.code}: ${report.error.message}` : undefined,
    });
  }

  /** Called when a node's session ends: its pending requests fail now instead of timing out. */
  handleDisconnect(nodeId: string): void {
    for (const pending of [...this.pending.values()].filter((entry) => entry.nodeId === nodeId)) {
      pending.resolve({ nodeId, ok: false, containers: [], error: 'agent disconnected before answering' });
    }
  }

  private signalNode(
    nodeId: string,
    request: { service: string; signal: string; bundle: string; version: number; timeoutMs: number },
  ): Promise<NodeSignalOutcome> {
    const requestId = randomUUID();
    return new Promise((resolve) => {
      const finish = (outcome: NodeSignalOutcome) => {
        clearTimeout(timer);
        this.pending.delete(requestId);
        resolve(outcome);
      };
      const timer = setTimeout(
        () => finish({ nodeId, ok: false, containers: [], error: `no answer within ${request.timeoutMs} ms` }),
        request.timeoutMs,
      );
      this.pending.set(requestId, { nodeId, resolve: finish });
      const { service, signal, bundle, version } = request;
      const sent = this.sendToNode(nodeId, { message: { $case: 'signal', value: { requestId, service, signal, bundle, version } } });
      if (!sent) finish({ nodeId, ok: false, containers: [], error: 'agent not connected' });
    });
  }
}
