import assert from 'node:assert/strict';

import { readStatus, type StatusJson } from './certsync-admin.js';
import { VAULT_SERVICE, type CertsyncSwarm } from './certsync-swarm.js';
import {
  inspectServiceUpdate,
  listServiceTasks,
  runningTasks,
  waitUntil,
  WaitAbandonedError,
  type ServiceTask,
} from './swarm.js';
import { probeVault, type VaultProbe } from './vault-probe.js';

/** The bundle of deploy/certsync.yml. */
export const BUNDLE = 'iklim-co';

/** One bundle's rollout as certsyncctl --json prints it. */
export type RolloutJson = NonNullable<StatusJson['bundles'][number]['rollout']>;

export function assertBundleInSync(status: StatusJson, version: number): void {
  const bundle = status.bundles.find((entry) => entry.name === BUNDLE);
  assert.ok(bundle, `bundle ${BUNDLE} in status`);
  assert.equal(bundle.currentVersion, version);
  assert.equal(bundle.nodesExpected, 3);
  assert.equal(bundle.nodesInSync, 3);
  for (const node of bundle.nodes) {
    assert.equal(node.appliedVersion, version, `node ${node.nodeId} applied version`);
    assert.ok(node.inSync, `node ${node.nodeId} in sync`);
  }
}

/**
 * The rollout reloaded Vault exactly once and only after every node had confirmed; Docker's own
 * record agrees (update started inside the reload window, force-update counter = reloads so far),
 * and the tasks certsync reports afterwards are new, running, and one generation per reload.
 */
export async function assertReloadedOnceAfterConvergence(
  swarm: CertsyncSwarm,
  status: StatusJson,
  rollout: RolloutJson,
  reloadsSoFar: number,
) {
  assert.equal(rollout.reloads.length, 1, 'one reload per accepted version');
  const [reload] = rollout.reloads;
  assert.ok(reload?.ok, `reload ok: ${reload?.error}`);
  assert.equal(reload.service, VAULT_SERVICE);
  assert.equal(reload.action, 'force-update');
  const reloadStarted = Date.parse(reload.startedAt ?? '');
  const reloadFinished = Date.parse(reload.finishedAt ?? '');

  const converged = rollout.transitions.find((transition) => transition.to === 'converged');
  assert.ok(converged, 'the rollout converged');
  assert.ok(Date.parse(converged.at ?? '') <= reloadStarted, 'converged before the reload started');
  assert.deepEqual(
    [...rollout.confirmedNodes].sort(),
    swarm.members.map((member) => member.nodeId).sort(),
  );
  const bundle = status.bundles.find((entry) => entry.name === BUNDLE);
  for (const node of bundle?.nodes ?? []) {
    assert.ok(
      Date.parse(node.updatedAt ?? '') <= reloadStarted,
      `node ${node.nodeId} confirmed before the reload`,
    );
  }

  const update = await inspectServiceUpdate(swarm.manager, VAULT_SERVICE);
  assert.equal(
    update.forceUpdate,
    reloadsSoFar,
    'Docker counted one force-update per accepted version',
  );
  assert.equal(update.updateState, 'completed');
  assert.ok(update.startedAt, 'Docker recorded the update start');
  assert.ok(
    update.startedAt.getTime() >= reloadStarted && update.startedAt.getTime() <= reloadFinished,
    'Docker started the update inside the reload window',
  );

  const tasks = await listServiceTasks(swarm.manager, VAULT_SERVICE);
  const running = runningTasks(tasks);
  assert.deepEqual(
    running.map((task) => task.id).sort(),
    [...reload.tasksAfter].sort(),
    'tasksAfter = the running tasks',
  );
  for (const task of running) {
    assert.ok(!reload.tasksBefore.includes(task.id), `task ${task.id} is new`);
    assert.ok(task.createdAt.getTime() >= reloadStarted, `task ${task.id} created by the reload`);
  }
  assertGenerations(tasks, reloadsSoFar + 1);
  for (const task of running) {
    assert.equal(
      await servedFingerprint(swarm, task),
      bundle?.leafFingerprintSha256,
      `Vault task ${task.id} serves the new leaf on 8200`,
    );
  }
  return reload;
}

/**
 * `docker service ps`: every replica slot has exactly one task per generation (the first + one
 * per reload). Known limit: Swarm keeps 5 tasks per slot (`--task-history-limit`), so this count
 * holds for up to 4 reloads; a suite that reloads more often must compare newest tasks instead.
 */
function assertGenerations(tasks: readonly ServiceTask[], generations: number): void {
  const slots = new Map<number, ServiceTask[]>();
  for (const task of tasks) slots.set(task.slot ?? 0, [...(slots.get(task.slot ?? 0) ?? []), task]);
  assert.equal(slots.size, 2, 'two replica slots');
  for (const [slot, history] of slots) {
    assert.equal(
      history.length,
      generations,
      `slot ${slot}: ${history.map((task) => `${task.state}/${task.desiredState}`).join(', ')}`,
    );
    assert.equal(
      history.filter((task) => task.desiredState === 'running').length,
      1,
      `slot ${slot} has one task meant to run`,
    );
  }
}

export function firstTaskPerSlot(tasks: readonly ServiceTask[]): ServiceTask[] {
  const first = new Map<number, ServiceTask>();
  for (const task of tasks) if (!first.has(task.slot ?? 0)) first.set(task.slot ?? 0, task);
  return [...first.values()];
}

/** The leaf a Vault stand-in task serves on 8200, probed inside its container on its node's engine. */
export async function servedFingerprint(
  swarm: CertsyncSwarm,
  task: ServiceTask,
): Promise<string | undefined> {
  const member = swarm.members.find((candidate) => candidate.nodeId === task.nodeId);
  assert.ok(member && task.containerId, `node and container of Vault task ${task.id}`);
  let probe: VaultProbe | undefined;
  // A task reported running may still be reading its files; give it a moment to listen.
  await waitUntil(`Vault task ${task.id} to answer on 8200`, 20_000, async () => {
    probe = await probeVault(member.engine, task.containerId!);
    return true;
  });
  assert.equal(probe?.sealStatus.type, 'shamir', "seal-status has the shape of Vault's");
  assert.equal(probe?.sealStatus.initialized, true);
  return probe?.servedFingerprintSha256;
}

export async function waitForStatus(
  swarm: CertsyncSwarm,
  what: string,
  check: (status: StatusJson) => boolean,
  timeoutMs = 120_000,
): Promise<StatusJson> {
  let last: StatusJson | undefined;
  await waitUntil(
    what,
    timeoutMs,
    async () => {
      last = await readStatus(swarm.manager);
      return check(last);
    },
    () =>
      last
        ? JSON.stringify({ nodes: last.nodes.length, rollout: last.bundles[0]?.rollout?.state })
        : '',
  );
  return last!;
}

export async function waitForRollout(
  swarm: CertsyncSwarm,
  what: string,
  check: (rollout: RolloutJson) => boolean,
  timeoutMs: number,
  bundle = BUNDLE,
): Promise<RolloutJson> {
  let last: RolloutJson | undefined;
  await waitUntil(
    `${bundle}: ${what}`,
    timeoutMs,
    async () => {
      const status = await readStatus(swarm.manager);
      last = status.bundles.find((entry) => entry.name === bundle)?.rollout;
      return last !== undefined && check(last);
    },
    () => (last ? `version ${last.version} ${last.state} ${last.reason}` : ''),
  );
  return last!;
}

export function waitForRolloutDone(
  swarm: CertsyncSwarm,
  version: number,
  bundle = BUNDLE,
): Promise<RolloutJson> {
  return waitForRollout(
    swarm,
    `version ${version} done`,
    (rollout) => {
      if (rollout.version === version && rollout.state === 'failed')
        throw new WaitAbandonedError(`rollout ${version} of ${bundle} failed: ${rollout.reason}`);
      return rollout.version === version && rollout.state === 'done';
    },
    180_000,
    bundle,
  );
}

export function describeRollout(rollout: RolloutJson): string {
  const started = Date.parse(rollout.startedAt ?? '');
  const at = (iso: string | undefined) =>
    `+${((Date.parse(iso ?? '') - started) / 1000).toFixed(1)}s`;
  const transitions = rollout.transitions
    .map((transition) => `${transition.to} ${at(transition.at)}`)
    .join(', ');
  const reloads = rollout.reloads
    .map((reload) => `${reload.service} ${at(reload.startedAt)}..${at(reload.finishedAt)}`)
    .join(', ');
  return `v${rollout.version}: ${transitions}; reload ${reloads}`;
}
