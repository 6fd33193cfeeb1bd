import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createSilentLogger } from '../../common/log';
import { newRollout } from '../../server/rollout';
import { RolloutHistory } from '../../server/rollout-history';
import { waitFor } from '../support/processes';

async function openHistory(stateDir: string): Promise<RolloutHistory> {
  return RolloutHistory.open(stateDir, ['web'], createSilentLogger());
}

test('confirmations saved as progress reach the disk without being awaited', async (t) => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-history-'));
  t.after(() => fs.rm(stateDir, { recursive: true, force: true }));
  const history = await openHistory(stateDir);
  const rollout = newRollout('web', 3, 'accepted', new Date('2026-12-01T10:00:00Z'));
  await history.save(rollout);

  for (const node of ['node-1', 'node-2', 'node-3']) {
    rollout.confirmedAt[node] = new Date('2026-12-01T10:00:01Z');
    history.saveProgress(rollout);
  }

  const reread = await waitFor('all three confirmations on disk', async () => {
    const latest = (await openHistory(stateDir)).latest('web');
    return Object.keys(latest?.confirmedAt ?? {}).length === 3 ? latest : undefined;
  });
  assert.equal(reread.version, 3);
  assert.deepEqual(Object.keys(reread.confirmedAt).sort(), ['node-1', 'node-2', 'node-3']);
});

test('a state change saved after queued progress is what the file holds at the end', async (t) => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-history-'));
  t.after(() => fs.rm(stateDir, { recursive: true, force: true }));
  const history = await openHistory(stateDir);
  const rollout = newRollout('web', 4, 'accepted', new Date('2026-12-01T10:00:00Z'));
  await history.save(rollout);

  rollout.confirmedAt['node-1'] = new Date('2026-12-01T10:00:01Z');
  history.saveProgress(rollout);
  rollout.state = 'converged';
  await history.save(rollout);

  const latest = (await openHistory(stateDir)).latest('web');
  assert.equal(latest?.state, 'converged');
  assert.deepEqual(Object.keys(latest?.confirmedAt ?? {}), ['node-1']);
});

test('the file holds every kept rollout as saved last, whichever rollout changed', async (t) => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-history-'));
  t.after(() => fs.rm(stateDir, { recursive: true, force: true }));
  const history = await openHistory(stateDir);
  const older = newRollout('web', 5, 'accepted', new Date('2026-12-01T10:00:00Z'));
  const newer = newRollout('web', 6, 'accepted', new Date('2026-12-01T11:00:00Z'));
  await history.save(older);
  await history.save(newer);

  // An older rollout saved again after a change: its cached encoding must not be reused.
  older.state = 'superseded';
  older.confirmedAt['node-1'] = new Date('2026-12-01T10:00:01Z');
  await history.save(older);
  newer.confirmedAt['node-2'] = new Date('2026-12-01T11:00:01Z');
  await history.save(newer);

  const text = await fs.readFile(path.join(stateDir, 'rollouts', 'web.json'), 'utf8');
  assert.equal(text, JSON.stringify([older, newer]));
  const reread = (await openHistory(stateDir)).list('web');
  assert.deepEqual(
    reread.map((rollout) => [rollout.version, rollout.state, Object.keys(rollout.confirmedAt)]),
    [
      [6, newer.state, ['node-2']],
      [5, 'superseded', ['node-1']],
    ],
  );
});

test('flush writes queued progress at once and resolves when it is on disk', async (t) => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-history-'));
  t.after(() => fs.rm(stateDir, { recursive: true, force: true }));
  const history = await openHistory(stateDir);
  const rollout = newRollout('web', 5, 'accepted', new Date('2026-12-01T10:00:00Z'));
  await history.save(rollout);
  rollout.confirmedAt['node-1'] = new Date('2026-12-01T10:00:01Z');
  history.saveProgress(rollout);

  // No waiting for the progress delay: what flush resolved on is already in the file.
  await history.flush();
  const reread = (await openHistory(stateDir)).latest('web');
  assert.deepEqual(Object.keys(reread?.confirmedAt ?? {}), ['node-1']);
});
