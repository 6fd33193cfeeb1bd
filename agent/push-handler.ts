import type { ApplyReport, BundlePush, FileDigest } from '../common/contract';
import type { Logger } from '../common/log';
import { ApplyError } from './apply-error';
import type { ManagedFile } from './drift-watcher';
import { readFileDigests } from './folder-scan';
import { resolveTargetPath } from './target-path';
import type { BundleWriter } from './writer';

/** Where a successfully applied or verified manifest goes: the drift watcher. */
export interface ManifestSink {
  setManifest(bundle: string, version: number, files: readonly ManagedFile[]): void;
}

export interface PushHandlerOptions {
  readonly dir: string;
  readonly writer: BundleWriter;
  readonly manifests: ManifestSink;
  readonly logger: Logger;
}

/**
 * Turns one BundlePush into the ApplyReport that answers it. A full push goes through the writer;
 * a manifest-only push is checked against the bytes already on disk. Either way, only a push
 * that ends with the right bytes in place becomes the manifest drift is measured against.
 */
export class PushHandler {
  private readonly options: PushHandlerOptions;
  private readonly log: Logger;
  /** Per bundle, the last push whose bytes this node confirmed, without its content. */
  private readonly confirmed = new Map<string, BundlePush>();

  constructor(options: PushHandlerOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'agent' });
  }

  /** Never throws: every failure becomes an ApplyReport with ok false. */
  async handle(push: BundlePush): Promise<ApplyReport> {
    const startedMs = performance.now();
    try {
      return push.manifestOnly
        ? await this.verifyInPlace(push, startedMs)
        : await this.apply(push, startedMs);
    } catch (error) {
      return this.failureReport(push, error, startedMs);
    }
  }

  private async apply(push: BundlePush, startedMs: number): Promise<ApplyReport> {
    const { bundle, version } = push;
    const outcome = await this.options.writer.applyBundle(push);
    this.rememberManifest(push);
    const { filesWritten, attributesFixed } = outcome;
    this.log.info(
      { bundle, version, filesWritten, attributesFixed, durationMs: elapsedMs(startedMs) },
      'Bundle applied',
    );
    return { bundle, version, ok: true, files: outcome.files, error: undefined, filesWritten };
  }

  /**
   * Puts back the mode and owner of `bundle`'s files from the last manifest this node confirmed,
   * without the server: a chmod or chown on a managed file needs no content to undo. Undefined
   * when no manifest is known; a report with DIGEST_MISMATCH when the bytes changed too (only the
   * server can repair those).
   */
  async restoreAttributes(bundle: string): Promise<ApplyReport | undefined> {
    const manifest = this.confirmed.get(bundle);
    return manifest === undefined ? undefined : this.handle(manifest);
  }

  /**
   * The server saw these bytes in our hello; confirm they are still there before watching them,
   * and put back a mode or owner that changed (in place, nothing rewritten).
   */
  private async verifyInPlace(push: BundlePush, startedMs: number): Promise<ApplyReport> {
    const { bundle, version } = push;
    const paths = push.files.map(
      (file) => resolveTargetPath(this.options.dir, file.target).relativePath,
    );
    const sizes = push.files.map((file) => file.size);
    const found = await readFileDigests(this.options.dir, paths, sizes);
    const differing = found.filter(
      (file, index) => file.sha256 !== push.files[index]?.sha256.toLowerCase(),
    );

    if (differing.length > 0) {
      const differingPaths = differing.map((file) => file.path);
      this.log.info(
        { bundle, version, paths: differingPaths, durationMs: elapsedMs(startedMs) },
        'Bundle differs from manifest',
      );
      const message = `files differ from the pushed manifest: ${differingPaths.join(', ')}; send content`;
      const error = new ApplyError('DIGEST_MISMATCH', message, differingPaths[0] ?? '');
      return {
        bundle,
        version,
        ok: false,
        files: found,
        error: error.toAgentError(),
        filesWritten: 0,
      };
    }
    const { files, attributesFixed } = await this.options.writer.fixAttributesInPlace(push);
    this.rememberManifest(push);
    this.log.info(
      { bundle, version, attributesFixed, durationMs: elapsedMs(startedMs) },
      'Bundle verified in place',
    );
    return { bundle, version, ok: true, files, error: undefined, filesWritten: 0 };
  }

  private rememberManifest(push: BundlePush): void {
    const files = push.files.map((file) => ({
      path: resolveTargetPath(this.options.dir, file.target).relativePath,
      sha256: file.sha256.toLowerCase(),
      size: file.size,
      mode: file.mode & 0o7777,
      owner: file.owner,
    }));
    this.options.manifests.setManifest(push.bundle, push.version, files);
    // Only what a later attribute repair needs: no key bytes are kept once they are on disk.
    const manifestFiles = push.files.map((file) => ({ ...file, content: Buffer.alloc(0) }));
    this.confirmed.set(push.bundle, { ...push, manifestOnly: true, files: manifestFiles });
  }

  private async failureReport(
    push: BundlePush,
    caught: unknown,
    startedMs: number,
  ): Promise<ApplyReport> {
    const { bundle, version } = push;
    const error =
      caught instanceof ApplyError
        ? caught
        : new ApplyError('INTERNAL', 'unexpected agent error; see the agent log', '', {
            cause: caught,
          });
    const { code, relativePath: path } = error;
    this.log.error(
      { bundle, version, code, path, err: caught, durationMs: elapsedMs(startedMs) },
      'Bundle not applied',
    );
    const files = await this.readTargetsAsFound(push);
    return { bundle, version, ok: false, files, error: error.toAgentError(), filesWritten: 0 };
  }

  /** The push's targets as found after a failure; targets that never resolved are skipped. */
  private async readTargetsAsFound(push: BundlePush): Promise<FileDigest[]> {
    const paths: string[] = [];
    const sizes: number[] = [];
    for (const file of push.files) {
      try {
        paths.push(resolveTargetPath(this.options.dir, file.target).relativePath);
        sizes.push(file.size);
      } catch {
        // A target that escapes the folder is never read, not even to report it.
      }
    }
    try {
      return await readFileDigests(this.options.dir, paths, sizes);
    } catch (error) {
      this.log.warn({ bundle: push.bundle, err: error }, 'Targets not readable after failure');
      return [];
    }
  }
}

/** Whole milliseconds since `startedMs` (a performance.now() reading). */
function elapsedMs(startedMs: number): number {
  return Math.round(performance.now() - startedMs);
}
