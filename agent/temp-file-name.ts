import { randomUUID } from 'node:crypto';

/**
 * Matches the names the writer gives its temp files: `.<name>.certsync-<hex>.tmp`. The leading dot
 * hides them from `ls` and from the services mounting the folder; the fixed infix lets a restarted
 * agent find what a crashed one left behind without touching anybody else's dot-files.
 */
const TEMP_FILE_NAME_PATTERN = /^\..*\.certsync-[0-9a-f]+\.tmp$/;

/**
 * 16 random hex digits. randomUUID draws from a cached block of entropy; randomBytes asks OpenSSL
 * on every call, which showed in the agent's profile (four names per applied bundle).
 */
function randomHex(): string {
  return randomUUID().replaceAll('-', '').slice(0, 16);
}

/** A fresh temp-file name to sit next to `targetName` in the same folder. */
export function tempFileNameFor(targetName: string): string {
  return `.${targetName}.certsync-${randomHex()}.tmp`;
}

/** True for names the writer creates; used to skip them when scanning and watching. */
export function isTempFileName(fileName: string): boolean {
  return TEMP_FILE_NAME_PATTERN.test(fileName);
}
