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
import { loopContent } from '../support/write-loop';

// The agent's writer in a real process, killed with SIGKILL at random moments while it rewrites
// two 2 MiB files: every file must hold exactly the old or the new bytes, never a mix, and the
// next start removes whatever temp files the killed process left.

const ROUNDS = 12;
const LOOP_SCRIPT = path.join(__dirname, '..', 'support', 'write-loop.js');
const expected = (label: string, target: string) => sha256Hex(loopContent(label, target));

test('a writer killed mid-write leaves each file whole: old bytes or new', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-kill-'));
  const seen = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round += 1) {
    const child = spawn(process.execPath, [LOOP_SCRIPT, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    while (!output.includes('applied 1')) await sleep(5);
    await sleep(5 + Math.floor(Math.random() * 60));
    child.kill('SIGKILL');
    await exited;

    for (const target of ['cert.pem', 'key.pem']) {
      const digest = sha256Hex(await fs.readFile(path.join(dir, target)));
      const label = digest === expected('A', target) ? 'A' : digest === expected('B', target) ? 'B' : undefined;
      assert.ok(label, `round ${round}: ${target} holds neither the old nor the new bytes`);
      seen.set(label, (seen.get(label) ?? 0) + 1);
    }
  }
  // Left-over temp files are cleaned by the next start, and nothing else is touched.
  const writer = new BundleWriter({ dir, logger: createSilentLogger() });
  await writer.removeStaleTempFiles();
  assert.deepEqual((await fs.readdir(dir)).sort(), ['cert.pem', 'key.pem']);
  t.diagnostic(`files found after the kills: ${[...seen].map(([label, count]) => `${count}× ${label}`).join(', ')}`);
  await fs.rm(dir, { recursive: true, force: true });
});
