import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** One file a peer tool must deliver, and the bytes it must end up holding. */
export interface ExpectedFile {
  readonly path: string;
  readonly bytes: Buffer;
}

/**
 * Polls every `intervalMs` until every file holds its expected bytes; returns the wall-clock time
 * the last one was seen right. Files already right are not read again.
 */
export async function waitForFiles(
  files: readonly ExpectedFile[],
  timeoutMs: number,
  intervalMs = 5,
): Promise<number> {
  const pending = new Set(files);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const file of [...pending]) {
      const bytes = await readFile(file.path).catch(() => undefined);
      if (bytes?.equals(file.bytes)) pending.delete(file);
    }
    if (pending.size === 0) return Date.now();
    if (Date.now() > deadline) {
      throw new Error(
        `${pending.size} of ${files.length} files still old after ${timeoutMs} ms (first: ${[...pending][0]?.path})`,
      );
    }
    await sleep(intervalMs);
  }
}
