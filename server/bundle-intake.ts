import path from 'node:path';
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
  /** Quiet time after the last source event before the source is read and validated. */
  settleMs: number;
  /** Quiet time a failing candidate waits before it is recorded as rejected (≥ settleMs). */
  rejectSettleMs: number;
  rescanIntervalMs: number;
  usePolling: boolean;
  /** limits.maxFileBytes per file; limits.maxMessageBytes for the whole push. */
  limits: Pick<LimitsConfig, 'maxFileBytes' | 'maxMessageBytes'>;
  onAccepted: (version: BundleVersion, trigger: 'accepted' | 'import') => void | Promise<void>;
  /** Called once per recorded rejection (not for a candidate still waiting out rejectSettleMs). */
  onRejected?: (reason: string) => void;
  /** A paused bundle's source is not read (see PauseRegistry). */
  isPaused?: () => boolean;
  log: Logger;
  now?: () => Date;
  /** Monotonic milliseconds for the quiet windows; default performance.now. */
  clockMs?: () => number;
}

type CheckOutcome = 'accepted' | 'unchanged' | 'rejected' | 'waiting' | 'paused';

/**
 * How much longer a failing candidate must wait before it may be recorded as rejected, given how
 * long the source has been quiet; 0 means reject now. Any new event restarts the quiet time.
 */
export function rejectWaitMs(quietForMs: number, rejectSettleMs: number): number {
  return Math.max(0, Math.ceil(rejectSettleMs - quietForMs));
}

/** The `source` recorded for a version that came through the Import RPC. */
const IMPORT_SOURCE = 'import';

/** The PEM parts of a bundle pushed through the Import RPC. */
export interface ImportedPem {
  cert: Buffer;
  key: Buffer;
  /** Empty when the certificate file carries its issuers, or there are none. */
  chain: Buffer;
}

/** An Import whose files cannot be mapped to the bundle's configured files. */
export class ImportMappingError extends Error {
  constructor(
    message: string,
    readonly bundle: string,
    readonly source: string,
  ) {
    super(message);
    this.name = 'ImportMappingError';
  }
}

/** Which imported parts make each certbot file name. */
function importedContent(source: string, pem: ImportedPem): Buffer | undefined {
  const withNewline = (part: Buffer) =>
    part.length > 0 && part[part.length - 1] !== 0x0a
      ? Buffer.concat([part, Buffer.from('\n')])
      : part;
  switch (path.basename(source)) {
    case 'cert.pem':
      return pem.cert;
    case 'chain.pem':
      return pem.chain;
    case 'fullchain.pem':
      return Buffer.concat([withNewline(pem.cert), pem.chain]);
    case 'privkey.pem':
      return pem.key;
    default:
      return undefined;
  }
}

/**
 * The path from a source folder to the version store for one bundle: watch → read → compare →
 * validate → accept. Checks never overlap; an event during a check queues one more check.
 *
 * Two quiet windows. After `settleMs` without events the source is read; a candidate that
 * validates is accepted at once. One that fails is not reported yet: a writer may still be busy
 * (an operator copying files one by one, a slow disk), so the intake reads again once the source
 * has been quiet for `rejectSettleMs`, and only a candidate still failing then is recorded as
 * rejected. A failing candidate never replaces the current version either way.
 *
 * Known limit: a writer that pauses for longer than `settleMs` half-way through a renewal can
 * have its intermediate state accepted if that state validates on its own (e.g. new fullchain.pem
 * and privkey.pem written, cert.pem not yet). certbot swaps all four links within about a
 * millisecond, so it never does this; and with cert.pem and fullchain.pem both configured a mix
 * of renewals fails `files-disagree`. The final state is accepted as the next version when the
 * writer finishes, so the fleet ends on it either way.
 */
export class BundleIntake {
  private readonly watcher: SourceWatcher;
  private running: Promise<void> | undefined;
  private checkQueued = false;
  /** Reads the source again once a failing candidate has waited out rejectSettleMs. */
  private rejectTimer: NodeJS.Timeout | undefined;
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
      ...(options.clockMs ? { clockMs: options.clockMs } : {}),
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
      .catch((error: unknown) =>
        this.options.log.error({ err: error }, 'Bundle check failed unexpectedly'),
      )
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
    this.cancelRejectWait();
    await this.watcher.close();
    await this.running;
  }

  /**
   * The Import RPC: maps the pushed PEM parts onto the bundle's configured files (certbot names:
   * cert.pem, chain.pem, fullchain.pem, privkey.pem) and sends them through the same validation
   * and version store as a watched source. What the source holds now is withdrawn, so only its
   * next renewal supersedes the import. Throws BundleValidationError for an invalid bundle
   * (nothing changes) and returns undefined when the bundle equals the current version.
   */
  async importCandidate(pem: ImportedPem): Promise<BundleVersion | undefined> {
    // An import takes the place of a check: a watcher event meanwhile queues one check after it,
    // so two versions are never accepted at once.
    while (this.running) await this.running;
    const work = this.importNow(pem);
    this.running = work
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        this.running = undefined;
        if (this.checkQueued) {
          this.checkQueued = false;
          void this.requestCheck();
        }
      });
    return work;
  }

  private async importNow(pem: ImportedPem): Promise<BundleVersion | undefined> {
    const { bundle, store, log } = this.options;
    const files: CandidateFile[] = bundle.files.map((file) => {
      const content = importedContent(file.source, pem);
      if (content === undefined) {
        throw new ImportMappingError(
          `bundle ${bundle.name} file ${file.source} is not a certbot file name (cert.pem, chain.pem, fullchain.pem, privkey.pem); import cannot fill it`,
          bundle.name,
          file.source,
        );
      }
      return {
        source: file.source,
        path: `import:${file.source}`,
        target: file.target,
        mode: file.mode,
        content,
      };
    });
    const digest = combinedDigest(
      files.map((file) => ({ name: file.target, sha256: sha256Hex(file.content) })),
    );
    if (store.current(bundle.name)?.digest === digest) return undefined;
    const validated = validateBundle(files, {
      expectNames: bundle.expectNames,
      requireChain: bundle.requireChain,
      now: this.now(),
    });
    const sourceDigest = await this.sourceDigest();
    const accepted = await this.acceptValidated(files, digest, validated, IMPORT_SOURCE);
    if (sourceDigest) await store.withdraw(bundle.name, sourceDigest);
    log.info({ bundle: bundle.name, version: accepted.version }, 'Imported bundle accepted');
    return accepted;
  }

  /** The digest of what the watched source holds now; undefined when it cannot be read. */
  private async sourceDigest(): Promise<string | undefined> {
    try {
      const snapshot = await readSourceFiles(this.options.bundle, {
        maxFileBytes: this.options.limits.maxFileBytes,
      });
      return combinedDigest(
        snapshot.files.map((file) => ({ name: file.target, sha256: sha256Hex(file.content) })),
      );
    } catch (error) {
      if (error instanceof SourceReadError) return undefined;
      throw error;
    }
  }

  private async check(): Promise<CheckOutcome> {
    const { bundle, store, log } = this.options;
    if (this.options.isPaused?.()) {
      log.debug({ bundle: bundle.name }, 'Bundle paused; source not read');
      return 'paused';
    }
    let files: CandidateFile[];
    try {
      const snapshot = await readSourceFiles(bundle, {
        maxFileBytes: this.options.limits.maxFileBytes,
      });
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

    const digest = combinedDigest(
      files.map((file) => ({ name: file.target, sha256: sha256Hex(file.content) })),
    );
    const current = store.current(bundle.name);
    if (current?.digest === digest) {
      this.cancelRejectWait();
      log.debug({ bundle: bundle.name, version: current.version }, 'Source unchanged');
      return 'unchanged';
    }
    if (store.isWithdrawn(bundle.name, digest)) {
      this.cancelRejectWait();
      log.debug(
        { bundle: bundle.name, version: current?.version },
        'Source holds withdrawn content; waiting for a new renewal',
      );
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

    await this.acceptValidated(files, digest, validated, bundle.source);
    return 'accepted';
  }

  private async acceptValidated(
    files: readonly CandidateFile[],
    digest: string,
    validated: ReturnType<typeof validateBundle>,
    sourceDir: string,
  ): Promise<BundleVersion> {
    const { bundle, store, log } = this.options;
    const accepted = await store.accept(
      {
        bundle: bundle.name,
        sourceDir,
        digest,
        validated,
        files: files.map((file) => ({
          source: file.source,
          target: file.target,
          mode: file.mode,
          owner: file.owner,
          sha256: sha256Hex(file.content),
          size: file.content.length,
          content: file.content,
        })),
      },
      this.now(),
    );
    this.cancelRejectWait();
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
    await this.options.onAccepted(accepted, sourceDir === IMPORT_SOURCE ? 'import' : 'accepted');
    return accepted;
  }

  private cancelRejectWait(): void {
    if (this.rejectTimer) clearTimeout(this.rejectTimer);
    this.rejectTimer = undefined;
  }

  private async handleFailure(
    reason: string,
    message: string,
    files: readonly CandidateFile[],
    error: Error,
    digest = '',
  ): Promise<CheckOutcome> {
    const { bundle, store, log } = this.options;
    const waitMs = rejectWaitMs(this.watcher.quietForMs(), this.options.rejectSettleMs);
    if (waitMs > 0 && this.closed) return 'waiting';
    if (waitMs > 0) {
      log.debug(
        { bundle: bundle.name, reason, waitMs },
        'Candidate not valid yet; reading again once the source stays quiet',
      );
      this.cancelRejectWait();
      this.rejectTimer = setTimeout(() => {
        this.rejectTimer = undefined;
        void this.requestCheck();
      }, waitMs);
      this.rejectTimer.unref();
      return 'waiting';
    }
    this.cancelRejectWait();

    const previous = store.lastRejected(bundle.name);
    if (
      previous &&
      previous.digest === digest &&
      previous.reason === reason &&
      previous.message === message
    )
      return 'rejected';
    log.warn(
      {
        bundle: bundle.name,
        reason,
        err: { message: error.message },
        keptVersion: store.current(bundle.name)?.version,
      },
      'Candidate bundle rejected; current version stays authoritative',
    );
    await store.recordRejection(bundle.name, {
      at: this.now(),
      reason,
      message,
      digest,
      files: files.map((file) => ({
        source: file.source,
        sha256: sha256Hex(file.content),
        size: file.content.length,
      })),
    });
    this.options.onRejected?.(reason);
    return 'rejected';
  }
}

/** Per-file room for target, digest, mode and framing in a push, on top of the content. */
const PUSH_OVERHEAD_PER_FILE_BYTES = 1024;

/** An upper bound of the push message that would carry `files`. */
function estimatePushBytes(files: readonly CandidateFile[]): number {
  return files.reduce(
    (total, file) =>
      total + file.content.length + file.target.length + PUSH_OVERHEAD_PER_FILE_BYTES,
    1024,
  );
}
