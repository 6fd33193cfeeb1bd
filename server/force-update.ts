import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../common/log';
import type { DockerClient, SwarmService, SwarmTask } from './docker-client';

/** Thrown when a reload target could not be carried out; the message is written for the operator. */
export class ReloadError extends Error {
  constructor(
    readonly service: string,
    message: string,
    readonly tasksBefore: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ReloadError';
  }
}

export interface ForceUpdateResult {
  tasksBefore: string[];
  tasksAfter: string[];
  /** Docker's own warnings for the update, if any. */
  dockerWarnings: string[];
}

export interface ForceUpdateOptions {
  timeoutMs: number;
  pollIntervalMs?: number;
  log: Logger;
}

/**
 * Two cheap API reads per poll (inspect the service, list its tasks). At 500 ms the wait added
 * ~0.25–0.45 s on average to every reload beyond Docker's own update (BENCHMARKS.md, swarm); 100 ms
 * keeps that under 0.1 s for ~20 reads a second on the manager while an update runs.
 */
const DEFAULT_POLL_INTERVAL_MS = 100;
const FAILED_UPDATE_STATES = new Set([
  'paused',
  'rollback_started',
  'rollback_paused',
  'rollback_completed',
]);

/** The task IDs of a service that are running and meant to be. */
export function runningTaskIds(tasks: readonly SwarmTask[]): string[] {
  return tasks
    .filter((task) => task.desiredState === 'running' && task.state === 'running')
    .map((task) => task.id)
    .sort();
}

/**
 * Has the update finished? A pure decision: every task the orchestrator wants running is running
 * and none of them is from before the update (so a stale "completed" from an earlier update is not
 * mistaken for ours); or Docker reports a paused / rolled-back update, which is a failure.
 */
export function assessForceUpdate(
  service: Pick<SwarmService, 'updateState' | 'updateMessage'>,
  tasks: readonly SwarmTask[],
  tasksBefore: readonly string[],
):
  | { kind: 'done'; tasksAfter: string[] }
  | { kind: 'failed'; reason: string }
  | { kind: 'waiting'; detail: string } {
  if (FAILED_UPDATE_STATES.has(service.updateState)) {
    const message = service.updateMessage || 'no message from Docker';
    return {
      kind: 'failed',
      reason: `Docker reports the update as ${service.updateState}: ${message}`,
    };
  }
  const desired = tasks.filter((task) => task.desiredState === 'running');
  const before = new Set(tasksBefore);
  const pending = desired.filter((task) => task.state !== 'running' || before.has(task.id));
  if (
    service.updateState !== 'updating' &&
    pending.length === 0 &&
    (desired.length > 0 || tasksBefore.length === 0)
  ) {
    return { kind: 'done', tasksAfter: runningTaskIds(tasks) };
  }
  const states = desired.map(
    (task) => `${task.id.slice(0, 12)}=${task.state}${task.error ? ` (${task.error})` : ''}`,
  );
  return {
    kind: 'waiting',
    detail: `update state "${service.updateState || 'none'}", tasks: ${states.join(', ') || 'none'}`,
  };
}

/**
 * `docker service update --force` through the API: bumps TaskTemplate.ForceUpdate, updates with the
 * version index just read, then waits until the service's tasks are replaced and running.
 */
export async function forceUpdateService(
  docker: DockerClient,
  serviceName: string,
  options: ForceUpdateOptions,
): Promise<ForceUpdateResult> {
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const deadline = Date.now() + options.timeoutMs;

  const service = await docker.inspectService(serviceName);
  const tasksBefore = runningTaskIds(await docker.listServiceTasks(serviceName));
  const spec = structuredClone(service.spec);
  spec.TaskTemplate = { ...spec.TaskTemplate, ForceUpdate: service.forceUpdate + 1 };
  let dockerWarnings: string[];
  try {
    dockerWarnings = await docker.updateService(service.id, service.versionIndex, spec);
  } catch (error) {
    throw new ReloadError(
      serviceName,
      `Docker refused the update of "${serviceName}": ${(error as Error).message}`,
      tasksBefore,
      { cause: error },
    );
  }
  options.log.info(
    { service: serviceName, forceUpdate: service.forceUpdate + 1, tasksBefore: tasksBefore.length },
    'Service update started',
  );

  let lastDetail = '';
  while (Date.now() < deadline) {
    await sleep(pollIntervalMs);
    const [current, tasks] = await Promise.all([
      docker.inspectService(serviceName),
      docker.listServiceTasks(serviceName),
    ]);
    const verdict = assessForceUpdate(current, tasks, tasksBefore);
    if (verdict.kind === 'done')
      return { tasksBefore, tasksAfter: verdict.tasksAfter, dockerWarnings };
    if (verdict.kind === 'failed')
      throw new ReloadError(
        serviceName,
        `update of "${serviceName}" failed: ${verdict.reason}`,
        tasksBefore,
      );
    if (verdict.detail !== lastDetail)
      options.log.debug(
        { service: serviceName, detail: verdict.detail },
        'Waiting for service update',
      );
    lastDetail = verdict.detail;
  }
  throw new ReloadError(
    serviceName,
    `update of "${serviceName}" did not finish within ${options.timeoutMs} ms (${lastDetail})`,
    tasksBefore,
  );
}
