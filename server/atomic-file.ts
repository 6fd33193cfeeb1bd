import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Writes a file so that a crash leaves either the old or the new bytes: temp file in the same
 * folder, write, fsync, rename over the target, fsync the folder. The server's state directory is
 * the only place this is used; the agent has its own two-phase writer.
 */
export async function writeFileAtomic(
  file: string,
  data: Uint8Array | string,
  mode = 0o600,
): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(temp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await fs.rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  await fsyncDirectory(dir);
}

/** Makes a rename or a new entry in `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `dir` (and missing parents) with owner-only access; state holds private keys.
 *
 * Workaround: Node 20's `fs.mkdir(dir, { recursive: true })` never settles for a path below
 * /proc (it keeps retrying ENOENT), so a mistyped `stateDir` hung the server with no output.
 * The folders are made one at a time instead, each failure surfacing with its errno. If Node
 * fixes that, this still behaves the same, only slower by a few stat calls.
 */
export async function ensurePrivateDirectory(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    try {
      if ((await fs.stat(current)).isDirectory()) break;
      throw Object.assign(new Error(`ENOTDIR: ${current} is not a directory`), { code: 'ENOTDIR' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      missing.push(current);
      if (path.dirname(current) === current) break;
    }
  }
  for (const folder of missing.reverse()) {
    try {
      await fs.mkdir(folder, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}
