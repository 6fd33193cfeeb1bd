import { readFileSync } from 'node:fs';
import * as path from 'node:path';

const UNKNOWN_VERSION = '0.0.0-unknown';

/**
 * The certsync version from the nearest package.json above this file. Read at run time rather than
 * imported: the compiled agent lives in dist/agent/ and the source in agent/, at different depths,
 * and the tsconfig does not enable JSON imports.
 */
export function readAgentVersion(startDir: string = __dirname): string {
  for (let dir = startDir; ; dir = path.dirname(dir)) {
    try {
      const manifest: unknown = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
      if (isCertsyncManifest(manifest)) {
        return manifest.version;
      }
    } catch {
      // No package.json here (or an unreadable one); keep walking up.
    }
    if (path.dirname(dir) === dir) {
      return UNKNOWN_VERSION;
    }
  }
}

function isCertsyncManifest(value: unknown): value is { name: string; version: string } {
  if (typeof value !== 'object' || value === null) return false;
  const { name, version } = value as Record<string, unknown>;
  return name === 'certsync' && typeof version === 'string';
}
