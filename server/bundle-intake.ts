import { combinedDigest, sha256Hex } from '../common/digest';
import type { Logger } from '../common/log';
import { BundleValidationError, validateBundle, type CandidateFile } from './bundle-validator';
import type { BundleConfig, LimitsConfig } from './config';
import { readSourceFiles, SourceReadError } from './source-reader';
import { SourceWatcher } from './source-watcher';
import type { VersionStorage } from './state-store';
import type { BundleVersion } from './version-store';

export interface BundleIntakeOptions {
  bundle: BundleConfig;
  store: VersionStorage;
  settleMs: number;
  rescanIntervalMs: number;
  usePolling: boolean;
  /** limits.maxFileBytes per file; limits.maxMessageBytes for the whole push. */
  limits: Pick<LimitsConfig, 'maxFileBytes' | 'maxMessageBytes'>;
  /** How many extra settle windows a failing candidate gets before it is recorded as rejected. */
  retriesBeforeReject?: number;
  onAccepted: (version: BundleVersion) => void | Promise<void>;
  log: Logger;
  now?: () => Date;
}

type CheckOutcome = 'accepted' | 'unchanged' | 'rejected' | 'retrying';

/**
 * The path from a source folder to the version store for one bundle: watch → read → compare →
 * validate → accept. Checks never overlap; an event during a check queues one more check.
 *
 * A candidate that fails validation is given `retriesBeforeReject` more settle windows before it
 * is recorded, because certbot swaps its four links one at a time and a slow disk can make the
 * half-swapped state (new key, old certificate) outlast one window. It is never accepted either
 * way: only a candidate that validates replaces the current version.
 */
export class BundleIntake {
  private readonly watcher: SourceWatcher;
  private running: Promise<void> | undefined;
  private checkQueued = false;
  private failedAttempts = 0;
  private lastFailedDigest: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => Date;

  constructor(private readonly options: BundleIntakeOptions) {
    this.now = options.now ?? (() => new Date());
    this.watcher = new SourceWatcher({
      dir: options.bundle.source,
      settleMs: options.settleMs,
      rescanIntervalMs: options.rescanIntervalMs,
      usePolling: options.usePolling,
      onSettled: () => this.requestCheck(),
      log: options.log,
    });
  }

  /** Reads the source now (at start-up, and from the watcher once it has settled). */
  requestCheck(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.checkQueued = true;
      return this.running;
    }
    this.running = this.check()
      .then(() => undefined)
      .catch((error: unknown) => this.options.log.error({ err: error }, 'Bundle check failed unexpectedly'))
      .finally(() => {
        this.running = undefined;
        if (this.checkQueued) {
          this.checkQueued = false;
          void this.requestCheck();
        }
      });
    return this.running ?? Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.watcher.close();
    await this.running;
  }

  private async check(): Promise<CheckOutcome> {
    const { bundle, store, log } = this.options;
    let files: CandidateFile[];
    try {
      const snapshot = await readSourceFiles(bundle, { maxFileBytes: this.options.limits.maxFileBytes });
      this.watcher.watchAlso(snapshot.resolvedDirs);
      files = snapshot.files;
    } catch (error) {
      if (!(error instanceof SourceReadError)) throw error;
      return this.handleFailure(error.reason, error.message, [], error);
    }
    const pushBytes = estimatePushBytes(files);
    if (pushBytes > this.options.limits.maxMessageBytes) {
      const message = `bundle ${bundle.name} needs a ${pushBytes}-byte message, more than limits.maxMessageBytes (${this.options.limits.maxMessageBytes})`;
      return this.handleFailure('too-large', message, files, new Error(message));
    }

    const digest = combinedDigest(files.map((file) => ({ name: file.target, sha256: sha256Hex(file.content) })));
    const current = store.current(bundle.name);
    if (current?.digest === digest) {
      this.failedAttempts = 0;
      log.debug({ bundle: bundle.name, version: current.version }, 'Source unchanged');
      return 'unchanged';
    }
    if (store.isWithdrawn(bundle.name, digest)) {
      this.failedAttempts = 0;
      log.debug({ bundle: bundle.name, version: current?.version }, 'Source holds withdrawn content; waiting for a new renewal');
      return 'unchanged';
    }

    let validated;
    try {
      validated = validateBundle(files, {
        expectNames: bundle.expectNames,
        requireChain: bundle.requireChain,
        now: this.now(),
      });
    } catch (error) {
      if (!(error instanceof BundleValidationError)) throw error;
      return this.handleFailure(error.reason, error.message, files, error, digest);
    }

    const accepted = await store.accept(
      {
        bundle: bundle.name,
        sourceDir: bundle.source,
        digest,
        validated,
        files: files.map((file) => ({
          source: file.source,
          target: file.target,
          mode: file.mode,
          sha256: sha256Hex(file.content),
          size: file.content.length,
          content: file.content,
        })),
      },
      this.now(),
    );
    this.failedAttempts = 0;
    log.info(
      {
        bundle: bundle.name,
        version: accepted.version,
        fingerprint: validated.leaf.fingerprintSha256,
        notAfter: validated.leaf.notAfter.toISOString(),
        warnings: validated.warnings,
      },
      'Bundle version accepted',
    );
    await this.options.onAccepted(accepted);
    return 'accepted';
  }

  private async handleFailure(
    reason: string,
    message: string,
    files: readonly CandidateFile[],
    error: Error,
    digest = '',
  ): Promise<CheckOutcome> {
    const { bundle, store, log } = this.options;
    const retries = this.options.retriesBeforeReject ?? 2;
    if (digest !== this.lastFailedDigest) {
      this.lastFailedDigest = digest;
      this.failedAttempts = 0;
    }
    if (this.failedAttempts < retries) {
      this.failedAttempts += 1;
      log.debug({ bundle: bundle.name, reason, attempt: this.failedAttempts }, 'Candidate not valid yet, waiting');
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.requestCheck(), this.options.settleMs);
      this.retryTimer.unref();
      return 'retrying';
    }

    const previous = store.lastRejected(bundle.name);
    if (previous && previous.digest === digest && previous.reason === reason) return 'rejected';
    log.warn(
      { bundle: bundle.name, reason, err: { message: error.message }, keptVersion: store.current(bundle.name)?.version },
      'Candidate bundle rejected; current version stays authoritative',
    );
    await store.recordRejection(bundle.name, {
      at: this.now(),
      reason,
      message,
      digest,
      files: files.map((file) => ({ source: file.source, sha256: sha256Hex(file.content), size: file.content.length })),
    });
    return 'rejected';
  }
}

/** Per-file room for target, digest, mode and framing in a push, on top of the content. */
const PUSH_OVERHEAD_PER_FILE_BYTES = 1024;

/** An upper bound of the push message that would carry `files`. */
function estimatePushBytes(files: readonly CandidateFile[]): number {
  return files.reduce((total, file) => total + file.content.length + file.target.length + PUSH_OVERHEAD_PER_FILE_BYTES, 1024);
}
