import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/log';
import { writeFileAtomic } from './atomic-file';

/** What `paused.json` in the state folder holds. */
interface PausedFile {
  bundles: string[];
}

/**
 * Which bundles an operator paused (the Pause RPC). A paused bundle's source is not read, and
 * nothing of it is distributed or reloaded until it is resumed. Kept in `STATEDIR/paused.json`
 * so a restarted server keeps a paused bundle paused.
 */
export class PauseRegistry {
  private constructor(
    private readonly file: string,
    private readonly paused: Set<string>,
    private readonly log: Logger,
  ) {}

  static async open(stateDir: string, log: Logger): Promise<PauseRegistry> {
    const file = path.join(stateDir, 'paused.json');
    let bundles: string[] = [];
    try {
      bundles = (JSON.parse(await fs.readFile(file, 'utf8')) as PausedFile).bundles ?? [];
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (bundles.length > 0) log.warn({ bundles }, 'Bundles paused since before the restart');
    return new PauseRegistry(file, new Set(bundles), log);
  }

  isPaused(bundle: string): boolean {
    return this.paused.has(bundle);
  }

  async set(bundle: string, paused: boolean): Promise<void> {
    if (paused) this.paused.add(bundle);
    else this.paused.delete(bundle);
    const content: PausedFile = { bundles: [...this.paused].sort() };
    await writeFileAtomic(this.file, JSON.stringify(content), 0o600);
    this.log.warn({ bundle }, paused ? 'Bundle paused' : 'Bundle resumed');
  }
}
