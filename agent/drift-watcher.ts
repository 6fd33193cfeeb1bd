import { type FSWatcher, watch } from 'chokidar';
import { lstat, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { DriftReport, FileDigest, FileOwner } from '../common/contract';
import type { Logger } from '../common/log';
import { DEFAULT_SCAN_LIMITS, readFileDigests } from './folder-scan';
import { isTempFileName } from './temp-file-name';

/** One file a bundle put in the folder, with the bytes it must keep. */
export interface ManagedFile {
  /** Canonical relative path, as resolved by the writer. */
  readonly path: string;
  readonly sha256: string;
  /** Permission bits the file must keep, masked to 0o7777. */
  readonly mode: number;
  /** Numeric owner the file must keep; undefined when the config sets none. */
  readonly owner: FileOwner | undefined;
}

/** One bundle whose files are not what its manifest says, as found on disk. */
export interface DriftFinding {
  readonly report: DriftReport;
  /**
   * True when every file holds the right bytes and only a mode or owner changed: the agent can
   * put that back itself, from the manifest, without the server.
   */
  readonly attributesOnly: boolean;
}

/** How often the watched folder itself is checked for having been deleted or replaced. */
const FOLDER_CHECK_INTERVAL_MS = 2_000;

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
 * Notices when a managed file's bytes, mode or owner change or it disappears. File events
 * (including chmod/chown, which inotify reports as attribute events) only say "look now"; the
 * verdict comes from comparing what is on disk with the last applied manifest, which is why the
 * writer's own renames never count as drift. A watched folder that is deleted and re-created
 * (`rm -rf dir; mkdir dir`) is watched again: the folder's identity is checked every
 * FOLDER_CHECK_INTERVAL_MS.
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
  private folderCheckTimer: NodeJS.Timeout | undefined;
  /** Identity of the folder the current watcher was set up on; undefined while it is missing. */
  private watchedFolderId: string | undefined;
  private rewatching = false;
  private stopped = false;

  constructor(options: DriftWatcherOptions) {
    this.options = options;
    this.dir = options.dir;
    this.log = options.logger.child({ component: 'drift-watcher' });
  }

  /** Starts watching the folder; resolves once the initial crawl is done. */
  async start(): Promise<void> {
    await this.watchFolder();
    this.recheckTimer = setInterval(() => this.options.onSettled(), this.options.recheckIntervalMs);
    this.recheckTimer.unref();
    this.folderCheckTimer = setInterval(() => void this.checkFolder(), FOLDER_CHECK_INTERVAL_MS);
    this.folderCheckTimer.unref();
  }

  private async watchFolder(): Promise<void> {
    this.watchedFolderId = await folderIdentity(this.dir);
    const watcher = watch(this.dir, {
      ignoreInitial: true,
      followSymlinks: false,
      depth: DEFAULT_SCAN_LIMITS.maxDepth,
      ignored: (watchedPath) => isTempFileName(path.basename(watchedPath)),
    });
    this.watcher = watcher;
    watcher.on('all', (event, changedPath) => {
      // The folder itself went away: whatever is at its path next must be watched afresh.
      if (event === 'unlinkDir' && path.resolve(changedPath) === path.resolve(this.dir)) {
        this.watchedFolderId = 'removed';
      }
      this.onFileEvent(changedPath);
    });
    // chokidar reports a changed file only when its mtime moved; chmod and chown do not move it,
    // so the raw inotify events (attribute changes among them) are looked at too.
    watcher.on('raw', (_event, eventPath, details) =>
      this.onRawEvent((details as { watchedPath?: string } | undefined)?.watchedPath, eventPath),
    );
    watcher.on('error', (error) => this.log.warn({ err: error }, 'File watcher error'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  }

  /** Sets the watcher up again when the folder was deleted, or replaced by a new one. */
  private async checkFolder(): Promise<void> {
    if (this.rewatching || this.stopped) return;
    const current = await folderIdentity(this.dir);
    if (current === this.watchedFolderId) return;
    this.rewatching = true;
    try {
      this.log.warn(
        { dir: this.dir, found: current !== undefined },
        'Watched folder replaced; watching again',
      );
      await this.watcher?.close();
      this.watcher = undefined;
      if (this.stopped) return;
      if (current === undefined) {
        this.watchedFolderId = undefined;
      } else {
        await this.watchFolder();
      }
      this.options.onSettled();
    } catch (error) {
      this.log.warn({ err: error }, 'File watcher not restarted');
    } finally {
      this.rewatching = false;
    }
  }

  /** Records the files (bytes, mode, owner) a bundle version put in place; drift is measured against them. */
  setManifest(bundle: string, version: number, files: readonly ManagedFile[]): void {
    this.manifests.set(bundle, { version, files: [...files] });
    this.reportedStates.delete(bundle);
  }

  /** Forgets what was reported, for a new stream: the new server session has heard nothing yet. */
  forgetReported(): void {
    this.reportedStates.clear();
  }

  /**
   * Re-reads every managed file and returns one finding per bundle whose files differ from its
   * manifest (bytes, mode or owner), skipping bundles whose drifted state was already reported.
   */
  async findDrift(): Promise<DriftFinding[]> {
    const findings: DriftFinding[] = [];
    for (const [bundle, manifest] of this.manifests) {
      let found: FileDigest[];
      let owners: Array<string | undefined>;
      try {
        found = await readFileDigests(
          this.dir,
          manifest.files.map((file) => file.path),
        );
        owners = await Promise.all(manifest.files.map((file) => this.ownerOf(file)));
      } catch (error) {
        this.log.warn({ bundle, err: error }, 'Managed files not readable');
        continue;
      }
      const bytesDrifted = manifest.files.filter(
        (file, index) => found[index]?.sha256 !== file.sha256,
      );
      const attributesDrifted = manifest.files.filter(
        (file, index) =>
          found[index]?.sha256 === file.sha256 &&
          (found[index]?.mode !== file.mode || owners[index] !== ownerKey(file.owner)),
      );
      if (bytesDrifted.length === 0 && attributesDrifted.length === 0) {
        this.reportedStates.delete(bundle);
        continue;
      }
      const state = found
        .map((file, index) => `${file.path}\0${file.sha256}\0${file.mode}\0${owners[index] ?? ''}`)
        .join('\n');
      if (this.reportedStates.get(bundle) === state) {
        continue;
      }
      this.reportedStates.set(bundle, state);
      const paths = [...bytesDrifted, ...attributesDrifted].map((file) => file.path);
      const attributesOnly = bytesDrifted.length === 0;
      this.log.info({ bundle, version: manifest.version, paths, attributesOnly }, 'Drift detected');
      findings.push({
        report: { bundle, version: manifest.version, files: found },
        attributesOnly,
      });
    }
    return findings;
  }

  /** "uid:gid" of a managed file that has a configured owner; undefined otherwise. */
  private async ownerOf(file: ManagedFile): Promise<string | undefined> {
    if (file.owner === undefined) return undefined;
    const stats = await lstat(path.join(this.dir, file.path)).catch(() => undefined);
    return stats?.isFile() ? `${stats.uid}:${stats.gid}` : 'missing';
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounceTimer);
    clearInterval(this.recheckTimer);
    clearInterval(this.folderCheckTimer);
    await this.watcher?.close();
    this.watcher = undefined;
  }

  private onFileEvent(changedPath: string): void {
    if (!this.touchesManagedFile(this.relativeOf(changedPath))) {
      return;
    }
    this.scheduleSettled();
  }

  /**
   * A raw event names the watched path and, for a folder, the entry inside it that changed (a
   * folder's watch also reports its files' attribute changes). Events on the writer's temp files
   * and on unmanaged entries are ignored.
   */
  private onRawEvent(watchedPath: string | undefined, eventPath: string | undefined): void {
    if (watchedPath === undefined) return;
    const changedPath = eventPath ? path.join(watchedPath, eventPath) : watchedPath;
    const relativePath = this.relativeOf(changedPath);
    if (relativePath !== '' && this.touchesManagedFile(relativePath)) this.scheduleSettled();
  }

  private relativeOf(changedPath: string): string {
    return path.relative(this.dir, changedPath).split(path.sep).join('/');
  }

  private scheduleSettled(): void {
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

function ownerKey(owner: FileOwner | undefined): string | undefined {
  return owner === undefined ? undefined : `${owner.uid}:${owner.gid}`;
}

/**
 * dev:ino:birth time of a folder, so a deleted and re-created folder is told apart even when the
 * file system hands the new one the old inode number (tmpfs and ext4 do); undefined if missing.
 */
async function folderIdentity(dir: string): Promise<string | undefined> {
  const stats = await stat(dir).catch(() => undefined);
  return stats?.isDirectory() ? `${stats.dev}:${stats.ino}:${stats.birthtimeMs}` : undefined;
}
