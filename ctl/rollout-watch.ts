import { SingleBar } from 'cli-progress';
import type { ReloadRecord, RolloutInfo, WatchRolloutResponse } from '../common/contract';
import { formatProof, formatRollout } from './status-table';

/** Writes a line of output (stdout in certsyncctl, a buffer in tests). */
export type LineWriter = (line: string) => void;

/**
 * Renders a WatchRollout stream as it happens: a progress bar of confirmed nodes on a terminal
 * (a "confirmed N/M" line per confirmation otherwise), then one line per state change, reload and
 * proof step. `last` is the rollout after the latest event, for the outcome and the exit code.
 */
export class RolloutWatchPrinter {
  last: RolloutInfo | undefined;
  private bar: SingleBar | undefined;

  constructor(
    private readonly write: LineWriter,
    private readonly tty: boolean,
  ) {}

  handle(event: WatchRolloutResponse): void {
    const rollout = event.rollout;
    if (!rollout) return;
    this.last = rollout;
    const confirmed = confirmedCount(rollout);
    const expected = rollout.expectedNodes.length;
    switch (event.kind) {
      case 'snapshot':
        this.line(formatRollout(rollout));
        if (rollout.state === 'distributing' || rollout.state === 'stalled')
          this.startBar(confirmed, expected);
        return;
      case 'node-confirmed':
        if (this.bar) {
          this.bar.setTotal(expected);
          this.bar.update(confirmed, { node: event.nodeId });
        } else {
          this.line(
            `node ${event.nodeId} confirmed version ${rollout.version} (${confirmed}/${expected} confirmed)`,
          );
        }
        return;
      case 'transition': {
        const step = event.transition;
        if (!step) return;
        this.line(`${step.from} → ${step.to}${step.detail ? `: ${step.detail}` : ''}`);
        if (step.to === 'stalled' && rollout.missingNodes.length > 0)
          this.line(`  waiting for: ${rollout.missingNodes.join(', ')}`);
        return;
      }
      case 'reload':
        if (event.reload) this.line(`reload: ${describeReload(event.reload)}`);
        return;
      case 'proof':
        if (event.reload?.proof) this.line(formatProof(event.reload.proof));
        return;
      default:
        this.line(`${event.kind}: ${rollout.state}`);
    }
  }

  /** Closes the progress bar (call once the stream ended). */
  finish(): void {
    this.stopBar();
  }

  private startBar(confirmed: number, expected: number): void {
    if (!this.tty) return;
    this.bar = new SingleBar({
      stream: process.stdout,
      format: 'nodes confirmed [{bar}] {value}/{total} {node}',
      hideCursor: true,
      clearOnComplete: false,
    });
    this.bar.start(expected, confirmed, { node: '' });
  }

  private stopBar(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  private line(text: string): void {
    this.stopBar();
    this.write(text);
  }
}

function confirmedCount(rollout: RolloutInfo): number {
  return rollout.confirmedNodes.filter((node) => rollout.expectedNodes.includes(node)).length;
}

function describeReload(reload: ReloadRecord): string {
  const what =
    reload.action === 'signal'
      ? `${reload.signal} to ${reload.service}`
      : `force-update of ${reload.service}`;
  if (!reload.ok) return `${what}: FAILED — ${reload.error}`;
  const detail =
    reload.action === 'signal'
      ? `${reload.signals.reduce((sum, node) => sum + node.containers.length, 0)} container(s) on ${reload.signals.length} node(s)`
      : `${reload.tasksBefore.length} task(s) replaced by ${reload.tasksAfter.length}`;
  return `${what}: ok — ${detail}`;
}
