import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/log';
import { ensurePrivateDirectory, writeFileAtomic } from './atomic-file';
import type { RolloutData } from './rollout';
import type { RolloutStorage } from './state-store';

/** Rollouts kept per bundle in `stateDir/rollouts/NAME.json`, newest last. */
export const ROLLOUTS_KEPT = 50;

/**
 * How long node confirmations gather before a progress write. Each write encodes and fsyncs the
 * whole file; written back to back, a rollout to 100 nodes cost dozens of them.
 */
export const PROGRESS_WRITE_DELAY_MS = 200;

/**
 * The rollouts of every bundle, persisted after each change so a restarted server knows what
 * was distributed, what was reloaded and what is still waiting — and never reloads twice.
 */
export class RolloutHistory implements RolloutStorage {
  private readonly byBundle = new Map<string, RolloutData[]>();
  /** Writes of one file are chained, so an older snapshot never lands after a newer one. */
  private writing = Promise.resolve();
  /** Bundles with a progress write queued but not started; later progress joins that write. */
  private readonly progressQueued = new Map<string, NodeJS.Timeout | undefined>();
  /**
   * Each kept rollout's JSON, dropped whenever that rollout is saved again. A snapshot holds up to
   * ROLLOUTS_KEPT rollouts with every node's confirmation; encoding all of them for each write was
   * the server's largest cost during a rollout, though only the current one changes.
   */
  private readonly encoded = new WeakMap<RolloutData, string>();

  private constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  static async open(
    stateDir: string,
    bundleNames: readonly string[],
    log: Logger,
  ): Promise<RolloutHistory> {
    const history = new RolloutHistory(path.join(stateDir, 'rollouts'), log);
    await ensurePrivateDirectory(history.dir);
    for (const bundle of bundleNames) history.byBundle.set(bundle, await history.read(bundle));
    return history;
  }

  latest(bundle: string): RolloutData | undefined {
    return this.byBundle.get(bundle)?.at(-1);
  }

  /** Newest first. */
  list(bundle: string): RolloutData[] {
    return [...(this.byBundle.get(bundle) ?? [])].reverse();
  }

  /** Adds or updates `rollout` (the same object is saved again after every change) and persists. */
  async save(rollout: RolloutData): Promise<void> {
    this.remember(rollout);
    // This snapshot holds every confirmation so far; a progress write still waiting is not needed.
    const waiting = this.progressQueued.get(rollout.bundle);
    if (waiting) {
      clearTimeout(waiting);
      this.progressQueued.delete(rollout.bundle);
    }
    const snapshot = this.snapshot(rollout.bundle);
    this.writing = this.writing.then(() => this.write(rollout, snapshot));
    await this.writing;
  }

  /**
   * Records progress a restarted server can work out again (a node's confirmation: the agents
   * report their files on reconnect) without waiting for the disk. Confirmations share one write
   * made PROGRESS_WRITE_DELAY_MS after the first of them (or the next state change's save), so a
   * rollout to N nodes costs a few writes, not N fsynced snapshots that each hold back the next
   * confirmation (that was most of the propagation time at N=1000 in the benchmark). A server
   * that stops inside that delay loses only what the agents tell it again when they reconnect.
   */
  saveProgress(rollout: RolloutData): void {
    this.remember(rollout);
    if (this.progressQueued.has(rollout.bundle)) return;
    const timer = setTimeout(() => this.chainProgressWrite(rollout), PROGRESS_WRITE_DELAY_MS);
    timer.unref();
    this.progressQueued.set(rollout.bundle, timer);
  }

  async flush(): Promise<void> {
    for (const [bundle, timer] of this.progressQueued) {
      // undefined: the write is already chained and will take the newest snapshot.
      if (!timer) continue;
      clearTimeout(timer);
      const latest = this.latest(bundle);
      if (latest) this.chainProgressWrite(latest);
    }
    await this.writing;
  }

  /** Queues the bundle's progress write behind the writes already chained. */
  private chainProgressWrite(rollout: RolloutData): void {
    this.progressQueued.set(rollout.bundle, undefined);
    this.writing = this.writing.then(() => {
      this.progressQueued.delete(rollout.bundle);
      return this.write(rollout, this.snapshot(rollout.bundle));
    });
  }

  private remember(rollout: RolloutData): void {
    this.encoded.delete(rollout);
    const rollouts = this.byBundle.get(rollout.bundle) ?? [];
    if (!rollouts.includes(rollout)) rollouts.push(rollout);
    const kept = rollouts.slice(-ROLLOUTS_KEPT);
    this.byBundle.set(rollout.bundle, kept);
  }

  /** The bundle's file contents: the same text as JSON.stringify of its kept rollouts. */
  private snapshot(bundle: string): string {
    const parts = (this.byBundle.get(bundle) ?? []).map((rollout) => {
      let text = this.encoded.get(rollout);
      if (text === undefined) {
        text = JSON.stringify(rollout);
        this.encoded.set(rollout, text);
      }
      return text;
    });
    return `[${parts.join(',')}]`;
  }

  private async write(rollout: RolloutData, snapshot: string): Promise<void> {
    try {
      await writeFileAtomic(this.file(rollout.bundle), snapshot, 0o600);
    } catch (error) {
      // The rollout goes on; only its record after a restart is at risk, so say so loudly.
      this.log.error(
        { err: error, bundle: rollout.bundle, version: rollout.version },
        'Rollout history not saved',
      );
    }
  }

  private async read(bundle: string): Promise<RolloutData[]> {
    let text: string;
    try {
      text = await fs.readFile(this.file(bundle), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    try {
      return (JSON.parse(text) as RolloutData[]).map(reviveRollout);
    } catch (error) {
      throw new Error(
        `rollout history ${this.file(bundle)} is unreadable; move it aside to start a fresh history`,
        { cause: error },
      );
    }
  }

  private file(bundle: string): string {
    return path.join(this.dir, `${bundle}.json`);
  }
}

/** JSON turns Dates into strings; bring them back. */
export function reviveRollout(raw: RolloutData): RolloutData {
  const date = (value: Date | string | undefined) =>
    value === undefined ? undefined : new Date(value);
  return {
    ...raw,
    startedAt: new Date(raw.startedAt),
    updatedAt: new Date(raw.updatedAt),
    confirmedAt: Object.fromEntries(
      Object.entries(raw.confirmedAt).map(([node, at]) => [node, new Date(at)]),
    ),
    transitions: raw.transitions.map((transition) => ({
      ...transition,
      at: new Date(transition.at),
    })),
    rollbackOf: raw.rollbackOf ?? 0,
    reloadInFlight: raw.reloadInFlight ?? '',
    reloads: raw.reloads.map((reload) => ({
      ...reload,
      startedAt: new Date(reload.startedAt),
      finishedAt: date(reload.finishedAt),
      proof: reload.proof && {
        ...reload.proof,
        startedAt: new Date(reload.proof.startedAt),
        finishedAt: new Date(reload.proof.finishedAt),
        replicas: reload.proof.replicas.map((replica) => ({
          ...replica,
          notAfter: date(replica.notAfter),
        })),
      },
    })),
  };
}
