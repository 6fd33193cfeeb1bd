import type { RolloutData } from './rollout';
import type { BundleVersion, NewVersion, RejectedCandidateRecord } from './version-store';

/**
 * Accepted bundle versions and the current-version pointer, as the intake, the hub, the tracker
 * and the admin service use them. Implemented by the local folder (VersionStore) and the swarm's
 * replicated store (SwarmVersionStore). Reads are from memory; writes persist before resolving.
 */
export interface VersionStorage {
  current(bundle: string): BundleVersion | undefined;
  lastRejected(bundle: string): RejectedCandidateRecord | undefined;
  /** True when `digest` is the content of a version an operator rolled back from. */
  isWithdrawn(bundle: string, digest: string): boolean;
  /** Makes an earlier kept version current again; newer content is withdrawn. */
  reinstate(bundle: string, version: number): Promise<BundleVersion>;
  /** Withdraws content the source still holds (an import replaced it) without a version change. */
  withdraw(bundle: string, digest: string): Promise<void>;
  get(bundle: string, version: number): Promise<BundleVersion | undefined>;
  /** Kept versions, oldest first. */
  listVersions(bundle: string): Promise<number[]>;
  /** Persists a validated candidate as the next version and makes it current. */
  accept(candidate: NewVersion, now: Date): Promise<BundleVersion>;
  recordRejection(bundle: string, record: RejectedCandidateRecord): Promise<void>;
}

/** The rollouts of every bundle, saved after each change so a restarted server resumes them. */
export interface RolloutStorage {
  latest(bundle: string): RolloutData | undefined;
  /** Newest first. */
  list(bundle: string): RolloutData[];
  /** Adds or updates `rollout` (the same object is saved again after every change) and persists. */
  save(rollout: RolloutData): Promise<void>;
  /** Records progress (node confirmations) without waiting; several may share one write. */
  saveProgress(rollout: RolloutData): void;
  /** Writes queued progress now and resolves once every write started so far has landed. */
  flush(): Promise<void>;
}

/** Both halves of the server's authoritative state, opened together from one backend. */
export interface StateStore {
  versions: VersionStorage;
  history: RolloutStorage;
}
