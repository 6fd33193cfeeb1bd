import type { TestContext } from 'node:test';

import { startCertsyncSwarm, type CertsyncSwarm } from './certsync-swarm.js';
import { createLayout, type E2eLayout } from './layout.js';
import { PhaseTimer } from './phase-timer.js';
import { acquireRunLock } from './run-lock.js';

/** Another run on the same host is waited for this long (see run-lock.ts). */
export const E2E_LOCK_TIMEOUT_MS = 15 * 60_000;

/** One e2e suite's world: the swarm, its folders and the phase timer. */
export interface E2eRun {
  readonly swarm: CertsyncSwarm;
  readonly layout: E2eLayout;
  readonly timer: PhaseTimer;
}

/**
 * Takes the host's e2e lock, brings up the swarm, and registers one `after` hook on `t` that tears
 * it down, prints the phase timings and only then releases the lock (a second hook could release
 * it while the swarm still stands).
 */
export async function startE2eRun(
  t: TestContext,
  projectRoot: string,
  options: { managerCount?: number } = {},
): Promise<E2eRun> {
  const layout = createLayout();
  const timer = new PhaseTimer();
  const keepRunDir = process.env['CERTSYNC_KEEP_TEST_DIRS'] === '1';

  const releaseLock = await timer.time('wait for other e2e runs', () =>
    acquireRunLock(layout.baseDir, E2E_LOCK_TIMEOUT_MS, (pid) =>
      t.diagnostic(`another e2e run (pid ${pid}) is using the host; waiting for it to end`),
    ),
  );
  let started: CertsyncSwarm | undefined;
  t.after(async () => {
    try {
      if (started) await timer.time('teardown', () => started!.stop({ keepRunDir }));
      for (const line of timer.lines()) t.diagnostic(`e2e phase  ${line}`);
      if (keepRunDir) t.diagnostic(`e2e folders kept in ${layout.runDir}`);
    } finally {
      await releaseLock();
    }
  });
  started = await startCertsyncSwarm(layout, projectRoot, timer, options);
  return { swarm: started, layout, timer };
}
