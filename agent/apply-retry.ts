import type { AgentError, ApplyReport, BundlePush } from '../common/contract';
import type { Logger } from '../common/log';
import { retryDelayMs, type RetryPolicy } from './backoff';

/**
 * Failures a retry cannot fix: they come from the push itself (a bad path, a duplicate target,
 * no mode, content that does not match its manifest) or from the configured mode and owner. Only
 * a new push (a new version, or the server's answer to a new hello) can change them.
 */
const PERMANENT_CODES: ReadonlySet<string> = new Set([
  'PATH_ESCAPE',
  'DUPLICATE_TARGET',
  'INVALID_MODE',
  'NOT_READABLE',
  'MODE_NOT_KEPT',
]);

/** True when the same push may succeed later: a disk error, a folder or link in the way. */
export function isRetryableApplyError(error: AgentError | undefined): boolean {
  return error !== undefined && !PERMANENT_CODES.has(error.code);
}

export interface ApplyRetryOptions {
  readonly policy: RetryPolicy;
  readonly logger: Logger;
  /**
   * Applies the push again through the agent's serial queue and reports the outcome; returns
   * undefined without touching disk when `stillPending()` is false once its turn comes (a newer
   * push got there first).
   */
  readonly retry: (
    push: BundlePush,
    stillPending: () => boolean,
  ) => Promise<ApplyReport | undefined>;
  readonly random?: () => number;
}

/** The one push per bundle waiting to be written again. */
interface PendingApply {
  readonly push: BundlePush;
  readonly attempt: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * Keeps a full push that could not be written (ENOSPC, EROFS, a symlink in the way, the folder
 * gone) and writes it again with a growing, jittered delay until it succeeds, so a node heals
 * once its disk or folder is fixed, without the server or an operator re-sending. Each attempt's
 * outcome goes to the server like any apply. Any new push for the bundle replaces the pending
 * one: the server's latest word wins. The content stays in memory only while it is pending.
 */
export class ApplyRetry {
  private readonly options: ApplyRetryOptions;
  private readonly log: Logger;
  private readonly pending = new Map<string, PendingApply>();
  private stopped = false;

  constructor(options: ApplyRetryOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'apply-retry' });
  }

  /** Call with every push's outcome: keeps a retryable failure, forgets the bundle otherwise. */
  settle(push: BundlePush, report: ApplyReport): void {
    this.forget(push.bundle);
    if (report.ok || push.manifestOnly || !isRetryableApplyError(report.error)) return;
    this.schedule(push, 0, report.error);
  }

  /** Drops the pending retry of `bundle`, e.g. because a newer push arrived. */
  forget(bundle: string): void {
    const entry = this.pending.get(bundle);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.pending.delete(bundle);
  }

  /** Bundles with a write still to retry. */
  get pendingBundles(): string[] {
    return [...this.pending.keys()];
  }

  stop(): void {
    this.stopped = true;
    for (const bundle of [...this.pending.keys()]) this.forget(bundle);
  }

  private schedule(push: BundlePush, attempt: number, error: AgentError | undefined): void {
    if (this.stopped) return;
    const { bundle, version } = push;
    const delayMs = retryDelayMs(attempt, this.options.policy, this.options.random);
    const timer = setTimeout(() => void this.runAttempt(entry), delayMs);
    const entry: PendingApply = { push, attempt, timer };
    this.pending.set(bundle, entry);
    this.log.warn(
      { bundle, version, attempt: attempt + 1, delayMs, code: error?.code, path: error?.path },
      'Apply retry scheduled',
    );
  }

  private async runAttempt(entry: PendingApply): Promise<void> {
    const { bundle, version } = entry.push;
    if (this.pending.get(bundle) !== entry) return;
    const stillPending = () => !this.stopped && this.pending.get(bundle) === entry;
    let report: ApplyReport | undefined;
    try {
      report = await this.options.retry(entry.push, stillPending);
    } catch (error) {
      this.log.error({ bundle, version, err: error }, 'Apply retry crashed');
      return;
    }
    // A newer push may have settled the bundle while this attempt waited in the queue.
    if (report === undefined || !stillPending()) return;
    this.pending.delete(bundle);
    const attempt = entry.attempt + 1;
    if (report.ok) {
      this.log.info({ bundle, version, attempt }, 'Apply retry succeeded');
      return;
    }
    if (!isRetryableApplyError(report.error)) {
      this.log.error(
        { bundle, version, attempt, code: report.error?.code },
        'Apply retry given up',
      );
      return;
    }
    this.schedule(entry.push, attempt, report.error);
  }
}
