import { sha256Hex } from '../common/digest';
import type { BundleFile, FileOwner } from '../common/contract';
import { ApplyError } from './apply-error';
import { resolveTargetPath, type TargetPath } from './target-path';

/** One bundle file after the checks that need no disk: path resolved, mode and bytes verified. */
export interface CheckedFile {
  readonly target: TargetPath;
  readonly file: BundleFile;
  /** Permission bits to set, masked to 0o7777. */
  readonly mode: number;
  /** Numeric owner to set; undefined keeps the owner of the file being replaced. */
  readonly owner: FileOwner | undefined;
}

/**
 * Checks a push before anything touches disk: every target resolves inside `dir` and appears
 * once, carries a mode, and (for a full push) its content has the pushed size and sha256. A
 * manifest-only push is checked with `withContent` false. Throws ApplyError.
 */
export function checkBundleFiles(
  dir: string,
  files: readonly BundleFile[],
  { withContent }: { withContent: boolean } = { withContent: true },
): CheckedFile[] {
  const seen = new Set<string>();
  return files.map((file) => {
    const target = resolveTargetPath(dir, file.target);
    if (seen.has(target.relativePath)) {
      const message = `${target.relativePath} appears twice in the bundle`;
      throw new ApplyError('DUPLICATE_TARGET', message, target.relativePath);
    }
    seen.add(target.relativePath);

    const mode = file.mode & 0o7777;
    if (mode === 0) {
      const message = `${target.relativePath} was pushed with mode 0; the server must set a mode`;
      throw new ApplyError('INVALID_MODE', message, target.relativePath);
    }
    if (!withContent) {
      return { target, file, mode, owner: file.owner };
    }
    const actualSha256 = sha256Hex(file.content);
    if (file.content.length !== file.size || actualSha256 !== file.sha256.toLowerCase()) {
      const expected = `${file.size} bytes sha256 ${file.sha256}`;
      const actual = `${file.content.length} bytes sha256 ${actualSha256}`;
      const message = `pushed content of ${target.relativePath} does not match its manifest (expected ${expected}, got ${actual})`;
      throw new ApplyError('DIGEST_MISMATCH', message, target.relativePath);
    }
    return { target, file, mode, owner: file.owner };
  });
}
