import path from 'node:path';
import type { BenchLineage } from '../lineage';
import type { ExpectedFile } from '../target-poll';
import type { DurationSummary } from '../stats';

/** One measured peer at one N, compared with certsync's figure from the same run. */
export interface PeerResult {
  readonly peer: string;
  readonly agents: number;
  /** How the peer was set up (interval, forks, rsync flags). */
  readonly setup: string;
  /** What the time covers. */
  readonly measures: string;
  readonly time: DurationSummary;
  /** Renewals the peer never delivered within its deadline (left out of `time`). */
  readonly missed: number;
  readonly runs: number;
  /** certsync's p50 for the same N and the same span, and peer p50 / certsync p50. */
  readonly certsyncP50Ms?: number;
  readonly ratio?: number;
}

/** A peer that was not run, and why. */
export interface SkippedPeer {
  readonly peer: string;
  readonly reason: string;
}

/** The two files every target folder must end up holding, named as `names` says. */
export function expectedFiles(
  targetDirs: readonly string[],
  lineage: BenchLineage,
  names: { fullchain: string; privkey: string },
): ExpectedFile[] {
  return targetDirs.flatMap((dir) => [
    { path: path.join(dir, names.fullchain), bytes: Buffer.from(lineage.current.fullchain) },
    { path: path.join(dir, names.privkey), bytes: Buffer.from(lineage.current.privkey) },
  ]);
}

/** How long a peer may take to deliver one renewal before it counts as missed. */
export const PEER_DEADLINE_MS = 15_000;

/** Times one delivery; a delivery that never completes within the deadline is a miss, not a crash. */
export async function timeDelivery(
  samplesMs: number[],
  deliver: () => Promise<number>,
  swappedAtMs: number,
): Promise<boolean> {
  try {
    samplesMs.push((await deliver()) - swappedAtMs);
    return true;
  } catch {
    return false;
  }
}
