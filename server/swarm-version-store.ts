import type { Logger } from '../common/log';
import {
  ConfigNameConflictError,
  ConfigNotFoundError,
  StaleVersionIndexError,
  type DockerConfigClient,
  type SwarmConfigObject,
} from './docker-client';
import type { StateCipher } from './state-cipher';
import type { VersionStorage } from './state-store';
import {
  headObjectName,
  LABEL,
  LABELS_ONLY_DATA,
  labelNumber,
  StateObjectTooLargeError,
  SWARM_OBJECT_MAX_BYTES,
  versionObjectName,
} from './swarm-objects';
import {
  fromMeta,
  toMeta,
  type BundleVersion,
  type NewVersion,
  type RejectedCandidateRecord,
  type StoredMeta,
} from './version-store';

/** How often a write re-reads the head and tries again after losing a compare-and-set. */
const CAS_ATTEMPTS = 8;

/** Thrown when a head update kept losing to other writers. */
export class StateWriteConflictError extends Error {
  constructor(
    readonly bundle: string,
    options?: { cause?: unknown },
  ) {
    super(
      `bundle "${bundle}": the state head kept changing under this server (${CAS_ATTEMPTS} attempts); is a second server writing?`,
      options,
    );
    this.name = 'StateWriteConflictError';
  }
}

interface SealedVersionPayload {
  meta: StoredMeta;
  contents: string[];
}

/**
 * Keeps bundle versions in the swarm's replicated store: each version is an immutable config
 * `certsync-BUNDLE-vNNNNNN` whose data is the whole version (metadata and file bytes) sealed
 * with AES-256-GCM, the bundle and version bound in as AAD; its labels carry the non-secret
 * metadata. A per-bundle head config holds the current-version pointer, the withdrawn digests and
 * the last rejected candidate in its labels; every change to it is a compare-and-set on its
 * version index, so two servers alive at once during a failover cannot both move it.
 */
export class SwarmVersionStore implements VersionStorage {
  private readonly currentByBundle = new Map<string, BundleVersion>();
  private readonly rejectedByBundle = new Map<string, RejectedCandidateRecord>();
  private readonly withdrawnByBundle = new Map<string, string[]>();

  private constructor(
    private readonly docker: DockerConfigClient,
    private readonly cipher: StateCipher,
    private readonly versionsKept: number,
    private readonly log: Logger,
  ) {}

  /** Loads each bundle's head and current version from the swarm (creating empty heads). */
  static async open(
    docker: DockerConfigClient,
    cipher: StateCipher,
    bundleNames: readonly string[],
    versionsKept: number,
    log: Logger,
  ): Promise<SwarmVersionStore> {
    const store = new SwarmVersionStore(docker, cipher, versionsKept, log);
    for (const bundle of bundleNames) await store.load(bundle);
    return store;
  }

  current(bundle: string): BundleVersion | undefined {
    return this.currentByBundle.get(bundle);
  }

  lastRejected(bundle: string): RejectedCandidateRecord | undefined {
    return this.rejectedByBundle.get(bundle);
  }

  isWithdrawn(bundle: string, digest: string): boolean {
    return this.withdrawnByBundle.get(bundle)?.includes(digest) ?? false;
  }

  async get(bundle: string, version: number): Promise<BundleVersion | undefined> {
    const current = this.currentByBundle.get(bundle);
    if (current?.version === version) return current;
    return this.readVersion(bundle, version).catch(() => undefined);
  }

  async listVersions(bundle: string): Promise<number[]> {
    const configs = await this.docker.listConfigs({
      [LABEL.kind]: 'version',
      [LABEL.bundle]: bundle,
    });
    return configs
      .map((config) => labelNumber(config.labels, LABEL.version))
      .filter((version): version is number => version !== undefined)
      .sort((a, b) => a - b);
  }

  async accept(candidate: NewVersion, now: Date): Promise<BundleVersion> {
    const { bundle } = candidate;
    for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt += 1) {
      const head = await this.readHead(bundle);
      const existing = await this.listVersions(bundle);
      const version = Math.max(0, labelNumber(head.labels, LABEL.current) ?? 0, ...existing) + 1;
      const accepted: BundleVersion = { ...candidate, version, acceptedAt: now };
      const name = versionObjectName(bundle, version);
      try {
        await this.docker.createConfig(name, versionLabels(accepted), this.sealVersion(accepted));
      } catch (error) {
        if (error instanceof ConfigNameConflictError) continue;
        throw error;
      }

      const withdrawn = parseWithdrawn(head.labels).filter((digest) => digest !== accepted.digest);
      const { [LABEL.rejected]: _rejected, ...kept } = head.labels;
      try {
        await this.docker.updateConfigLabels(head, {
          ...kept,
          [LABEL.current]: String(version),
          [LABEL.withdrawn]: withdrawn.join(','),
        });
      } catch (error) {
        await this.docker.removeConfig(name);
        if (error instanceof StaleVersionIndexError) continue;
        throw error;
      }

      this.currentByBundle.set(bundle, accepted);
      this.withdrawnByBundle.set(bundle, withdrawn);
      this.rejectedByBundle.delete(bundle);
      await this.prune(bundle, version);
      this.log.info({ bundle, version, object: name }, 'Version stored in the swarm');
      return accepted;
    }
    throw new StateWriteConflictError(bundle);
  }

  async reinstate(bundle: string, version: number): Promise<BundleVersion> {
    const current = this.currentByBundle.get(bundle);
    if (current?.version === version) return current;
    const target = await this.readVersion(bundle, version);
    const newer = (await this.listVersions(bundle)).filter((kept) => kept > version);
    const newerDigests: string[] = [];
    for (const kept of newer) newerDigests.push((await this.readVersion(bundle, kept)).digest);

    const withdrawn = await this.updateHead(bundle, (labels) => {
      const set = new Set([...parseWithdrawn(labels), ...newerDigests]);
      set.delete(target.digest);
      return { ...labels, [LABEL.current]: String(version), [LABEL.withdrawn]: [...set].join(',') };
    });
    this.withdrawnByBundle.set(bundle, parseWithdrawn(withdrawn));
    this.currentByBundle.set(bundle, target);
    return target;
  }

  /**
   * Withdraws `digest` (content the source still holds that an import replaced) without changing
   * the current version: the watcher will not take it in again, only a new renewal.
   */
  async withdraw(bundle: string, digest: string): Promise<void> {
    const current = this.currentByBundle.get(bundle);
    if (!current || current.digest === digest || this.isWithdrawn(bundle, digest)) return;
    const labels = await this.updateHead(bundle, (head) => {
      const set = new Set([...parseWithdrawn(head), digest]);
      return { ...head, [LABEL.withdrawn]: [...set].join(',') };
    });
    this.withdrawnByBundle.set(bundle, parseWithdrawn(labels));
  }

  async recordRejection(bundle: string, record: RejectedCandidateRecord): Promise<void> {
    this.rejectedByBundle.set(bundle, record);
    await this.updateHead(bundle, (labels) => ({
      ...labels,
      [LABEL.rejected]: JSON.stringify(record),
    }));
  }

  /** Applies `change` to the head's labels with compare-and-set, re-reading after a lost race. */
  private async updateHead(
    bundle: string,
    change: (labels: Record<string, string>) => Record<string, string>,
  ) {
    for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt += 1) {
      const head = await this.readHead(bundle);
      const labels = change(head.labels);
      try {
        await this.docker.updateConfigLabels(head, labels);
        return labels;
      } catch (error) {
        if (error instanceof StaleVersionIndexError) continue;
        throw error;
      }
    }
    throw new StateWriteConflictError(bundle);
  }

  /** The bundle's head config, created empty the first time. */
  private async readHead(bundle: string): Promise<SwarmConfigObject> {
    const name = headObjectName(bundle);
    try {
      return await this.docker.inspectConfig(name);
    } catch (error) {
      if (!(error instanceof ConfigNotFoundError)) throw error;
    }
    try {
      await this.docker.createConfig(
        name,
        { [LABEL.kind]: 'head', [LABEL.bundle]: bundle },
        LABELS_ONLY_DATA,
      );
    } catch (error) {
      if (!(error instanceof ConfigNameConflictError)) throw error;
    }
    return this.docker.inspectConfig(name);
  }

  private async load(bundle: string): Promise<void> {
    const head = await this.readHead(bundle);
    this.withdrawnByBundle.set(bundle, parseWithdrawn(head.labels));
    const rejected = head.labels[LABEL.rejected];
    if (rejected) {
      const record = JSON.parse(rejected) as RejectedCandidateRecord & { at: string };
      this.rejectedByBundle.set(bundle, { ...record, at: new Date(record.at) });
    }
    const wanted =
      labelNumber(head.labels, LABEL.current) ?? (await this.listVersions(bundle)).at(-1);
    if (wanted === undefined) return;
    try {
      this.currentByBundle.set(bundle, await this.readVersion(bundle, wanted));
    } catch (error) {
      this.log.error({ bundle, version: wanted, err: error }, 'Stored bundle version unreadable');
      throw new Error(
        `state for bundle "${bundle}" version ${wanted} in swarm config ${versionObjectName(bundle, wanted)} is unreadable`,
        {
          cause: error,
        },
      );
    }
  }

  private sealVersion(version: BundleVersion): Buffer {
    const payload: SealedVersionPayload = {
      meta: toMeta(version),
      contents: version.files.map((file) => file.content.toString('base64')),
    };
    const name = versionObjectName(version.bundle, version.version);
    const sealed = this.cipher.seal(
      Buffer.from(JSON.stringify(payload)),
      versionAad(version.bundle, version.version),
    );
    if (sealed.length > SWARM_OBJECT_MAX_BYTES)
      throw new StateObjectTooLargeError(name, sealed.length);
    return sealed;
  }

  private async readVersion(bundle: string, version: number): Promise<BundleVersion> {
    const config = await this.docker.inspectConfig(versionObjectName(bundle, version));
    const payload = JSON.parse(
      this.cipher.open(config.data, versionAad(bundle, version)).toString('utf8'),
    ) as SealedVersionPayload;
    const files = payload.meta.files.map((file, index) => ({
      ...file,
      content: Buffer.from(payload.contents[index] ?? '', 'base64'),
    }));
    return fromMeta(payload.meta, files);
  }

  /** Removes the oldest versions beyond versionsKept; the current one always stays. */
  private async prune(bundle: string, current: number): Promise<void> {
    const versions = await this.listVersions(bundle);
    const excess = versions.slice(0, Math.max(0, versions.length - this.versionsKept));
    for (const version of excess.filter((kept) => kept !== current)) {
      await this.docker.removeConfig(versionObjectName(bundle, version));
    }
  }
}

/** Binds a sealed version to its bundle and number: a renamed or swapped object does not open. */
function versionAad(bundle: string, version: number): string {
  return `certsync:version:${bundle}:${version}`;
}

function versionLabels(version: BundleVersion): Record<string, string> {
  return {
    [LABEL.kind]: 'version',
    [LABEL.bundle]: version.bundle,
    [LABEL.version]: String(version.version),
    [LABEL.digest]: version.digest,
    [LABEL.acceptedAt]: version.acceptedAt.toISOString(),
  };
}

function parseWithdrawn(labels: Record<string, string>): string[] {
  return (labels[LABEL.withdrawn] ?? '').split(',').filter((digest) => digest !== '');
}
