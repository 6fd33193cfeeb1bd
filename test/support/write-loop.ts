import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { createSilentLogger } from '../../common/log';
import { BundleWriter } from '../../agent/writer';

// A child process for the kill test. Like an agent starting up, it first removes the temp files
// a killed predecessor left, applies one bundle and prints "applied 1"; then it waits for a line
// on stdin (the parent looks at the folder meanwhile) and applies the two generations
// alternately as fast as it can, printing "applied N" after each, until it is killed.
// Usage: node write-loop.js DIR

/** The managed files: a real bundle's shape, one of them large enough to take several writes. */
export const LOOP_TARGETS = ['cert.pem', 'chain.pem', 'fullchain.pem', 'private/key.pem'] as const;
const FILE_BYTES: Record<(typeof LOOP_TARGETS)[number], number> = {
  'cert.pem': 2_000,
  'chain.pem': 1_800,
  'fullchain.pem': 256 * 1024,
  'private/key.pem': 1_700,
};

export type LoopLabel = 'A' | 'B';

/** Deterministic content for generation `label`, so the parent can recompute it. */
export function loopContent(label: LoopLabel, target: (typeof LOOP_TARGETS)[number]): Buffer {
  return Buffer.alloc(FILE_BYTES[target], `${label}:${target}:`);
}

function loopPush(label: LoopLabel, version: number) {
  const files = LOOP_TARGETS.map((target) => {
    const content = loopContent(label, target);
    const sha256 = createHash('sha256').update(content).digest('hex');
    return { target, mode: 0o600, sha256, size: content.length, content, owner: undefined };
  });
  return { bundle: 'loop', version, manifestOnly: false, files };
}

async function main(targetDir: string, firstLabel: LoopLabel): Promise<void> {
  const writer = new BundleWriter({ dir: targetDir, logger: createSilentLogger() });
  await writer.removeStaleTempFiles();
  await writer.applyBundle(loopPush(firstLabel, 1));
  process.stdout.write('applied 1\n');
  await new Promise<void>((resolve) =>
    createInterface({ input: process.stdin }).once('line', () => resolve()),
  );
  for (let round = 1; ; round += 1) {
    const label = (round % 2 === 0) === (firstLabel === 'A') ? 'A' : 'B';
    await writer.applyBundle(loopPush(label, round + 1));
    process.stdout.write(`applied ${round + 1}\n`);
  }
}

if (require.main === module) {
  const [dir, firstLabel] = process.argv.slice(2);
  if (!dir || (firstLabel !== 'A' && firstLabel !== 'B'))
    throw new Error('usage: write-loop DIR A|B');
  void main(dir, firstLabel);
}
