import { setTimeout as sleep } from 'node:timers/promises';

import type { DockerEngine } from './docker-engine.js';
import type { NodeSpec } from './layout.js';

/** A swarm node as the tests see it: its engine (host socket), spec and swarm node ID. */
export interface SwarmMember {
  readonly engine: DockerEngine;
  readonly spec: NodeSpec;
  readonly nodeId: string;
}

/** One task of a service, from `docker inspect` of its task IDs. */
export interface ServiceTask {
  readonly id: string;
  readonly nodeId: string;
  readonly slot: number | undefined;
  readonly desiredState: string;
  readonly state: string;
  readonly containerId: string | undefined;
  readonly createdAt: Date;
  readonly error: string;
}

const POLL_INTERVAL_MS = 500;

/** `swarm init` on the first member, `swarm join` on the rest; resolves once all are ready. */
export async function createSwarm(
  members: ReadonlyArray<{ engine: DockerEngine; spec: NodeSpec }>,
  timeoutMs = 60_000,
): Promise<SwarmMember[]> {
  const [manager, ...workers] = members;
  if (!manager) throw new Error('a swarm needs at least one node');
  await manager.engine.docker(['swarm', 'init', `--advertise-addr=${manager.spec.address}`]);
  const tokens = {
    worker: (await manager.engine.docker(['swarm', 'join-token', '-q', 'worker'])).stdout.trim(),
    manager: (await manager.engine.docker(['swarm', 'join-token', '-q', 'manager'])).stdout.trim(),
  };
  // Managers join one at a time: Raft adds one member per configuration change.
  for (const { engine, spec } of workers.filter((member) => member.spec.role === 'manager'))
    await engine.docker([
      'swarm',
      'join',
      `--advertise-addr=${spec.address}`,
      `--token=${tokens.manager}`,
      `${manager.spec.address}:2377`,
    ]);
  await Promise.all(
    workers
      .filter((member) => member.spec.role !== 'manager')
      .map(({ engine, spec }) =>
        engine.docker([
          'swarm',
          'join',
          `--advertise-addr=${spec.address}`,
          `--token=${tokens.worker}`,
          `${manager.spec.address}:2377`,
        ]),
      ),
  );

  const joined: SwarmMember[] = [];
  for (const member of members) {
    const nodeId = (
      await member.engine.docker(['info', '--format', '{{.Swarm.NodeID}}'])
    ).stdout.trim();
    joined.push({ ...member, nodeId });
  }
  await waitUntil('every node to be ready', timeoutMs, async () => {
    const { stdout } = await manager.engine.docker([
      'node',
      'ls',
      '--format',
      '{{.ID}} {{.Status}}',
    ]);
    const ready = stdout.split('\n').filter((line) => line.endsWith(' Ready')).length;
    return ready === members.length;
  });
  return joined;
}

/** The tasks of `service` (history included), oldest first. */
export async function listServiceTasks(
  manager: DockerEngine,
  service: string,
): Promise<ServiceTask[]> {
  const ids = (await manager.docker(['service', 'ps', '-q', '--no-trunc', service])).stdout
    .split('\n')
    .filter(Boolean);
  if (ids.length === 0) return [];
  const raw = await manager.dockerJson<RawTask[]>(['inspect', '--type=task', ...ids]);
  return raw
    .map((task) => ({
      id: task.ID,
      nodeId: task.NodeID,
      slot: task.Slot,
      desiredState: task.DesiredState,
      state: task.Status.State,
      containerId: task.Status.ContainerStatus?.ContainerID,
      createdAt: new Date(task.CreatedAt),
      error: task.Status.Err ?? '',
    }))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
}

/** The tasks meant to run and running. */
export function runningTasks(tasks: readonly ServiceTask[]): ServiceTask[] {
  return tasks.filter((task) => task.desiredState === 'running' && task.state === 'running');
}

/** Waits until `service` has exactly `count` running tasks and nothing else meant to run. */
export async function waitForRunningTasks(
  manager: DockerEngine,
  service: string,
  count: number,
  timeoutMs = 120_000,
): Promise<ServiceTask[]> {
  let running: ServiceTask[] = [];
  let lastSeen = '';
  await waitUntil(
    `${count} running task(s) of ${service}`,
    timeoutMs,
    async () => {
      const tasks = await listServiceTasks(manager, service);
      const desired = tasks.filter((task) => task.desiredState === 'running');
      running = runningTasks(tasks);
      lastSeen = desired
        .map(
          (task) =>
            `${task.id.slice(0, 10)}@${task.nodeId.slice(0, 10)}=${task.state}${task.error ? ` (${task.error})` : ''}`,
        )
        .join(', ');
      return running.length === count && desired.length === count;
    },
    () => lastSeen,
  );
  return running;
}

/** Docker's own record of a service's last update, and its force-update counter. */
export async function inspectServiceUpdate(
  manager: DockerEngine,
  service: string,
): Promise<{ forceUpdate: number; updateState: string; startedAt?: Date; completedAt?: Date }> {
  const [raw] = await manager.dockerJson<RawService[]>(['service', 'inspect', service]);
  if (!raw) throw new Error(`service ${service} not found`);
  const status = raw.UpdateStatus;
  return {
    forceUpdate: raw.Spec.TaskTemplate.ForceUpdate ?? 0,
    updateState: status?.State ?? '',
    startedAt: status?.StartedAt ? new Date(status.StartedAt) : undefined,
    completedAt: status?.CompletedAt ? new Date(status.CompletedAt) : undefined,
  };
}

/** Thrown from a `waitUntil` check when waiting longer cannot help (e.g. the rollout failed). */
export class WaitAbandonedError extends Error {
  override readonly name = 'WaitAbandonedError';
}

/**
 * Polls `check` until it returns true; the timeout error shows `describe()` (the last state seen).
 * A check that throws is retried, except with a WaitAbandonedError, which ends the wait at once.
 */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  describe: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
      lastError = undefined;
    } catch (error) {
      if (error instanceof WaitAbandonedError) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      const seen = describe();
      const detail = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${seen ? `; last seen: ${seen}` : ''}${detail}`,
      );
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

interface RawTask {
  ID: string;
  NodeID: string;
  Slot?: number;
  DesiredState: string;
  CreatedAt: string;
  Status: { State: string; Err?: string; ContainerStatus?: { ContainerID?: string } };
}

interface RawService {
  Spec: { TaskTemplate: { ForceUpdate?: number } };
  UpdateStatus?: { State?: string; StartedAt?: string; CompletedAt?: string };
}
