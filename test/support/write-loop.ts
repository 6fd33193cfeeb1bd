import { createHash } from 'node:crypto';
import { createSilentLogger } from '../../common/log';
import { BundleWriter } from '../../agent/writer';

// A child process for the kill test: applies two alternating bundles with the agent's real writer
// as fast as it can and prints "applied N" after each, until it is killed.
// Usage: node write-loop.js DIR

const FILE_BYTES = 2 * 1024 * 1024;

/** Deterministic content for generation `label`, so the parent can recompute it. */
export function loopContent(label: string, target: string): Buffer {
  return Buffer.alloc(FILE_BYTES, `${label}:${target}:`);
}

async function main(targetDir: string): Promise<void> {
  const writer = new BundleWriter({ dir: targetDir, logger: createSilentLogger() });
  for (let round = 0; ; round += 1) {
    const label = round % 2 === 0 ? 'A' : 'B';
    const files = ['cert.pem', 'key.pem'].map((target) => {
      const content = loopContent(label, target);
      return { target, mode: 0o600, sha256: createHash('sha256').update(content).digest('hex'), size: content.length, content };
    });
    await writer.applyBundle({ bundle: 'loop', version: round + 1, manifestOnly: false, files });
    process.stdout.write(`applied ${round + 1}\n`);
  }
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: write-loop DIR');
  void main(dir);
}
