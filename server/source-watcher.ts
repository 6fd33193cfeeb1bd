import chokidar, { type FSWatcher } from 'chokidar';
import type { Logger } from '../common/log';

export interface SourceWatcherOptions {
  /** The bundle's source folder (certbot's live/NAME). */
  dir: string;
  /** Quiet time after the last event before the folder is read. */
  settleMs: number;
  /** A full re-read this often, for events lost on bind mounts and network file systems. */
  rescanIntervalMs: number;
  usePolling: boolean;
  /** Called once the folder has been quiet for settleMs, or at each rescan. */
  onSettled: (trigger: 'event' | 'rescan') => void;
  log: Logger;
  /** Monotonic milliseconds; default performance.now. */
  clockMs?: () => number;
}

/**
 * Watches a source folder for certbot's link swaps. It watches the folder entries themselves
 * (not through the links), because certbot renews by unlinking and re-creating each link; the
 * folders the links point into are added with `watchAlso` so in-place edits there are seen too.
 * It reports only "something changed, read again": deciding what changed is the intake's job.
 */
export class SourceWatcher {
  private readonly watcher: FSWatcher;
  private readonly watchedExtra = new Set<string>();
  private settleTimer: NodeJS.Timeout | undefined;
  private readonly rescanTimer: NodeJS.Timeout;
  private readonly clockMs: () => number;
  /**
   * When the last file event arrived (clockMs). Starts at construction: a server started in the
   * middle of a renewal has not seen the folder quiet yet.
   */
  private lastEventAt: number;

  constructor(private readonly options: SourceWatcherOptions) {
    this.clockMs = options.clockMs ?? (() => performance.now());
    this.lastEventAt = this.clockMs();
    this.watcher = chokidar.watch(options.dir, {
      ignoreInitial: true,
      followSymlinks: false,
      depth: 0,
      usePolling: options.usePolling,
      interval: 1000,
      atomic: false,
    });
    this.watcher.on('all', (event, changedPath) => {
      options.log.debug({ event, path: changedPath }, 'Source folder event');
      this.lastEventAt = this.clockMs();
      this.scheduleSettle();
    });
    this.watcher.on('error', (error) =>
      options.log.warn({ err: error, dir: options.dir }, 'Source watcher error'),
    );
    this.rescanTimer = setInterval(() => options.onSettled('rescan'), options.rescanIntervalMs);
    this.rescanTimer.unref();
  }

  /** Adds folders the links resolve into (certbot's archive/NAME); idempotent. */
  watchAlso(dirs: readonly string[]): void {
    const added = dirs.filter((dir) => !this.watchedExtra.has(dir));
    for (const dir of added) this.watchedExtra.add(dir);
    if (added.length > 0) this.watcher.add(added);
  }

  /** How long the folder has been without events, in milliseconds. */
  quietForMs(): number {
    return this.clockMs() - this.lastEventAt;
  }

  /** Restarts the quiet period; reading happens only when events stop arriving. */
  scheduleSettle(): void {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      this.options.onSettled('event');
    }, this.options.settleMs);
  }

  async close(): Promise<void> {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    clearInterval(this.rescanTimer);
    await this.watcher.close();
  }
}
