import { createHash } from 'node:crypto';

/** Lower-case hex SHA-256 of some bytes; the one digest certsync uses everywhere. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A stable digest over a set of named digests, used to tell whether two bundles are identical. */
export function combinedDigest(entries: ReadonlyArray<{ name: string; sha256: string }>): string {
  const lines = [...entries]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((e) => `${e.name}\0${e.sha256}\n`);
  return sha256Hex(lines.join(''));
}
