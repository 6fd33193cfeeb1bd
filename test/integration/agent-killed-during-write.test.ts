import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256Hex } from '../../common/digest';
import { BundleWriter } from '../../agent/writer';
import { createSilentLogger } from '../../common/log';
import { LOOP_TARGETS, loopContent, type LoopLabel } from '../support/write-loop';

// The agent's writer in a real process, killed with SIGKILL at random moments while it rewrites a
// four-file bundle (one file 256 KiB), a few hundred times: after every kill each managed file
// must hold exactly the old or the new bytes (SHA-256), never a torn or foreign file; and the
// next start, like an agent's, removes the temp files the killed one left before its first apply.

const KILLS = Number(process.env['CERTSYNC_KILL_ROUNDS'] ?? 300);
/** The kill lands this long after the loop started writing: spans several applies. */
const MAX_KILL_DELAY_MS = 25;
const LOOP_SCRIPT = path.join(__dirname, '..', 'support', 'write-loop.js');
const DIGESTS = new Map(
  (['A', 'B'] as const).flatMap((label) =>
    LOOP_TARGETS.map(
      (target) => [`${target}:${sha256Hex(loopContent(label, target))}`, label] as const,
    ),
  ),
);

/** Temp files and backup links (the writer's `.NAME.certsync-HEX.tmp`) anywhere in the folder. */
async function leftovers(dir: string): Promise<string[]> {
  const entries = (await fs.readdir(dir, { recursive: true })).map(String);
  return entries.filter((entry) => entry.includes('.certsync-'));
}

/** The generation each managed file holds, or `torn` (missing / unreadable) or `mismatched`. */
async function generations(dir: string): Promise<Array<LoopLabel | 'torn' | 'mismatched'>> {
  return Promise.all(
    LOOP_TARGETS.map(async (target) => {
      const bytes = await fs.readFile(path.join(dir, target)).catch(() => undefined);
      if (bytes === undefined) return 'torn';
      return DIGESTS.get(`${target}:${sha256Hex(bytes)}`) ?? 'mismatched';
    }),
  );
}

test('a writer killed at random points leaves every file whole: old bytes or new', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-kill-'));
  const counts = {
    kills: 0,
    torn: 0,
    mismatched: 0,
    mixedBundles: 0,
    leftoversAfterApply: 0,
    killsMidWrite: 0,
  };
  const problems: string[] = [];

  for (let round = 0; round < KILLS; round += 1) {
    const first: LoopLabel = Math.random() < 0.5 ? 'A' : 'B';
    const child = spawn(process.execPath, [LOOP_SCRIPT, dir, first], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    while (!output.includes('applied 1') && child.exitCode === null) await sleep(2);
    assert.ok(
      output.includes('applied 1'),
      `round ${round}: the loop exited before its first apply`,
    );

    // The first apply after a restart: every file is the new generation and no temp file is left.
    const stale = await leftovers(dir);
    counts.leftoversAfterApply += stale.length;
    if (stale.length > 0)
      problems.push(`round ${round}: left after a successful apply: ${stale.join(', ')}`);
    assert.deepEqual(
      await generations(dir),
      LOOP_TARGETS.map(() => first),
      `round ${round}: first apply`,
    );

    child.stdin.write('go\n');
    await sleep(Math.random() * MAX_KILL_DELAY_MS);
    child.kill('SIGKILL');
    await exited;
    counts.kills += 1;

    const found = await generations(dir);
    for (const [index, label] of found.entries()) {
      if (label === 'torn' || label === 'mismatched') {
        counts[label] += 1;
        problems.push(`round ${round}: ${LOOP_TARGETS[index]} is ${label}`);
      }
    }
    if (new Set(found).size > 1) counts.mixedBundles += 1;
    if ((await leftovers(dir)).length > 0) counts.killsMidWrite += 1;
  }

  // A last start cleans up after the last kill, and nothing else is in the folder.
  const writer = new BundleWriter({ dir, logger: createSilentLogger() });
  await writer.removeStaleTempFiles();
  assert.deepEqual(await leftovers(dir), []);
  assert.deepEqual(
    (await fs.readdir(dir, { recursive: true })).map(String).sort(),
    [...LOOP_TARGETS, 'private'].sort(),
  );

  t.diagnostic(
    `kills=${counts.kills} torn=${counts.torn} mismatched=${counts.mismatched} ` +
      `leftoversAfterApply=${counts.leftoversAfterApply} killsMidWrite=${counts.killsMidWrite} (temp files found) ` +
      `mixedBundles=${counts.mixedBundles} (killed between two renames of phase 2: each file whole)`,
  );
  assert.deepEqual(problems, []);
  assert.equal(counts.kills, KILLS);
  await fs.rm(dir, { recursive: true, force: true });
});
