import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchLineage } from '../lineage';
import { summarize } from '../stats';
import { waitForFiles } from '../target-poll';
import { expectedFiles, PEER_DEADLINE_MS, timeDelivery, type PeerResult } from './peer';

export const MD5_POLL_INTERVAL_S = 1;

/**
 * The script certsync replaces: every MD5_POLL_INTERVAL_S seconds, md5sum the live files; when
 * the sum changed, `cp -L` both into every target folder. (Such scripts usually run from cron
 * every minute, which would make them ~60× slower than measured here.)
 */
const SCRIPT = `
live="$1"; shift; interval="$1"; shift; previous=""
while :; do
  current=$(md5sum "$live/fullchain.pem" "$live/privkey.pem")
  if [ "$current" != "$previous" ]; then
    for dir in "$@"; do cp -L "$live/fullchain.pem" "$dir/fullchain.pem"; cp -L "$live/privkey.pem" "$dir/privkey.pem"; done
    previous="$current"
  fi
  sleep "$interval"
done
`;

export async function runMd5Poll(
  workDir: string,
  agents: number,
  renewals: number,
): Promise<PeerResult> {
  const lineage = await BenchLineage.create(path.join(workDir, 'letsencrypt'));
  await lineage.prepare(renewals);
  const targetDirs = Array.from({ length: agents }, (_, index) =>
    path.join(workDir, 'targets', `node-${index + 1}`),
  );
  await Promise.all(targetDirs.map((dir) => fs.mkdir(dir, { recursive: true })));
  const names = { fullchain: 'fullchain.pem', privkey: 'privkey.pem' };
  const child = spawn(
    'bash',
    ['-c', SCRIPT, 'md5-poll', lineage.liveDir, String(MD5_POLL_INTERVAL_S), ...targetDirs],
    { stdio: 'ignore' },
  );
  const samplesMs: number[] = [];
  let missed = 0;
  try {
    await waitForFiles(expectedFiles(targetDirs, lineage, names), 30_000);
    for (let index = 0; index < renewals; index += 1) {
      const { swappedAtMs } = await lineage.renew();
      const files = expectedFiles(targetDirs, lineage, names);
      if (
        !(await timeDelivery(samplesMs, () => waitForFiles(files, PEER_DEADLINE_MS), swappedAtMs))
      )
        missed += 1;
      // Renew at a random phase of the poll loop, as a real renewal would.
      await sleep(Math.random() * MD5_POLL_INTERVAL_S * 1000);
    }
  } finally {
    child.kill('SIGTERM');
  }
  return {
    peer: 'md5-poll',
    agents,
    setup: `bash loop: md5sum every ${MD5_POLL_INTERVAL_S} s, cp -L to each folder`,
    measures: 'last link swap → all N folders hold the new bytes',
    time: summarize(samplesMs),
    missed,
    runs: renewals,
  };
}
