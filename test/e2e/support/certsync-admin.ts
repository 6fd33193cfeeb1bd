import type { GetStatusResponse, ListRolloutsResponse } from '../../../common/contract.js';
import type { CommandResult } from './command.js';
import type { DockerEngine } from './docker-engine.js';
import { listServiceTasks, runningTasks } from './swarm.js';

/** certsyncctl's exit code for "answered, but the fleet is not in sync": still a valid status. */
const EXIT_NOT_IN_SYNC = 1;

/**
 * `GetStatus` as certsyncctl prints it with `--json`: timestamps are ISO strings, not Dates.
 * Only the fields the e2e reads are typed beyond the generated response.
 */
export type StatusJson = JsonOf<GetStatusResponse>;
/** `certsyncctl --json history NAME`: the bundle's rollouts, newest first. */
export type HistoryJson = JsonOf<ListRolloutsResponse['rollouts']>;
type JsonOf<T> = T extends Date
  ? string
  : T extends Array<infer Item>
    ? Array<JsonOf<Item>>
    : T extends object
      ? { [K in keyof T]: JsonOf<T[K]> }
      : T;

/**
 * Reads the server's status the way an operator would on a swarm without published ports: runs
 * certsyncctl inside the server task's container (`docker exec` on the manager's engine).
 */
export async function readStatus(
  manager: DockerEngine,
  serverService = 'certsync_server',
): Promise<StatusJson> {
  const result = await runCertsyncctl(manager, ['--json', 'status'], serverService);
  if (result.code !== 0 && result.code !== EXIT_NOT_IN_SYNC) {
    throw new Error(`certsyncctl status exited ${result.code}: ${result.stderr.trim()}`);
  }
  return JSON.parse(result.stdout) as StatusJson;
}

/** `certsyncctl --json history NAME` inside the server's container. */
export async function readHistory(manager: DockerEngine, bundle: string): Promise<HistoryJson> {
  const result = await runCertsyncctl(manager, ['--json', 'history', bundle]);
  if (result.code !== 0) {
    throw new Error(`certsyncctl history exited ${result.code}: ${result.stderr.trim()}`);
  }
  return JSON.parse(result.stdout) as HistoryJson;
}

/**
 * Runs certsyncctl the way an operator would on a swarm without published ports: inside the
 * server task's container (`docker exec` on the manager's engine). Resolves whatever the exit code.
 */
export async function runCertsyncctl(
  manager: DockerEngine,
  args: readonly string[],
  serverService = 'certsync_server',
): Promise<CommandResult> {
  const container = await serverContainer(manager, serverService);
  return manager.docker(
    [
      'exec',
      container,
      'node',
      '/app/dist/ctl/main.js',
      '--server',
      '127.0.0.1:7443',
      // As in README "Deploying on a swarm": the stack mounts the CA and the admin token.
      '--server-name',
      'localhost',
      '--ca-file',
      '/run/secrets/certsync_ca',
      '--token-file',
      '/run/secrets/certsync_admin_token',
      ...args,
    ],
    { allowFailure: true, timeoutMs: 20_000 },
  );
}

async function serverContainer(manager: DockerEngine, service: string): Promise<string> {
  const [task] = runningTasks(await listServiceTasks(manager, service));
  if (!task?.containerId) throw new Error(`${service} has no running task with a container yet`);
  return task.containerId;
}
