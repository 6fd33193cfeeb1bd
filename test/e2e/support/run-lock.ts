import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 2_000;

/**
 * One e2e run at a time on a host: the harness uses fixed names (namespaces, bridge, addresses)
 * and removes an earlier run's leftovers before it starts, so a second run started meanwhile
 * would tear the first one down. The lock is a folder holding the owner's pid; a lock whose
 * process is gone (a killed run) is taken over. Resolves with the release function.
 */
export async function acquireRunLock(
  baseDir: string,
  timeoutMs: number,
  onWait: (ownerPid: number) => void,
): Promise<() => Promise<void>> {
  await mkdir(baseDir, { recursive: true });
  const lockDir = path.join(baseDir, 'run.lock');
  const pidFile = path.join(lockDir, 'pid');
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(pidFile, String(process.pid));
      return () => rm(lockDir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
    if (owner > 0 && !isAlive(owner)) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(`another e2e run (pid ${owner || '?'}) still holds ${lockDir}`);
    if (!told && owner > 0) onWait(owner);
    told ||= owner > 0;
    await sleep(POLL_MS);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
