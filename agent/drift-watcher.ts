import { type FSWatcher, statSync, watch } from 'node:fs';
import * as path from 'node:path';
import type { DriftReport, FileDigest, FileOwner } from '../common/contract';
import type { Logger } from '../common/log';
import { errnoCode } from './apply-error';
import { readFileDigests } from './folder-scan';
import { lstat } from './local-fs';
import { isTempFileName } from './temp-file-name';

/** One file a bundle put in the folder, with the bytes it must keep. */
export interface ManagedFile {
  /** Canonical relative path, as resolved by the writer. */
  readonly path: string;
  readonly sha256: string;
  /** Byte size of those bytes; bounds how much of a grown file is read (see readFileDigests). */
  readonly size: number;
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

/** While the agent's folder is missing, how often it is looked for again. */
const MISSING_FOLDER_CHECK_INTERVAL_MS = 2_000;

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

/** One watched folder and the identity it had when the watch was set up. */
interface FolderWatch {
  readonly watcher: FSWatcher;
  readonly identity: string;
}

/**
 * Notices when a managed file's bytes, mode or owner change or it disappears. It watches (inotify,
 * through `fs.watch`) only the agent's folder and the folders on the way to each managed file, and
 * an event only says "look now": the verdict comes from comparing what is on disk with the last
 * applied manifest, which is why the writer's own renames never count as drift. Attribute changes
 * (chmod, chown) arrive as `change` events on the folder's watch.
 *
 * A watched folder that is deleted, or replaced (`rm -rf dir; mkdir dir`), is watched again: every
 * settle re-checks each folder's identity, and while the agent's folder is missing it is looked
 * for every MISSING_FOLDER_CHECK_INTERVAL_MS. Nothing else runs while the folder is quiet.
 *
 * Why not chokidar (which the server uses for certbot's symlink trees): on every event it re-reads
 * the folder and lstat()s each entry to keep its own view of it. The agent needs no such view,
 * and that re-reading cost ~5 ms of CPU per applied bundle, more than the apply itself
 * (BENCHMARKS.md, "Where the time goes").
 */
export class DriftWatcher {
  private readonly dir: string;
  private readonly log: Logger;
  private readonly options: DriftWatcherOptions;
  private readonly manifests = new Map<string, BundleManifest>();
  /** What was last reported per bundle, so a file that stays drifted is reported once. */
  private readonly reportedStates = new Map<string, string>();
  /** Absolute folder path → its watch. */
  private readonly watches = new Map<string, FolderWatch>();
  /** Folders refused a watch by the kernel's inotify limits; each is logged once until it works. */
  private readonly overLimit = new Set<string>();
  private debounceTimer: NodeJS.Timeout | undefined;
  private recheckTimer: NodeJS.Timeout | undefined;
  private missingFolderTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: DriftWatcherOptions) {
    this.options = options;
    this.dir = path.resolve(options.dir);
    this.log = options.logger.child({ component: 'drift-watcher' });
  }

  /** Starts watching the folder. */
  async start(): Promise<void> {
    this.syncWatches();
    this.recheckTimer = setInterval(() => {
      // Also retries watches the inotify limit refused, and notices a file system mounted over a
      // folder (which sends the covered folder's watch no event).
      this.syncWatches();
      this.options.onSettled();
    }, this.options.recheckIntervalMs);
    this.recheckTimer.unref();
  }

  /**
   * Watches every folder that should be watched and exists, drops watches of folders no longer
   * wanted, and re-watches any whose identity changed (deleted and re-created). Returns true when
   * the agent's folder itself was found replaced.
   */
  private syncWatches(): boolean {
    if (this.stopped) return false;
    const wanted = this.wantedFolders();
    let rootReplaced = false;
    for (const [folder, watch] of this.watches) {
      const identity = wanted.has(folder) ? folderIdentity(folder) : undefined;
      if (identity === watch.identity) continue;
      watch.watcher.close();
      this.watches.delete(folder);
      if (folder === this.dir) rootReplaced = true;
    }
    for (const folder of wanted) {
      if (this.watches.has(folder)) continue;
      const identity = folderIdentity(folder);
      if (identity === undefined) continue;
      try {
        const watcher = watch(folder, { persistent: false }, (_event, name) =>
          this.onFileEvent(folder, name === null ? undefined : String(name)),
        );
        watcher.on('error', (error) => {
          this.log.warn({ dir: folder, err: error }, 'File watcher error');
          this.scheduleSettled();
        });
        this.watches.set(folder, { watcher, identity });
        if (this.overLimit.delete(folder)) this.log.info({ dir: folder }, 'Folder watched');
      } catch (error) {
        this.reportWatchFailure(folder, error);
      }
    }
    this.watchForMissingFolder();
    return rootReplaced;
  }

  /** The agent's folder and every folder between it and a managed file. */
  private wantedFolders(): Set<string> {
    const wanted = new Set([this.dir]);
    for (const manifest of this.manifests.values()) {
      for (const file of manifest.files) {
        const segments = file.path.split('/').slice(0, -1);
        for (let depth = 1; depth <= segments.length; depth += 1) {
          wanted.add(path.join(this.dir, ...segments.slice(0, depth)));
        }
      }
    }
    return wanted;
  }

  /**
   * A watch refused for the inotify limits (ENOSPC: max_user_watches, EMFILE: max_user_instances)
   * is logged once per folder with what to raise; the next settle or recheck tries again. Any
   * other failure (the folder gone between the identity check and the watch) is retried likewise.
   */
  private reportWatchFailure(folder: string, error: unknown): void {
    const code = errnoCode(error);
    const limit =
      code === 'ENOSPC'
        ? 'fs.inotify.max_user_watches'
        : code === 'EMFILE'
          ? 'fs.inotify.max_user_instances'
          : undefined;
    if (limit === undefined) {
      this.log.warn({ dir: folder, err: error }, 'Folder not watched');
      return;
    }
    if (this.overLimit.has(folder)) return;
    this.overLimit.add(folder);
    const { recheckIntervalMs } = this.options;
    this.log.warn(
      { dir: folder, err: error, sysctl: limit, recheckIntervalMs },
      'Folder not watched: inotify limit reached; raise the sysctl named, until then drift in it is found only by the periodic recheck',
    );
  }

  /** Polls for the agent's folder only while it is not there (nothing would tell us otherwise). */
  private watchForMissingFolder(): void {
    // A folder that exists but could not be watched (inotify limit) is left to the recheck.
    const missing = !this.watches.has(this.dir) && folderIdentity(this.dir) === undefined;
    if (missing && this.missingFolderTimer === undefined && !this.stopped) {
      this.missingFolderTimer = setInterval(() => {
        if (folderIdentity(this.dir) === undefined) return;
        this.log.warn({ dir: this.dir }, 'Watched folder is back; watching again');
        // Its files were reported missing while it was gone and the server's repair failed
        // (ENOENT); that push now waits in the retry backoff, up to 30 s. Reporting again has the
        // server send the content at once.
        this.reportedStates.clear();
        this.syncWatches();
        this.options.onSettled();
      }, MISSING_FOLDER_CHECK_INTERVAL_MS);
      this.missingFolderTimer.unref();
    } else if (!missing && this.missingFolderTimer !== undefined) {
      clearInterval(this.missingFolderTimer);
      this.missingFolderTimer = undefined;
    }
  }

  /** Records the files (bytes, mode, owner) a bundle version put in place; drift is measured against them. */
  setManifest(bundle: string, version: number, files: readonly ManagedFile[]): void {
    this.manifests.set(bundle, { version, files: [...files] });
    this.reportedStates.delete(bundle);
    this.syncWatches();
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
          manifest.files.map((file) => file.size),
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
    clearInterval(this.missingFolderTimer);
    for (const { watcher } of this.watches.values()) watcher.close();
    this.watches.clear();
  }

  /**
   * An event names the watched folder and, usually, the entry in it that changed (Linux reports a
   * file's chmod/chown on its folder's watch too). Events on the writer's temp files and on
   * unmanaged entries are ignored; an event without a name, or on the folder itself (reported
   * under the folder's own name), is not.
   */
  private onFileEvent(folder: string, name: string | undefined): void {
    if (name !== undefined && isTempFileName(name)) return;
    // The folder itself deleted or moved away: Linux names the folder's own basename.
    if (name === path.basename(folder)) return this.scheduleSettled();
    const changedPath = name === undefined ? folder : path.join(folder, name);
    if (!this.touchesManagedFile(this.relativeOf(changedPath))) return;
    this.scheduleSettled();
  }

  private relativeOf(changedPath: string): string {
    return path.relative(this.dir, changedPath).split(path.sep).join('/');
  }

  /** Re-checks the watched folders, then tells the owner, once events have been quiet a while. */
  private scheduleSettled(): void {
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      if (this.stopped) return;
      if (this.syncWatches()) {
        if (this.watches.has(this.dir)) {
          this.log.warn({ dir: this.dir }, 'Watched folder replaced; watching again');
        } else {
          const checkIntervalMs = MISSING_FOLDER_CHECK_INTERVAL_MS;
          this.log.warn({ dir: this.dir, checkIntervalMs }, 'Watched folder gone; looking for it');
        }
      }
      this.options.onSettled();
    }, this.options.debounceMs);
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
function folderIdentity(dir: string): string | undefined {
  try {
    const stats = statSync(dir);
    return stats.isDirectory() ? `${stats.dev}:${stats.ino}:${stats.birthtimeMs}` : undefined;
  } catch {
    return undefined;
  }
}
