import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchLineage } from '../lineage';
import { summarize } from '../stats';
import { waitForFiles } from '../target-poll';
import { expectedFiles, PEER_DEADLINE_MS, timeDelivery, type PeerResult } from './peer';

/**
 * lsyncd + rsync: one `sync{default.rsync}` per target folder, `delay = 0`, watching the live/
 * folder. certbot's live/ files are symlinks, so rsync runs with `copy_links = true` (-L);
 * without it the targets would get dangling relative links.
 */
export async function runLsyncd(
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
  const configFile = path.join(workDir, 'lsyncd.conf.lua');
  const config = [
    `settings { nodaemon = true, logfile = ${JSON.stringify(path.join(workDir, 'lsyncd.log'))}, maxProcesses = ${agents} }`,
    ...targetDirs.map(
      (dir) =>
        `sync { default.rsync, source = ${JSON.stringify(lineage.liveDir + '/')}, target = ${JSON.stringify(dir + '/')}, delay = 0, rsync = { copy_links = true } }`,
    ),
    '',
  ].join('\n');
  await fs.writeFile(configFile, config);
  const names = { fullchain: 'fullchain.pem', privkey: 'privkey.pem' };
  const child = spawn('lsyncd', [configFile], { stdio: 'ignore' });
  const samplesMs: number[] = [];
  let missed = 0;
  try {
    await waitForFiles(expectedFiles(targetDirs, lineage, names), 120_000);
    await sleep(1_000);
    for (let index = 0; index < renewals; index += 1) {
      const { swappedAtMs } = await lineage.renew();
      const files = expectedFiles(targetDirs, lineage, names);
      if (
        !(await timeDelivery(samplesMs, () => waitForFiles(files, PEER_DEADLINE_MS), swappedAtMs))
      )
        missed += 1;
      await sleep(500);
    }
  } finally {
    child.kill('SIGTERM');
  }
  return {
    peer: 'lsyncd+rsync',
    agents,
    setup: `lsyncd, ${agents} × sync{default.rsync, delay=0, copy_links=true}`,
    measures: 'last link swap → all N folders hold the new bytes',
    time: summarize(samplesMs),
    missed,
    runs: renewals,
  };
}
