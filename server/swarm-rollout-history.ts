import type { Logger } from '../common/log';
import { ConfigNameConflictError, type DockerConfigClient } from './docker-client';
import type { RolloutData } from './rollout';
import { reviveRollout, ROLLOUTS_KEPT } from './rollout-history';
import type { StateCipher } from './state-cipher';
import type { RolloutStorage } from './state-store';
import { historyObjectName, LABEL, labelNumber, SWARM_OBJECT_MAX_BYTES } from './swarm-objects';

/**
 * The rollouts of every bundle in the swarm's replicated store. Configs cannot change, so every
 * save writes the bundle's whole history (the last 50 rollouts, fewer if they would pass the
 * 500 KiB object limit) as a new config `certsync-BUNDLE-history-NNNNNNNNN` with the next
 * sequence number, then removes the older ones. The newest sequence that opens wins at load.
 * Sealed like versions: the history holds node IDs and fingerprints, no key material, but it is
 * the record a successor server acts on, so it must not be forged.
 */
export class SwarmRolloutHistory implements RolloutStorage {
  private readonly byBundle = new Map<string, RolloutData[]>();
  private readonly sequenceByBundle = new Map<string, number>();
  /** Saves are chained, so an older snapshot never lands after a newer one. */
  private writing = Promise.resolve();
  /** Bundles with a progress snapshot queued and not yet written. */
  private readonly progressQueued = new Set<string>();

  private constructor(
    private readonly docker: DockerConfigClient,
    private readonly cipher: StateCipher,
    private readonly log: Logger,
  ) {}

  static async open(
    docker: DockerConfigClient,
    cipher: StateCipher,
    bundleNames: readonly string[],
    log: Logger,
  ) {
    const history = new SwarmRolloutHistory(docker, cipher, log);
    for (const bundle of bundleNames) await history.load(bundle);
    return history;
  }

  latest(bundle: string): RolloutData | undefined {
    return this.byBundle.get(bundle)?.at(-1);
  }

  list(bundle: string): RolloutData[] {
    return [...(this.byBundle.get(bundle) ?? [])].reverse();
  }

  async save(rollout: RolloutData): Promise<void> {
    const rollouts = this.byBundle.get(rollout.bundle) ?? [];
    if (!rollouts.includes(rollout)) rollouts.push(rollout);
    const kept = rollouts.slice(-ROLLOUTS_KEPT);
    this.byBundle.set(rollout.bundle, kept);
    const snapshot = JSON.stringify(kept);
    this.writing = this.writing.then(async () => {
      try {
        await this.write(rollout.bundle, snapshot);
      } catch (error) {
        // The rollout goes on; only its record for a successor is at risk, so say so loudly.
        this.log.error(
          { err: error, bundle: rollout.bundle, version: rollout.version },
          'Rollout history not saved',
        );
      }
    });
    await this.writing;
  }

  /**
   * Records node confirmations without waiting, several per snapshot: every snapshot is a new
   * swarm config, and a successor learns confirmations again from the agents anyway.
   */
  saveProgress(rollout: RolloutData): void {
    const rollouts = this.byBundle.get(rollout.bundle) ?? [];
    if (!rollouts.includes(rollout)) rollouts.push(rollout);
    this.byBundle.set(rollout.bundle, rollouts.slice(-ROLLOUTS_KEPT));
    if (this.progressQueued.has(rollout.bundle)) return;
    this.progressQueued.add(rollout.bundle);
    this.writing = this.writing.then(async () => {
      this.progressQueued.delete(rollout.bundle);
      try {
        await this.write(rollout.bundle, JSON.stringify(this.byBundle.get(rollout.bundle) ?? []));
      } catch (error) {
        this.log.error(
          { err: error, bundle: rollout.bundle, version: rollout.version },
          'Rollout history not saved',
        );
      }
    });
  }

  /** Progress snapshots are chained at once here, so waiting for the chain is enough. */
  async flush(): Promise<void> {
    await this.writing;
  }

  private async write(bundle: string, snapshot: string): Promise<void> {
    let rollouts = JSON.parse(snapshot) as unknown[];
    for (;;) {
      const sequence = (this.sequenceByBundle.get(bundle) ?? 0) + 1;
      const sealed = this.cipher.seal(
        Buffer.from(JSON.stringify(rollouts)),
        historyAad(bundle, sequence),
      );
      if (sealed.length > SWARM_OBJECT_MAX_BYTES && rollouts.length > 1) {
        rollouts = rollouts.slice(1);
        continue;
      }
      const labels = {
        [LABEL.kind]: 'history',
        [LABEL.bundle]: bundle,
        [LABEL.sequence]: String(sequence),
      };
      try {
        await this.docker.createConfig(historyObjectName(bundle, sequence), labels, sealed);
      } catch (error) {
        // Another server wrote this sequence: step past it (the lease keeps that rare).
        if (error instanceof ConfigNameConflictError) {
          this.sequenceByBundle.set(bundle, sequence);
          continue;
        }
        throw error;
      }
      this.sequenceByBundle.set(bundle, sequence);
      for (const older of (await this.sequences(bundle)).filter((kept) => kept < sequence)) {
        await this.docker.removeConfig(historyObjectName(bundle, older));
      }
      return;
    }
  }

  private async load(bundle: string): Promise<void> {
    const sequences = await this.sequences(bundle);
    this.sequenceByBundle.set(bundle, sequences.at(-1) ?? 0);
    for (const sequence of [...sequences].reverse()) {
      try {
        const config = await this.docker.inspectConfig(historyObjectName(bundle, sequence));
        const text = this.cipher.open(config.data, historyAad(bundle, sequence)).toString('utf8');
        this.byBundle.set(bundle, (JSON.parse(text) as RolloutData[]).map(reviveRollout));
        return;
      } catch (error) {
        this.log.warn(
          { err: error, bundle, sequence },
          'Rollout history object unreadable, trying the one before',
        );
      }
    }
    this.byBundle.set(bundle, []);
  }

  private async sequences(bundle: string): Promise<number[]> {
    const configs = await this.docker.listConfigs({
      [LABEL.kind]: 'history',
      [LABEL.bundle]: bundle,
    });
    return configs
      .map((config) => labelNumber(config.labels, LABEL.sequence))
      .filter((sequence): sequence is number => sequence !== undefined)
      .sort((a, b) => a - b);
  }
}

function historyAad(bundle: string, sequence: number): string {
  return `certsync:history:${bundle}:${sequence}`;
}
