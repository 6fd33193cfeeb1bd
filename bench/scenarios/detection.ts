import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_SETTLE_MS } from '../../server/config';
import { BenchServer } from '../certsync-server-fixture';
import { BenchLineage } from '../lineage';
import { summarize, type DurationSummary } from '../stats';

export interface DetectionResult {
  /** The settleMs in effect. */
  readonly settleMs: number;
  /** `default`: the config left settleMs out, as deploy/certsync.yml does; `set`: the run set it. */
  readonly settleFrom: 'default' | 'set';
  readonly renewals: number;
  readonly detection: DurationSummary;
}

/**
 * Detection: from the last live/ link swap of a certbot-style renewal to the server's acceptance
 * time of the new version (its own timestamp, read back through GetStatus). No agents connected.
 * `settleMs` undefined runs the server with its default settle windows.
 */
export async function runDetection(
  workDir: string,
  settleMs: number | undefined,
  renewals: number,
): Promise<DetectionResult> {
  const lineage = await BenchLineage.create(path.join(workDir, 'letsencrypt'));
  await lineage.prepare(renewals);
  const server = await BenchServer.start({ workDir, liveDir: lineage.liveDir, settleMs });
  const effectiveSettleMs = settleMs ?? DEFAULT_SETTLE_MS;
  const samplesMs: number[] = [];
  try {
    for (let version = 2; version < renewals + 2; version += 1) {
      const { swappedAtMs } = await lineage.renew();
      const acceptedAtMs = await server.waitForAccepted(version);
      samplesMs.push(acceptedAtMs - swappedAtMs);
      // Let the watcher go quiet so renewals do not merge into one settle window.
      await sleep(effectiveSettleMs + 50);
    }
  } finally {
    await server.stop();
  }
  return {
    settleMs: effectiveSettleMs,
    settleFrom: settleMs === undefined ? 'default' : 'set',
    renewals,
    detection: summarize(samplesMs),
  };
}
