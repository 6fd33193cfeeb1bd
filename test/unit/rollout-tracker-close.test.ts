import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { RolloutTracker, type RolloutTrackerOptions } from '../../server/rollout-tracker';
import type { RolloutStorage } from '../../server/state-store';

// A stopping server waits for its last history write, but not forever: a state store that hangs
// (the Docker API of a swarm store) must not keep the process from exiting.

function trackerWith(history: RolloutStorage, lines: string[]): RolloutTracker {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return new RolloutTracker({
    bundles: [],
    history,
    log: pino(sink),
    historyFlushTimeoutMs: 50,
  } as unknown as RolloutTrackerOptions);
}

const emptyHistory = (flush: () => Promise<void>): RolloutStorage => ({
  latest: () => undefined,
  list: () => [],
  save: async () => undefined,
  saveProgress: () => undefined,
  flush,
});

test('close waits for the history to be written', async () => {
  const lines: string[] = [];
  let written = false;
  const tracker = trackerWith(
    emptyHistory(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      written = true;
    }),
    lines,
  );
  await tracker.close();
  assert.equal(written, true);
  assert.deepEqual(lines, []);
});

test('close gives up on a history write that hangs, and says so', async () => {
  const lines: string[] = [];
  const tracker = trackerWith(
    emptyHistory(() => new Promise<void>(() => undefined)),
    lines,
  );
  await tracker.close();
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!) as { level: number; msg: string; timeoutMs: number };
  assert.equal(entry.level, 50);
  assert.match(entry.msg, /Rollout history still being written at shutdown/);
  assert.equal(entry.timeoutMs, 50);
});
