import { constants } from 'node:fs';
import * as path from 'node:path';
import { sha256Hex } from '../common/digest';
import type { FileDigest } from '../common/contract';
import type { Logger } from '../common/log';
import { errnoCode } from './apply-error';
import { lstat, open, readdir } from './local-fs';
import { findSymlinkedFolder, resolveTargetPath } from './target-path';
import { isTempFileName } from './temp-file-name';

/** Bounds on the hello inventory, so a huge or deep folder cannot stall or bloat a reconnect. */
export interface ScanLimits {
  /** How many folder levels below the agent folder are visited (files at that level included). */
  readonly maxDepth: number;
  readonly maxFiles: number;
  /** Larger files are listed with an empty sha256; certificates are never this big. */
  readonly maxHashBytes: number;
}

export const DEFAULT_SCAN_LIMITS: ScanLimits = Object.freeze({
  maxDepth: 4,
  maxFiles: 1000,
  maxHashBytes: 1024 * 1024,
});

/** One regular file met while walking the folder. */
interface WalkedFile {
  readonly relativePath: string;
  readonly absolutePath: string;
}

/**
 * O_NONBLOCK: a FIFO planted where a managed file belongs would otherwise block open() until some
 * writer shows up, and open() runs on the event loop (local-fs.ts), so the whole agent would
 * freeze. It changes nothing for regular files; fstat then tells the FIFO apart.
 */
const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The digest the contract uses for "no such file": empty sha256, zero size and mode. */
export function missingFileDigest(relativePath: string): FileDigest {
  return { path: relativePath, sha256: '', size: 0, mode: 0 };
}

/**
 * Lists every regular file under `dir` with its digest, for the hello. Symlinks are skipped (the
 * writer never writes through one) and so are the writer's own temp files. Sorted by path so two
 * hellos of an unchanged folder are identical.
 */
export async function scanFolder(
  dir: string,
  logger: Logger,
  limits: ScanLimits = DEFAULT_SCAN_LIMITS,
): Promise<FileDigest[]> {
  const digests: FileDigest[] = [];
  for await (const file of walkRegularFiles(dir, limits.maxDepth)) {
    if (digests.length >= limits.maxFiles) {
      logger.warn({ dir, maxFiles: limits.maxFiles }, 'Folder scan truncated');
      break;
    }
    const digest = await digestFile(file.absolutePath, file.relativePath, limits.maxHashBytes);
    if (digest !== undefined) {
      digests.push(digest);
    }
  }
  return digests.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Reads one managed file as it is on disk now. A missing file, a symlink, a non-regular file or a
 * path through a symlinked folder all come back as the "missing" digest: none of them is what the
 * server pushed, and the writer will refuse or replace them when the server pushes again. A file
 * larger than `maxHashBytes` is listed with its size and an empty sha256, unread.
 */
export async function readFileDigest(
  dir: string,
  relativePath: string,
  maxHashBytes = Infinity,
): Promise<FileDigest> {
  const target = resolveTargetPath(dir, relativePath);
  if ((await findSymlinkedFolder(dir, target)) !== undefined) {
    return missingFileDigest(target.relativePath);
  }
  const digest = await digestFile(target.absolutePath, target.relativePath, maxHashBytes);
  return digest ?? missingFileDigest(target.relativePath);
}

/**
 * readFileDigest for several files, in the order given. `expectedSizes` (same order) bounds each
 * read: a file grown past both its expected size and the hello's hash limit differs anyway, and
 * reading a huge one would hold the event loop (file calls run on it) and its bytes in memory. It
 * is listed with its size and an empty sha256, like in the hello.
 */
export async function readFileDigests(
  dir: string,
  relativePaths: readonly string[],
  expectedSizes: readonly number[] = [],
): Promise<FileDigest[]> {
  const digests: FileDigest[] = [];
  for (const [index, relativePath] of relativePaths.entries()) {
    const expected = expectedSizes[index];
    const maxHashBytes =
      expected === undefined ? Infinity : Math.max(expected, DEFAULT_SCAN_LIMITS.maxHashBytes);
    digests.push(await readFileDigest(dir, relativePath, maxHashBytes));
  }
  return digests;
}

/** Relative paths of temp files a crashed writer left behind, found with the scan's depth. */
export async function listTempFiles(dir: string, maxDepth = DEFAULT_SCAN_LIMITS.maxDepth) {
  const found: string[] = [];
  for await (const file of walkRegularFiles(dir, maxDepth, { tempFilesOnly: true })) {
    found.push(file.relativePath);
  }
  return found;
}

/**
 * Digests one file without following a symlink at its final component. Returns undefined when the
 * file vanished or is not a regular file; a file that cannot be read (EACCES) is listed without a
 * sha256, like an oversized one, rather than failing the whole scan.
 */
async function digestFile(
  absolutePath: string,
  relativePath: string,
  maxHashBytes: number,
): Promise<FileDigest | undefined> {
  let handle;
  try {
    handle = await open(absolutePath, READ_NO_FOLLOW);
  } catch (error) {
    const code = errnoCode(error);
    // ENXIO: a socket, which open() refuses; like a FIFO, it is not a file the bundle wrote.
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENXIO') {
      return undefined;
    }
    if (code === 'EACCES' || code === 'EPERM') {
      const stats = await lstat(absolutePath).catch(() => undefined);
      return stats?.isFile() ? describe(relativePath, '', stats.size, stats.mode) : undefined;
    }
    throw error;
  }

  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      return undefined;
    }
    if (stats.size > maxHashBytes) {
      return describe(relativePath, '', stats.size, stats.mode);
    }
    const content = await handle.readFile();
    return describe(relativePath, sha256Hex(content), content.length, stats.mode);
  } finally {
    await handle.close();
  }
}

function describe(relativePath: string, sha256: string, size: number, mode: number): FileDigest {
  return { path: relativePath, sha256, size, mode: mode & 0o7777 };
}

/** Walks `dir` depth-first without following symlinks, yielding regular files. */
async function* walkRegularFiles(
  dir: string,
  maxDepth: number,
  options: { tempFilesOnly?: boolean } = {},
): AsyncGenerator<WalkedFile> {
  const pending: Array<{ folder: string; relativeFolder: string; depth: number }> = [
    { folder: dir, relativeFolder: '', depth: 0 },
  ];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    let entries;
    try {
      entries = await readdir(next.folder);
    } catch (error) {
      // A subfolder removed or locked mid-walk is not worth failing the hello for.
      if (next.depth > 0 && ['ENOENT', 'ENOTDIR', 'EACCES'].includes(errnoCode(error) ?? '')) {
        continue;
      }
      throw error;
    }
    for (const entry of entries) {
      const relativePath = next.relativeFolder
        ? `${next.relativeFolder}/${entry.name}`
        : entry.name;
      const absolutePath = path.join(next.folder, entry.name);
      if (entry.isDirectory() && next.depth < maxDepth) {
        pending.push({ folder: absolutePath, relativeFolder: relativePath, depth: next.depth + 1 });
      } else if (
        entry.isFile() &&
        isTempFileName(entry.name) === (options.tempFilesOnly ?? false)
      ) {
        yield { relativePath, absolutePath };
      }
    }
  }
}
