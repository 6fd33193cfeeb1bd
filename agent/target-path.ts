import * as path from 'node:path';
import { ApplyError, errnoCode } from './apply-error';
import { lstat } from './local-fs';

/** A bundle target resolved against the agent's folder. */
export interface TargetPath {
  /** Canonical posix path relative to the folder, as reported back to the server. */
  readonly relativePath: string;
  readonly absolutePath: string;
  /** Folder segments between the agent's folder and the file, outermost first. */
  readonly folderSegments: readonly string[];
  readonly fileName: string;
}

/**
 * Resolves a target sent by the server to a path inside `dir`, or throws PATH_ESCAPE.
 *
 * Any `..` segment is refused, even one that would stay inside the folder: a bundle has no reason
 * to use one, and refusing them all keeps the relative path canonical, which the drift watcher
 * relies on when it compares paths from file events with paths from the manifest.
 */
export function resolveTargetPath(dir: string, target: string): TargetPath {
  if (target.length === 0) {
    throw pathEscape(target, 'is empty');
  }
  if (target.includes('\0')) {
    throw pathEscape(target, 'contains a NUL byte');
  }
  if (path.posix.isAbsolute(target) || path.win32.isAbsolute(target)) {
    throw pathEscape(target, 'is absolute; targets must be relative to the agent folder');
  }
  const rawSegments = target.split('/');
  if (rawSegments.includes('..')) {
    throw pathEscape(target, 'contains a ".." segment');
  }
  const lastRawSegment = rawSegments.at(-1);
  const segments = rawSegments.filter((segment) => segment !== '' && segment !== '.');
  const fileName = segments.at(-1);
  if (fileName === undefined || lastRawSegment === '' || lastRawSegment === '.') {
    throw pathEscape(target, 'does not name a file');
  }

  const relativePath = segments.join('/');
  const absolutePath = path.join(dir, ...segments);
  // Belt and braces: after the checks above this cannot fail, but it is the invariant that matters.
  const fromDir = path.relative(dir, absolutePath);
  if (fromDir === '' || fromDir.split(path.sep)[0] === '..' || path.isAbsolute(fromDir)) {
    throw pathEscape(target, 'resolves outside the agent folder');
  }
  return { relativePath, absolutePath, folderSegments: segments.slice(0, -1), fileName };
}

function pathEscape(target: string, reason: string): ApplyError {
  return new ApplyError('PATH_ESCAPE', `target ${JSON.stringify(target)} ${reason}`, target);
}

/**
 * Returns the first folder between `dir` and the target that is a symbolic link, relative to
 * `dir`, or undefined. A symlinked folder would let a write (or a read) land outside the agent's
 * folder even though the target path itself looks clean. Missing folders end the walk: nothing
 * below them can be a link yet.
 */
export async function findSymlinkedFolder(
  dir: string,
  target: TargetPath,
): Promise<string | undefined> {
  for (let depth = 1; depth <= target.folderSegments.length; depth += 1) {
    const segments = target.folderSegments.slice(0, depth);
    try {
      const stats = await lstat(path.join(dir, ...segments));
      if (stats.isSymbolicLink()) {
        return segments.join('/');
      }
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') {
        return undefined;
      }
      throw error;
    }
  }
  return undefined;
}
