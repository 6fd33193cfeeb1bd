import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CandidateFile } from './bundle-validator';
import type { BundleConfig } from './config';

/** Largest source file certsync reads; certificates and keys are a few KiB. */
export const MAX_SOURCE_FILE_BYTES = 1024 * 1024;

/**
 * Thrown when a source file cannot be read. During a certbot renewal a link is briefly missing
 * (certbot unlinks, then re-creates it), so ENOENT here is usually transient.
 */
export class SourceReadError extends Error {
  constructor(
    message: string,
    readonly path: string,
    readonly code: string,
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

/** Reads every configured file of a bundle, following symlinks to the bytes they point at. */
export async function readSourceFiles(bundle: BundleConfig): Promise<SourceSnapshot> {
  const files: CandidateFile[] = [];
  const resolvedDirs = new Set<string>();
  for (const file of bundle.files) {
    const filePath = path.join(bundle.source, file.source);
    let realPath: string;
    let content: Buffer;
    try {
      realPath = await fs.realpath(filePath);
      const stat = await fs.stat(realPath);
      if (!stat.isFile()) {
        throw new SourceReadError(`${filePath} is not a regular file`, filePath, 'ENOTFILE');
      }
      if (stat.size > MAX_SOURCE_FILE_BYTES) {
        throw new SourceReadError(
          `${filePath} is ${stat.size} bytes; certsync reads at most ${MAX_SOURCE_FILE_BYTES}`,
          filePath,
          'EFBIG',
        );
      }
      content = await fs.readFile(realPath);
    } catch (error) {
      if (error instanceof SourceReadError) throw error;
      const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
      throw new SourceReadError(`cannot read ${filePath}: ${code}`, filePath, code, { cause: error });
    }
    resolvedDirs.add(path.dirname(realPath));
    files.push({ source: file.source, path: realPath, target: file.target, mode: file.mode, owner: file.owner, content });
  }
  resolvedDirs.delete(path.resolve(bundle.source));
  return { files, resolvedDirs: [...resolvedDirs] };
}
