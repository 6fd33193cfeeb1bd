import { readFileSync } from 'node:fs';
import path from 'node:path';

/** certsync's own version, from package.json (found from source and from dist/). */
export const CERTSYNC_VERSION: string = (() => {
  for (const candidate of ['../package.json', '../../package.json']) {
    try {
      const manifest = JSON.parse(readFileSync(path.resolve(__dirname, candidate), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (manifest.name === 'certsync' && manifest.version) return manifest.version;
    } catch {
      // try the next location
    }
  }
  return '0.0.0-unknown';
})();
