import { constants, type Stats } from 'node:fs';
import * as path from 'node:path';
import { sha256Hex } from '../common/digest';
import type { BundlePush, FileDigest } from '../common/contract';
import type { Logger } from '../common/log';
import { ApplyError, applyErrorFromFileSystem, errnoCode } from './apply-error';
import { type CheckedFile, checkBundleFiles } from './bundle-check';
import {
  assertModeKept,
  assertReadableByOwner,
  attributesOf,
  chownHandle,
  hasAttributes,
  setAttributesNoFollow,
} from './file-owner';
import { listTempFiles, readFileDigests } from './folder-scan';
import { type LocalFile, link, lstat, mkdir, open, rename, rmdir, unlink } from './local-fs';
import { findSymlinkedFolder, type TargetPath } from './target-path';
import { tempFileNameFor } from './temp-file-name';

/** What applying a bundle did, with every target as read back from disk afterwards. */
export interface ApplyOutcome {
  readonly files: FileDigest[];
  readonly filesWritten: number;
  /** Files whose bytes were right but whose mode or owner was not. */
  readonly attributesFixed: number;
}

export interface BundleWriterOptions {
  /** The agent's folder; nothing outside it is ever written. */
  readonly dir: string;
  readonly logger: Logger;
}

/** What a file needs; `existing` is the regular file in place, if any. */
interface PlannedFile extends CheckedFile {
  /** `fix`: the bytes are right, the mode or owner is not. */
  readonly action: 'write' | 'fix' | 'keep';
  readonly existing: Stats | undefined;
}

/** Paths created in phase 1, so a failure can take every one of them back. */
interface Staging {
  readonly tempPaths: Map<PlannedFile, string>;
  readonly backupPaths: Map<PlannedFile, string>;
  readonly createdFolders: string[];
  readonly folderToSync: Set<string>;
}

/** Folders made for nested targets; file modes, not the folder, guard the keys. */
const CREATED_FOLDER_MODE = 0o755;
const CREATE_TEMP_FLAGS =
  constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;
const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

/**
 * The only code that writes into the agent's folder. A bundle is applied in two phases so a key
 * and its certificate change as close together as possible: phase 1 writes, syncs and verifies a
 * temp file next to every target that changes; phase 2 renames them all over their targets. A
 * failure in phase 1 leaves every old file untouched; a failure in phase 2 renames the old files
 * back from hard-link backups taken in phase 1.
 */
export class BundleWriter {
  private readonly dir: string;
  private readonly log: Logger;

  constructor(options: BundleWriterOptions) {
    this.dir = options.dir;
    this.log = options.logger.child({ component: 'writer' });
  }

  /** Removes temp files a crashed agent left behind; call once before the first apply. */
  async removeStaleTempFiles(): Promise<number> {
    const stale = await listTempFiles(this.dir);
    for (const relativePath of stale) {
      await unlink(path.join(this.dir, relativePath)).catch((error: unknown) => {
        if (errnoCode(error) !== 'ENOENT') throw error;
      });
    }
    if (stale.length > 0) {
      this.log.info({ count: stale.length }, 'Stale temp files removed');
    }
    return stale.length;
  }

  /** Applies a full push (content included); throws ApplyError and leaves old files on failure. */
  async applyBundle(push: BundlePush): Promise<ApplyOutcome> {
    const checked = checkBundleFiles(this.dir, push.files);
    const staging: Staging = {
      tempPaths: new Map(),
      backupPaths: new Map(),
      createdFolders: [],
      folderToSync: new Set(),
    };

    const plans: PlannedFile[] = [];
    try {
      for (const file of checked) {
        plans.push(await this.planFile(file));
      }
      for (const plan of plans.filter((p) => p.action === 'write')) {
        await this.stageFile(plan, staging);
      }
      await this.commit(plans, staging);
    } catch (error) {
      await this.discard(staging);
      throw error instanceof ApplyError ? error : applyErrorFromFileSystem(error, 'apply', '');
    }

    const files = await readFileDigests(
      this.dir,
      checked.map((file) => file.target.relativePath),
    );
    return {
      files,
      filesWritten: plans.filter((p) => p.action === 'write').length,
      attributesFixed: plans.filter((p) => p.action === 'fix').length,
    };
  }

  /**
   * For a manifest-only push whose bytes are already on disk: puts back the mode and owner of
   * any file that lost them (in place, nothing rewritten). Throws DIGEST_MISMATCH naming the files
   * whose bytes differ (the server must send content), or any ApplyError of the fix itself.
   */
  async fixAttributesInPlace(push: BundlePush): Promise<ApplyOutcome> {
    const checked = checkBundleFiles(this.dir, push.files, { withContent: false });
    const plans: PlannedFile[] = [];
    for (const file of checked) {
      plans.push(await this.planFile(file));
    }
    const differing = plans.filter((p) => p.action === 'write').map((p) => p.target.relativePath);
    if (differing.length > 0) {
      const message = `files differ from the pushed manifest: ${differing.join(', ')}; send content`;
      throw new ApplyError('DIGEST_MISMATCH', message, differing[0] ?? '');
    }
    const staging: Staging = {
      tempPaths: new Map(),
      backupPaths: new Map(),
      createdFolders: [],
      folderToSync: new Set(),
    };
    await this.commit(plans, staging);

    const files = await readFileDigests(
      this.dir,
      checked.map((file) => file.target.relativePath),
    );
    const attributesFixed = plans.filter((p) => p.action === 'fix').length;
    return { files, filesWritten: 0, attributesFixed };
  }

  /** Decides per file, reading what is in place: rewrite it, only fix its mode, or keep it. */
  private async planFile(checked: CheckedFile): Promise<PlannedFile> {
    const { target } = checked;
    const symlinkedFolder = await findSymlinkedFolder(this.dir, target);
    if (symlinkedFolder !== undefined) {
      throw new ApplyError(
        'SYMLINK_TARGET',
        `folder ${symlinkedFolder} on the way to ${target.relativePath} is a symbolic link; replace it with a real folder`,
        target.relativePath,
      );
    }

    const existing = await lstatIfPresent(target.absolutePath, target.relativePath);
    if (existing === undefined) {
      return { ...checked, action: 'write', existing };
    }
    if (existing.isSymbolicLink()) {
      throw new ApplyError(
        'SYMLINK_TARGET',
        `${target.relativePath} is a symbolic link; certsync never writes through one, remove it`,
        target.relativePath,
      );
    }
    if (!existing.isFile()) {
      const code = existing.isDirectory() ? 'EISDIR' : 'NOT_A_FILE';
      const message = `${target.relativePath} exists but is not a regular file; remove it`;
      throw new ApplyError(code, message, target.relativePath);
    }
    if (existing.size !== checked.file.size || !(await this.holdsBytes(checked))) {
      return { ...checked, action: 'write', existing };
    }
    if (!hasAttributes(existing, checked.mode, checked.owner)) {
      // Refuse a fix that could not work before anything is touched; phase 2 checks the result.
      const planned = checked.owner && { ...checked.owner, mode: checked.mode };
      if (planned) assertReadableByOwner(planned, checked.owner, target);
      return { ...checked, action: 'fix', existing };
    }
    // Right bytes, mode and owner can still be unreadable for that owner (a mode set that way).
    assertReadableByOwner(attributesOf(existing), checked.owner, target);
    return { ...checked, action: 'keep', existing };
  }

  private async holdsBytes({ target, file }: CheckedFile): Promise<boolean> {
    try {
      const handle = await open(target.absolutePath, READ_NO_FOLLOW);
      const onDisk = await handle.readFile().finally(() => handle.close());
      return sha256Hex(onDisk) === file.sha256.toLowerCase();
    } catch (error) {
      throw applyErrorFromFileSystem(error, 'reading the current file', target.relativePath);
    }
  }

  /**
   * Phase 1 for one file: a durable, verified temp file beside the target, with its final owner
   * and mode and readable by that owner, and a backup link of the old file.
   */
  private async stageFile(plan: PlannedFile, staging: Staging): Promise<void> {
    const { target, file, mode, owner, existing } = plan;
    const folder = await this.ensureFolders(target, staging);
    const tempPath = path.join(folder, tempFileNameFor(target.fileName));
    const step = (name: string) => (error: unknown) => {
      throw applyErrorFromFileSystem(error, name, target.relativePath);
    };

    const handle = await open(tempPath, CREATE_TEMP_FLAGS, mode).catch(step('creating temp file'));
    staging.tempPaths.set(plan, tempPath);
    try {
      await handle.writeFile(file.content).catch(step('writing temp file'));
      if (owner !== undefined) {
        await chownHandle(handle, owner, target);
      } else if (existing !== undefined) {
        await this.keepOwner(handle, existing, target);
      }
      // chmod after chown (chown may clear set-id bits) and before fsync, so the mode is as
      // durable as the bytes; it also undoes the umask.
      await handle.chmod(mode).catch(step('setting mode'));
      await handle.sync().catch(step('syncing temp file'));
      const staged = await handle.stat().catch(step('inspecting temp file'));
      assertModeKept(attributesOf(staged), mode, target);
      assertReadableByOwner(attributesOf(staged), owner, target);
    } finally {
      await handle.close();
    }

    const written = await open(tempPath, READ_NO_FOLLOW).catch(step('re-reading temp file'));
    const readBack = await written
      .readFile()
      .catch(step('re-reading temp file'))
      .finally(() => written.close());
    if (sha256Hex(readBack) !== file.sha256.toLowerCase()) {
      const message = `bytes read back from the temp file for ${target.relativePath} do not match the pushed sha256; check the disk`;
      throw new ApplyError('DIGEST_MISMATCH', message, target.relativePath);
    }

    if (existing !== undefined) {
      const backupPath = path.join(folder, tempFileNameFor(target.fileName));
      try {
        await link(target.absolutePath, backupPath);
        staging.backupPaths.set(plan, backupPath);
      } catch (error) {
        // Some file systems have no hard links; the apply still works, it just cannot roll back.
        this.log.warn({ path: target.relativePath, err: error }, 'Backup link not created');
      }
    }
    staging.folderToSync.add(folder);
  }

  /**
   * Keeps the owner of the file being replaced: a renewal must not turn a key an operator gave to
   * the proxy's user back into a root-owned file. Without the privilege to chown, the new file
   * keeps the agent's user and a warning says so.
   */
  private async keepOwner(handle: LocalFile, existing: Stats, target: TargetPath): Promise<void> {
    const created = await handle.stat();
    if (created.uid === existing.uid && created.gid === existing.gid) {
      return;
    }
    try {
      await handle.chown(existing.uid, existing.gid);
    } catch (error) {
      if (errnoCode(error) !== 'EPERM') {
        throw applyErrorFromFileSystem(error, 'setting owner', target.relativePath);
      }
      this.log.warn({ path: target.relativePath, uid: existing.uid }, 'Owner not preserved');
    }
  }

  /** Creates missing folders on the way to the target; returns the target's folder. */
  private async ensureFolders(target: TargetPath, staging: Staging): Promise<string> {
    let folder = this.dir;
    for (const segment of target.folderSegments) {
      const parent = folder;
      folder = path.join(folder, segment);
      try {
        await mkdir(folder, { mode: CREATED_FOLDER_MODE });
        staging.createdFolders.push(folder);
        staging.folderToSync.add(parent);
        continue;
      } catch (error) {
        if (errnoCode(error) !== 'EEXIST') {
          throw applyErrorFromFileSystem(error, 'creating folder', target.relativePath);
        }
      }
      const stats = await lstat(folder);
      if (!stats.isDirectory()) {
        const relativeFolder = path.relative(this.dir, folder);
        const code = stats.isSymbolicLink() ? 'SYMLINK_TARGET' : 'ENOTDIR';
        const message = `${relativeFolder} is in the way of ${target.relativePath} and is not a folder`;
        throw new ApplyError(code, message, target.relativePath);
      }
    }
    return folder;
  }

  /** Phase 2: every rename, then mode/owner fixes, then folder syncs; undone in reverse on failure. */
  private async commit(plans: readonly PlannedFile[], staging: Staging): Promise<void> {
    const undo: Array<() => Promise<void>> = [];
    try {
      for (const plan of plans.filter((p) => p.action === 'write')) {
        const tempPath = staging.tempPaths.get(plan);
        const backupPath = staging.backupPaths.get(plan);
        if (tempPath === undefined) continue;
        await rename(tempPath, plan.target.absolutePath).catch((error: unknown) => {
          throw applyErrorFromFileSystem(error, 'renaming into place', plan.target.relativePath);
        });
        staging.tempPaths.delete(plan);
        undo.push(() => this.restoreOldFile(plan, backupPath, staging));
      }
      for (const plan of plans.filter((p) => p.action === 'fix')) {
        const old = plan.existing && attributesOf(plan.existing);
        undo.push(async () => {
          if (old) await setAttributesNoFollow(plan.target, old.mode, old);
        });
        const fixed = await setAttributesNoFollow(plan.target, plan.mode, plan.owner);
        assertModeKept(fixed, plan.mode, plan.target);
        assertReadableByOwner(fixed, plan.owner, plan.target);
      }
      for (const folder of staging.folderToSync) {
        await syncFolder(folder, path.relative(this.dir, folder));
      }
    } catch (error) {
      for (const step of undo.reverse()) {
        await step().catch((undoError: unknown) => {
          this.log.error({ err: undoError }, 'Bundle rollback incomplete');
        });
      }
      throw error;
    }
    for (const backupPath of staging.backupPaths.values()) {
      await unlink(backupPath).catch((error: unknown) => {
        this.log.warn({ err: error }, 'Backup link not removed');
      });
    }
    staging.backupPaths.clear();
  }

  /** Puts the old bytes back after a phase-2 failure, or removes a file that was new. */
  private async restoreOldFile(
    plan: PlannedFile,
    backupPath: string | undefined,
    staging: Staging,
  ) {
    if (plan.existing === undefined) {
      await unlink(plan.target.absolutePath);
      return;
    }
    if (backupPath === undefined) {
      throw new ApplyError('EIO', 'no backup link to restore from', plan.target.relativePath);
    }
    // Forget the backup first: if this rename fails, it holds the only copy of the old bytes and
    // discard() must not remove it.
    staging.backupPaths.delete(plan);
    try {
      await rename(backupPath, plan.target.absolutePath);
    } catch (error) {
      const backup = path.relative(this.dir, backupPath);
      const message = `old bytes of ${plan.target.relativePath} are kept in ${backup}; restore them by hand`;
      throw new ApplyError(errnoCode(error) ?? 'EIO', message, plan.target.relativePath, {
        cause: error,
      });
    }
  }

  /** Removes whatever phase 1 left: temp files, unused backups, and folders it created. */
  private async discard(staging: Staging): Promise<void> {
    for (const leftover of [...staging.tempPaths.values(), ...staging.backupPaths.values()]) {
      await unlink(leftover).catch((error: unknown) => {
        if (errnoCode(error) !== 'ENOENT') {
          this.log.warn({ err: error }, 'Temp file not removed');
        }
      });
    }
    // Deepest first; rmdir refuses a folder that is not empty, which is exactly the guard we want.
    for (const folder of [...staging.createdFolders].reverse()) {
      await rmdir(folder).catch(() => undefined);
    }
  }
}

async function lstatIfPresent(absolutePath: string, relativePath: string) {
  try {
    return await lstat(absolutePath);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw applyErrorFromFileSystem(error, 'inspecting target', relativePath);
  }
}

/** Makes renames and new entries in a folder durable. */
async function syncFolder(folder: string, relativeFolder: string): Promise<void> {
  try {
    const handle = await open(folder, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync().finally(() => handle.close());
  } catch (error) {
    // Some network and FUSE file systems reject fsync on a folder; the renames still happened.
    if (errnoCode(error) === 'EINVAL') return;
    throw applyErrorFromFileSystem(error, 'syncing folder', relativeFolder || '.');
  }
}
