import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { sha256Hex } from '../../../common/digest.js';
import type { CertsyncSwarm } from './certsync-swarm.js';
import type { RolloutJson } from './rollout-checks.js';
import type { StandIn } from './stand-ins.js';
import { listServiceTasks, runningTasks, waitUntil, type ServiceTask } from './swarm.js';
import { probeVault, type VaultProbe } from './vault-probe.js';

/**
 * certsync's own record of the proof after the rollout's one reload: ok, one result per replica,
 * each serving `leaf` and left in `sealState` ("unsealed by certsync" when it came back sealed).
 */
export function assertProof(
  rollout: RolloutJson,
  expected: { leaf: string; replicas: number; sealState: string },
): void {
  assert.equal(rollout.reloads.length, 1, `one reload for version ${rollout.version}`);
  const proof = rollout.reloads[0]?.proof;
  assert.ok(proof, 'the reload was proved');
  assert.ok(proof.ok, `proof ok: ${proof.error}`);
  assert.equal(proof.expectedFingerprintSha256, expected.leaf);
  assert.equal(proof.replicas.length, expected.replicas, 'one result per replica');
  for (const replica of proof.replicas) {
    assert.equal(replica.fingerprintSha256, expected.leaf, `${replica.taskId} served the leaf`);
    assert.ok(replica.matches && replica.ok, `${replica.taskId}: ${replica.error}`);
    assert.equal(replica.sealState, expected.sealState, `${replica.taskId} seal state`);
  }
}

/** What one task serves, probed inside its container on its own node (waits for it to listen). */
export async function probeTask(swarm: CertsyncSwarm, task: ServiceTask): Promise<VaultProbe> {
  const member = swarm.members.find((candidate) => candidate.nodeId === task.nodeId);
  assert.ok(member && task.containerId, `node and container of task ${task.id}`);
  let probe: VaultProbe | undefined;
  await waitUntil(`task ${task.id} to answer on 8200`, 20_000, async () => {
    probe = await probeVault(member.engine, task.containerId!);
    return true;
  });
  return probe!;
}

/**
 * Docker's view agrees with certsync's: every running task of the service serves `leaf` and
 * answers Vault's seal-status with `sealed`. Returns the tasks.
 */
export async function assertServes(
  swarm: CertsyncSwarm,
  standIn: StandIn,
  leaf: string | undefined,
  sealed = false,
): Promise<ServiceTask[]> {
  const running = runningTasks(await listServiceTasks(swarm.manager, standIn.service));
  assert.equal(running.length, standIn.replicas, `${standIn.service} running replicas`);
  for (const task of running) {
    const probe = await probeTask(swarm, task);
    assert.equal(probe.servedFingerprintSha256, leaf, `${standIn.service} ${task.id} serves`);
    assert.equal(probe.sealStatus.sealed, sealed, `${standIn.service} ${task.id} sealed`);
  }
  return running;
}

/** Task ID → when its container last started, from the engine of the node it runs on. */
export async function containerStarts(
  swarm: CertsyncSwarm,
  tasks: readonly ServiceTask[],
): Promise<Map<string, string>> {
  const starts = new Map<string, string>();
  for (const task of tasks) {
    const member = swarm.members.find((candidate) => candidate.nodeId === task.nodeId);
    assert.ok(member && task.containerId, `node and container of task ${task.id}`);
    const [container] = await member.engine.dockerJson<Array<{ State: { StartedAt: string } }>>([
      'inspect',
      '--type=container',
      task.containerId,
    ]);
    starts.set(task.id, container?.State.StartedAt ?? '');
  }
  return starts;
}

/**
 * Every node's folder holds the stand-in's two files with exactly the bytes of the given certbot
 * files (paths relative to the lineage's archive/ folder, e.g. `fullchain2.pem`), modes 0644/0600.
 */
export async function assertEveryNodeHolds(
  swarm: CertsyncSwarm,
  standIn: StandIn,
  archived: { cert: string; key: string },
): Promise<void> {
  const archiveDir = path.join(swarm.certbot.configDir, 'archive', standIn.lineage);
  const files = [
    { source: archived.cert, target: standIn.certTarget, mode: 0o644 },
    { source: archived.key, target: standIn.keyTarget, mode: 0o600 },
  ];
  for (const member of swarm.members) {
    for (const { source, target, mode } of files) {
      const written = path.join(swarm.layout.nodeSslDir(member.spec.index), target);
      assert.equal(
        sha256Hex(await readFile(written)),
        sha256Hex(await readFile(path.join(archiveDir, source))),
        `${member.spec.hostname}/${target} = archive/${standIn.lineage}/${source}`,
      );
      assert.equal((await stat(written)).mode & 0o777, mode, `${target} mode`);
    }
  }
}
