import { type FSWatcher, watch } from 'chokidar';
import * as path from 'node:path';
import type { DriftReport, FileDigest } from '../common/contract';
import type { Logger } from '../common/log';
import { DEFAULT_SCAN_LIMITS, readFileDigests } from './folder-scan';
import { isTempFileName } from './temp-file-name';

/** One file a bundle put in the folder, with the bytes it must keep. */
export interface ManagedFile {
  /** Canonical relative path, as resolved by the writer. */
  readonly path: string;
  readonly sha256: string;
}

export interface DriftWatcherOptions {
  readonly dir: string;
  readonly logger: Logger;
  readonly debounceMs: number;
  readonly recheckIntervalMs: number;
  /**
   * Called once file events have settled (and on every periodic recheck). The owner then calls
   * findDrift() at a moment of its choosing, so the comparison never races a bundle apply.
   */
  readonly onSettled: () => void;
}

interface BundleManifest {
  readonly version: number;
  readonly files: readonly ManagedFile[];
}

/**
 * Notices when a managed file's bytes change or it disappears. File events only say "look now";
 * the verdict comes from comparing digests with the last applied manifest, which is why the
 * writer's own renames never count as drift.
 */
export class DriftWatcher {
  private readonly dir: string;
  private readonly log: Logger;
  private readonly options: DriftWatcherOptions;
  private readonly manifests = new Map<string, BundleManifest>();
  /** What was last reported per bundle, so a file that stays drifted is reported once. */
  private readonly reportedStates = new Map<string, string>();
  private watcher: FSWatcher | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;

  constructor(options: DriftWatcherOptions) {
    this.options = options;
    this.dir = options.dir;
    this.log = options.logger.child({ component: 'drift-watcher' });
  }

  /** Starts watching the folder; resolves once the initial crawl is done. */
  async start(): Promise<void> {
    const watcher = watch(this.dir, {
      ignoreInitial: true,
      followSymlinks: false,
      depth: DEFAULT_SCAN_LIMITS.maxDepth,
      ignored: (watchedPath) => isTempFileName(path.basename(watchedPath)),
    });
    this.watcher = watcher;
    watcher.on('all', (_event, changedPath) => this.onFileEvent(changedPath));
    watcher.on('error', (error) => this.log.warn({ err: error }, 'File watcher error'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));

    this.recheckTimer = setInterval(() => this.options.onSettled(), this.options.recheckIntervalMs);
    this.recheckTimer.unref();
  }

  /** Records the files a bundle version put in place; drift is measured against them. */
  setManifest(bundle: string, version: number, files: readonly ManagedFile[]): void {
    this.manifests.set(bundle, { version, files: [...files] });
    this.reportedStates.delete(bundle);
  }

  /** Forgets what was reported, for a new stream: the new server session has heard nothing yet. */
  forgetReported(): void {
    this.reportedStates.clear();
  }

  /**
   * Re-reads every managed file and returns one report per bundle whose files differ from its
   * manifest, skipping bundles whose drifted state was already reported.
   */
  async findDrift(): Promise<DriftReport[]> {
    const reports: DriftReport[] = [];
    for (const [bundle, manifest] of this.manifests) {
      let found: FileDigest[];
      try {
        found = await readFileDigests(
          this.dir,
          manifest.files.map((file) => file.path),
        );
      } catch (error) {
        this.log.warn({ bundle, err: error }, 'Managed files not readable');
        continue;
      }
      const drifted = manifest.files.filter((file, index) => found[index]?.sha256 !== file.sha256);
      if (drifted.length === 0) {
        this.reportedStates.delete(bundle);
        continue;
      }
      const state = found.map((file) => `${file.path}\0${file.sha256}`).join('\n');
      if (this.reportedStates.get(bundle) === state) {
        continue;
      }
      this.reportedStates.set(bundle, state);
      const paths = drifted.map((file) => file.path);
      this.log.info({ bundle, version: manifest.version, paths }, 'Drift detected');
      reports.push({ bundle, version: manifest.version, files: found });
    }
    return reports;
  }

  async stop(): Promise<void> {
    clearTimeout(this.debounceTimer);
    clearInterval(this.recheckTimer);
    await this.watcher?.close();
    this.watcher = undefined;
  }

  private onFileEvent(changedPath: string): void {
    const relativePath = path.relative(this.dir, changedPath).split(path.sep).join('/');
    if (!this.touchesManagedFile(relativePath)) {
      return;
    }
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => this.options.onSettled(), this.options.debounceMs);
    this.debounceTimer.unref();
  }

  /** True for a managed file, or a folder holding one (removing a folder removes its files). */
  private touchesManagedFile(relativePath: string): boolean {
    for (const manifest of this.manifests.values()) {
      for (const file of manifest.files) {
        if (relativePath === '' || file.path === relativePath) return true;
        if (file.path.startsWith(`${relativePath}/`)) return true;
      }
    }
    return false;
  }
}
