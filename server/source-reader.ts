import { promises as fs, type Stats } from 'node:fs';
import path from 'node:path';
import type { CandidateFile } from './bundle-validator';
import type { BundleConfig } from './config';

/** Why a source file could not be taken in; stable, shown in GetStatus before the message. */
export type SourceReadReason =
  'source-unreadable' | 'not-a-file' | 'file-too-large' | 'link-outside-tree';

/**
 * Thrown when a source file cannot be read, or must not be. During a certbot renewal a link is
 * briefly missing (certbot unlinks, then re-creates it), so ENOENT here is usually transient.
 */
export class SourceReadError extends Error {
  constructor(
    message: string,
    readonly path: string,
    readonly code: string,
    readonly reason: SourceReadReason,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SourceReadError';
  }
}

export interface SourceSnapshot {
  files: CandidateFile[];
  /** Folders the links point into (certbot's archive/NAME), worth watching too. */
  resolvedDirs: string[];
}

export interface SourceReadOptions {
  /** Files larger than this are refused before they are read (config `limits.maxFileBytes`). */
  maxFileBytes: number;
}

/**
 * The folder a bundle's links may lead into. certbot's `live/NAME/x.pem` points at
 * `../../archive/NAME/xN.pem`, so for a `…/live/NAME` source that is the letsencrypt folder two
 * levels up; for any other source it is the source folder. `linkRoot` in the config overrides.
 */
export function linkRootOf(bundle: Pick<BundleConfig, 'source' | 'linkRoot'>): string {
  if (bundle.linkRoot !== undefined) return path.resolve(bundle.linkRoot);
  const source = path.resolve(bundle.source);
  const parent = path.dirname(source);
  return path.basename(parent) === 'live' ? path.dirname(parent) : source;
}

/**
 * Reads every configured file of a bundle, following symlinks to the bytes they point at, but
 * only to bytes inside the link root, of regular files, and no more than `maxFileBytes` each.
 */
export async function readSourceFiles(
  bundle: BundleConfig,
  options: SourceReadOptions,
): Promise<SourceSnapshot> {
  const linkRoot = await realLinkRoot(bundle);
  const files: CandidateFile[] = [];
  const resolvedDirs = new Set<string>();
  for (const file of bundle.files) {
    const filePath = path.join(bundle.source, file.source);
    const { realPath, content } = await readOneFile(filePath, linkRoot, options.maxFileBytes);
    resolvedDirs.add(path.dirname(realPath));
    files.push({
      source: file.source,
      path: realPath,
      target: file.target,
      mode: file.mode,
      owner: file.owner,
      content,
    });
  }
  resolvedDirs.delete(path.resolve(bundle.source));
  return { files, resolvedDirs: [...resolvedDirs] };
}

async function realLinkRoot(bundle: BundleConfig): Promise<string> {
  const root = linkRootOf(bundle);
  try {
    return await fs.realpath(root);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    const message = `cannot resolve the link root ${root} of source ${bundle.source}: ${code}`;
    throw new SourceReadError(message, root, code, 'source-unreadable', { cause: error });
  }
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

async function readOneFile(
  filePath: string,
  linkRoot: string,
  maxFileBytes: number,
): Promise<{ realPath: string; content: Buffer }> {
  let realPath: string;
  try {
    realPath = await fs.realpath(filePath);
  } catch (error) {
    throw unreadable(filePath, error);
  }
  if (!isInside(linkRoot, realPath)) {
    const message =
      `${filePath} resolves to ${realPath}, outside ${linkRoot}; certsync follows links only ` +
      `within that tree (certbot's live/ → archive/). Point the link inside it, or set ` +
      `bundles[].linkRoot if this is intended`;
    throw new SourceReadError(message, filePath, 'ELINKOUTSIDE', 'link-outside-tree');
  }

  // stat before open: opening a FIFO planted in the tree would block the intake.
  // Known limit: a folder on the resolved path swapped for a link between realpath and open
  // could redirect the read; that needs write access to the letsencrypt tree, i.e. root.
  await checkFileStat(filePath, realPath, maxFileBytes, () => fs.stat(realPath));
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(realPath, 'r');
  } catch (error) {
    throw unreadable(filePath, error);
  }
  try {
    const stat = await checkFileStat(filePath, realPath, maxFileBytes, () => handle.stat());
    const { content, complete } = await readAtMost(handle, maxFileBytes + 1);
    if (!complete || content.length > maxFileBytes) {
      throw tooLarge(filePath, Math.max(stat.size, content.length), maxFileBytes);
    }
    return { realPath, content };
  } catch (error) {
    if (error instanceof SourceReadError) throw error;
    throw unreadable(filePath, error);
  } finally {
    await handle.close();
  }
}

/** Refuses anything but a regular file within the size limit, before a byte of it is read. */
async function checkFileStat(
  filePath: string,
  realPath: string,
  maxFileBytes: number,
  statOf: () => Promise<Stats>,
): Promise<Stats> {
  let stat;
  try {
    stat = await statOf();
  } catch (error) {
    throw unreadable(filePath, error);
  }
  if (!stat.isFile()) {
    const message = `${filePath} is not a regular file (resolved to ${realPath})`;
    throw new SourceReadError(message, filePath, 'ENOTFILE', 'not-a-file');
  }
  if (stat.size > maxFileBytes) throw tooLarge(filePath, stat.size, maxFileBytes);
  return stat;
}

function tooLarge(filePath: string, sizeBytes: number, maxFileBytes: number): SourceReadError {
  const message =
    `${filePath} is ${sizeBytes} bytes, over limits.maxFileBytes (${maxFileBytes}); certificate and ` +
    `key files are a few KiB: check that the right file is configured`;
  return new SourceReadError(message, filePath, 'EFBIG', 'file-too-large');
}

const READ_CHUNK_BYTES = 64 * 1024;

/**
 * Reads until end of file or `limitBytes`, whichever comes first; `complete` is false when the
 * limit stopped it. The size from fstat is not trusted: the file may grow while it is read.
 */
async function readAtMost(
  handle: fs.FileHandle,
  limitBytes: number,
): Promise<{ content: Buffer; complete: boolean }> {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < limitBytes) {
    const chunk = Buffer.alloc(Math.min(READ_CHUNK_BYTES, limitBytes - total));
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, total);
    if (bytesRead === 0) return { content: Buffer.concat(chunks, total), complete: true };
    chunks.push(chunk.subarray(0, bytesRead));
    total += bytesRead;
  }
  return { content: Buffer.concat(chunks, total), complete: false };
}

function unreadable(filePath: string, error: unknown): SourceReadError {
  const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
  return new SourceReadError(
    `cannot read ${filePath}: ${code}`,
    filePath,
    code,
    'source-unreadable',
    {
      cause: error,
    },
  );
}
