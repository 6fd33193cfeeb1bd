import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from '../common/digest';
import type { Logger } from '../common/log';
import { ensurePrivateDirectory, fsyncDirectory, writeFileAtomic } from './atomic-file';
import type { ValidatedBundle } from './bundle-validator';
import type { VersionStorage } from './state-store';

/** One file of an accepted bundle version, bytes included (never leaves the server except to agents). */
export interface StoredFile {
  source: string;
  target: string;
  mode: number;
  /** Numeric owner for the agent to set; absent in versions accepted without one configured. */
  owner?: { uid: number; gid: number } | undefined;
  sha256: string;
  size: number;
  content: Buffer;
}

/** One accepted, immutable bundle version. */
export interface BundleVersion {
  bundle: string;
  version: number;
  acceptedAt: Date;
  sourceDir: string;
  /** Combined digest of the source files; equal digests mean identical content. */
  digest: string;
  files: StoredFile[];
  validated: ValidatedBundle;
}

/** A candidate the validator refused, kept so status can show why nothing changed. */
export interface RejectedCandidateRecord {
  at: Date;
  reason: string;
  message: string;
  digest: string;
  files: Array<{ source: string; sha256: string; size: number }>;
}

export type NewVersion = Omit<BundleVersion, 'version' | 'acceptedAt'>;

const VERSION_DIR_PATTERN = /^v(\d{6,})$/;

/**
 * Keeps every bundle's versions under `stateDir/bundles/NAME/vNNNNNN/` and a `current.json`
 * pointer. A version folder is written under a temporary name and renamed into place, so a crash
 * never leaves a half version that a restart would serve.
 */
export class VersionStore implements VersionStorage {
  private readonly currentByBundle = new Map<string, BundleVersion>();
  private readonly rejectedByBundle = new Map<string, RejectedCandidateRecord>();
  /** Digests of versions an operator rolled back from; the watcher does not re-accept them. */
  private readonly withdrawnByBundle = new Map<string, string[]>();

  private constructor(
    private readonly stateDir: string,
    private readonly versionsKept: number,
    private readonly log: Logger,
  ) {}

  /** Opens (creating if needed) the state directory and loads the current version of each bundle. */
  static async open(
    stateDir: string,
    bundleNames: readonly string[],
    versionsKept: number,
    log: Logger,
  ) {
    const store = new VersionStore(stateDir, versionsKept, log);
    await ensurePrivateDirectory(path.join(stateDir, 'bundles'));
    for (const name of bundleNames) await store.load(name);
    return store;
  }

  current(bundle: string): BundleVersion | undefined {
    return this.currentByBundle.get(bundle);
  }

  lastRejected(bundle: string): RejectedCandidateRecord | undefined {
    return this.rejectedByBundle.get(bundle);
  }

  /** True when `digest` is the content of a version an operator rolled back from. */
  isWithdrawn(bundle: string, digest: string): boolean {
    return this.withdrawnByBundle.get(bundle)?.includes(digest) ?? false;
  }

  /**
   * Makes an earlier kept version current again (the Rollout RPC). Every newer version's content
   * is withdrawn: the watcher will not re-accept it while the source still holds it, only new
   * content. Returns the reinstated version.
   */
  async reinstate(bundle: string, version: number): Promise<BundleVersion> {
    const current = this.currentByBundle.get(bundle);
    if (current?.version === version) return current;
    const target = await this.readVersion(bundle, version);
    const newer = (await this.listVersions(bundle)).filter((kept) => kept > version);
    const withdrawn = new Set(this.withdrawnByBundle.get(bundle) ?? []);
    for (const kept of newer) withdrawn.add((await this.readVersion(bundle, kept)).digest);
    withdrawn.delete(target.digest);

    await this.writePointer(bundle, version, [...withdrawn]);
    this.withdrawnByBundle.set(bundle, [...withdrawn]);
    this.currentByBundle.set(bundle, target);
    return target;
  }

  /**
   * Withdraws content that is not a version (an imported bundle supersedes what its watched
   * source holds): the watcher will not accept it while the source still holds it.
   */
  async withdraw(bundle: string, digest: string): Promise<void> {
    const current = this.currentByBundle.get(bundle);
    if (!current || current.digest === digest || this.isWithdrawn(bundle, digest)) return;
    const withdrawn = [...(this.withdrawnByBundle.get(bundle) ?? []), digest];
    await this.writePointer(bundle, current.version, withdrawn);
    this.withdrawnByBundle.set(bundle, withdrawn);
  }

  /** Reads any kept version from disk (the current one from memory). */
  async get(bundle: string, version: number): Promise<BundleVersion | undefined> {
    const current = this.currentByBundle.get(bundle);
    if (current?.version === version) return current;
    return this.readVersion(bundle, version).catch(() => undefined);
  }

  /** Versions kept on disk for a bundle, oldest first. */
  async listVersions(bundle: string): Promise<number[]> {
    const entries = await fs.readdir(this.bundleDir(bundle)).catch(() => [] as string[]);
    return entries
      .map((entry) => VERSION_DIR_PATTERN.exec(entry)?.[1])
      .filter((digits): digits is string => digits !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }

  /** Persists a validated candidate as the next version and makes it current. */
  async accept(candidate: NewVersion, now: Date): Promise<BundleVersion> {
    const bundleDir = this.bundleDir(candidate.bundle);
    await ensurePrivateDirectory(bundleDir);
    const existing = await this.listVersions(candidate.bundle);
    const version =
      Math.max(0, this.currentByBundle.get(candidate.bundle)?.version ?? 0, ...existing) + 1;
    const accepted: BundleVersion = { ...candidate, version, acceptedAt: now };

    const finalDir = path.join(bundleDir, versionDirName(version));
    const tempDir = path.join(bundleDir, `.${versionDirName(version)}.tmp`);
    await fs.rm(tempDir, { recursive: true, force: true });
    await fs.mkdir(tempDir, { mode: 0o700 });
    for (const [index, file] of accepted.files.entries()) {
      await writeFileAtomic(path.join(tempDir, `${index}.bin`), file.content, 0o600);
    }
    await writeFileAtomic(
      path.join(tempDir, 'meta.json'),
      JSON.stringify(toMeta(accepted), null, 2),
      0o600,
    );
    await fs.rename(tempDir, finalDir);
    await fsyncDirectory(bundleDir);
    const withdrawn = (this.withdrawnByBundle.get(candidate.bundle) ?? []).filter(
      (digest) => digest !== accepted.digest,
    );
    await this.writePointer(candidate.bundle, version, withdrawn);

    this.withdrawnByBundle.set(candidate.bundle, withdrawn);
    this.currentByBundle.set(candidate.bundle, accepted);
    this.rejectedByBundle.delete(candidate.bundle);
    await fs.rm(path.join(bundleDir, 'rejected.json'), { force: true });
    await this.prune(candidate.bundle);
    return accepted;
  }

  /** Remembers the latest refused candidate (persisted, so status survives a restart). */
  async recordRejection(bundle: string, record: RejectedCandidateRecord): Promise<void> {
    this.rejectedByBundle.set(bundle, record);
    await ensurePrivateDirectory(this.bundleDir(bundle));
    await writeFileAtomic(
      path.join(this.bundleDir(bundle), 'rejected.json'),
      JSON.stringify(record),
      0o600,
    );
  }

  private async load(bundle: string): Promise<void> {
    const bundleDir = this.bundleDir(bundle);
    const entries = await fs.readdir(bundleDir).catch(() => [] as string[]);
    for (const entry of entries.filter((name) => name.endsWith('.tmp'))) {
      await fs.rm(path.join(bundleDir, entry), { recursive: true, force: true });
    }

    const pointer = await readJson<{ version?: unknown; withdrawn?: unknown }>(
      path.join(bundleDir, 'current.json'),
    );
    if (Array.isArray(pointer?.withdrawn)) {
      this.withdrawnByBundle.set(
        bundle,
        pointer.withdrawn.filter((digest): digest is string => typeof digest === 'string'),
      );
    }
    const versions = await this.listVersions(bundle);
    const wanted = typeof pointer?.version === 'number' ? pointer.version : versions.at(-1);
    if (wanted !== undefined) {
      try {
        this.currentByBundle.set(bundle, await this.readVersion(bundle, wanted));
      } catch (error) {
        this.log.error({ bundle, version: wanted, err: error }, 'Stored bundle version unreadable');
        throw new Error(
          `state for bundle "${bundle}" version ${wanted} in ${bundleDir} is unreadable ` +
            `(${(error as Error).message}); restore it or remove current.json to fall back to the ` +
            `newest readable version`,
          { cause: error },
        );
      }
    }

    const rejected = await readJson<RejectedCandidateRecord & { at: string }>(
      path.join(bundleDir, 'rejected.json'),
    );
    if (rejected) this.rejectedByBundle.set(bundle, { ...rejected, at: new Date(rejected.at) });
  }

  private async readVersion(bundle: string, version: number): Promise<BundleVersion> {
    const dir = path.join(this.bundleDir(bundle), versionDirName(version));
    const meta = JSON.parse(await fs.readFile(path.join(dir, 'meta.json'), 'utf8')) as StoredMeta;
    const files: StoredFile[] = [];
    for (const [index, file] of meta.files.entries()) {
      const stored = path.join(dir, `${index}.bin`);
      const content = await fs.readFile(stored);
      // A corrupt copy must never reach an agent: it would refuse it (digest mismatch) forever.
      if (sha256Hex(content) !== file.sha256) {
        throw new Error(
          `${stored} (${file.target} of version ${version}) does not match its recorded SHA-256; ` +
            `the state folder is damaged: restore it from a backup, or move the bundle's folder aside ` +
            `and let the server take in the source again`,
        );
      }
      files.push({ ...file, content });
    }
    return fromMeta(meta, files);
  }

  private async prune(bundle: string): Promise<void> {
    const versions = await this.listVersions(bundle);
    const excess = versions.slice(0, Math.max(0, versions.length - this.versionsKept));
    for (const version of excess) {
      await fs.rm(path.join(this.bundleDir(bundle), versionDirName(version)), {
        recursive: true,
        force: true,
      });
    }
  }

  private async writePointer(bundle: string, version: number, withdrawn: string[]): Promise<void> {
    const pointer = withdrawn.length > 0 ? { version, withdrawn } : { version };
    await writeFileAtomic(
      path.join(this.bundleDir(bundle), 'current.json'),
      JSON.stringify(pointer),
      0o600,
    );
  }

  private bundleDir(bundle: string): string {
    return path.join(this.stateDir, 'bundles', bundle);
  }
}

export type StoredMeta = Omit<BundleVersion, 'acceptedAt' | 'files'> & {
  acceptedAt: string;
  files: Array<Omit<StoredFile, 'content'>>;
};

export function toMeta(version: BundleVersion): StoredMeta {
  return {
    ...version,
    acceptedAt: version.acceptedAt.toISOString(),
    files: version.files.map(({ content: _content, ...rest }) => rest),
  };
}

/** JSON turns Dates into strings; bring the certificate dates back. */
export function fromMeta(meta: StoredMeta, files: StoredFile[]): BundleVersion {
  const reviveSummary = <T extends { notBefore: Date | string; notAfter: Date | string }>(
    summary: T,
  ): T => ({
    ...summary,
    notBefore: new Date(summary.notBefore),
    notAfter: new Date(summary.notAfter),
  });
  return {
    ...meta,
    acceptedAt: new Date(meta.acceptedAt),
    files,
    validated: {
      ...meta.validated,
      leaf: reviveSummary(meta.validated.leaf),
      chain: meta.validated.chain.map(reviveSummary),
    },
  };
}

function versionDirName(version: number): string {
  return `v${String(version).padStart(6, '0')}`;
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (error instanceof SyntaxError) {
      throw new Error(
        `${file} is not valid JSON (${error.message}); restore it from a backup or move it aside`,
        {
          cause: error,
        },
      );
    }
    throw error;
  }
}
