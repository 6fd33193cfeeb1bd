import type { Logger } from '../common/log';
import { assessExpiry, type ExpiryVerdict } from './expiry-decision';
import type { VersionStore } from './version-store';

export interface ExpiryWatchOptions {
  bundleNames: readonly string[];
  store: Pick<VersionStore, 'current' | 'lastRejected'>;
  /** expiryWarningDays from the config. */
  windowDays: number;
  log: Logger;
  /** How often every bundle is re-assessed without an event (time alone moves a leaf into the window). */
  intervalMs?: number;
  now?: () => Date;
}

const DEFAULT_INTERVAL_MS = 60_000;

/**
 * Watches each bundle's current leaf for an expiry that no renewal has answered. Re-assessed on a
 * timer and after every accepted version; logs one line per change of verdict (warn when a warning
 * starts, info when a renewal clears it), not one per tick.
 */
export class ExpiryWatch {
  private readonly verdicts = new Map<string, ExpiryVerdict>();
  private readonly now: () => Date;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ExpiryWatchOptions) {
    this.now = options.now ?? (() => new Date());
  }

  start(): void {
    this.evaluate();
    this.timer = setInterval(() => this.evaluate(), this.options.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** The warning text for `bundle`, or '' when none. */
  warning(bundle: string): string {
    const verdict = this.verdicts.get(bundle);
    return verdict && verdict.kind !== 'ok' ? verdict.message : '';
  }

  /** Re-assesses every bundle now. */
  evaluate(): void {
    const now = this.now();
    const windowMs = this.options.windowDays * 86_400_000;
    for (const bundle of this.options.bundleNames) {
      const current = this.options.store.current(bundle);
      if (!current) continue;
      const rejected = this.options.store.lastRejected(bundle);
      const verdict = assessExpiry({
        now,
        notAfter: current.validated.leaf.notAfter,
        acceptedAt: current.acceptedAt,
        windowMs,
        lastRejected: rejected ? { at: rejected.at, reason: rejected.reason } : undefined,
      });
      const previous = this.verdicts.get(bundle);
      this.verdicts.set(bundle, verdict);
      if (previous?.kind === verdict.kind) continue;
      const fields = {
        bundle,
        version: current.version,
        notAfter: current.validated.leaf.notAfter.toISOString(),
        secondsLeft: verdict.secondsLeft,
        windowDays: this.options.windowDays,
      };
      if (verdict.kind !== 'ok')
        this.options.log.warn(
          { ...fields, state: verdict.kind, detail: verdict.message },
          'Certificate expiry warning',
        );
      else if (previous)
        this.options.log.info(
          { ...fields, state: verdict.kind },
          'Certificate expiry warning cleared',
        );
    }
  }
}
