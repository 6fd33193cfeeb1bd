import type Docker from 'dockerode';
import type {
  AgentError,
  SignalledContainer,
  SignalReport,
  SignalRequest,
} from '../common/contract';
import type { Logger } from '../common/log';
import { errnoCode } from './apply-error';

/** The labels Swarm puts on every task container. */
const SERVICE_LABEL = 'com.docker.swarm.service.name';
const TASK_LABEL = 'com.docker.swarm.task.id';

/**
 * The signals the agent sends: the ones a service can be asked to reload or shut down with.
 * SIGKILL, SIGSTOP and the fault signals are left out on purpose, so a typo or a bad server
 * config can never turn a reload into a crash.
 */
export const SIGNAL_NAMES = [
  'SIGHUP',
  'SIGINT',
  'SIGQUIT',
  'SIGTERM',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
] as const;
export type SignalName = (typeof SIGNAL_NAMES)[number];

/** A Docker call that hangs must not hold the agent's queue (and so its writes) forever. */
export const DOCKER_CALL_TIMEOUT_MS = 10_000;

/** The Docker calls the agent makes, and nothing else; tests can put a fake behind it. */
export interface LocalDocker {
  /** The running containers of one Swarm service on this node. */
  listServiceContainers(service: string): Promise<SignalledContainer[]>;
  /** Rejects with Docker's HTTP error (statusCode 404/409 when the container is gone). */
  signalContainer(containerId: string, signal: SignalName): Promise<void>;
}

/**
 * dockerode and what it pulls in (ssh2, protobufjs, …) add about 23 MB to the process's RSS, and
 * most agents never signal anything; so it is loaded on the first Docker call, not at start.
 */
function loadDockerode(): typeof Docker {
  return require('dockerode') as typeof Docker;
}

/** The LocalDocker of a real engine, through the Unix socket at `socketPath`. */
export function createLocalDocker(
  socketPath: string,
  callTimeoutMs = DOCKER_CALL_TIMEOUT_MS,
): LocalDocker {
  let client: Docker | undefined;
  const docker = () => (client ??= new (loadDockerode())({ socketPath }));
  return {
    async listServiceContainers(service) {
      const containers = await docker().listContainers({
        filters: { label: [`${SERVICE_LABEL}=${service}`], status: ['running'] },
        abortSignal: AbortSignal.timeout(callTimeoutMs),
      });
      return containers.map((container) => ({
        containerId: container.Id,
        containerName: (container.Names[0] ?? container.Id).replace(/^\//, ''),
        taskId: container.Labels[TASK_LABEL] ?? '',
      }));
    },
    async signalContainer(containerId, signal) {
      const abortSignal = AbortSignal.timeout(callTimeoutMs);
      await docker().getContainer(containerId).kill({ signal, abortSignal });
    },
  };
}

export interface LocalSignallerOptions {
  readonly docker: LocalDocker;
  /** Only for messages: where the operator has to mount the socket. */
  readonly socketPath: string;
  readonly logger: Logger;
}

/**
 * Answers a SignalRequest: signals every running container of the service on this node and
 * reports which ones. Swarm cannot signal a service, so this is how a `signal` reload happens.
 */
export class LocalSignaller {
  private readonly options: LocalSignallerOptions;
  private readonly log: Logger;

  constructor(options: LocalSignallerOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'signaller' });
  }

  /** Never throws: every failure becomes a SignalReport with ok false. */
  async signal(request: SignalRequest): Promise<SignalReport> {
    const { requestId, service, signal, bundle, version } = request;
    const refusal = checkRequest(request);
    if (refusal !== undefined) {
      return failedReport(requestId, [], refusal);
    }

    let found: SignalledContainer[];
    try {
      found = await this.options.docker.listServiceContainers(service);
    } catch (error) {
      return failedReport(requestId, [], this.dockerFailure(error, `listing ${service}`));
    }

    const signalled: SignalledContainer[] = [];
    const failures: string[] = [];
    for (const container of found) {
      try {
        await this.options.docker.signalContainer(container.containerId, signal as SignalName);
        signalled.push(container);
      } catch (error) {
        if (isGoneError(error)) {
          // Swarm replaced or stopped it between the list and the kill: nothing left to reload.
          this.log.debug({ service, container: container.containerName }, 'Container gone');
          continue;
        }
        failures.push(`${container.containerName} (${describeError(error)})`);
      }
    }

    const containers = signalled.map((container) => container.containerName);
    this.log.info({ service, signal, containers, bundle, version }, 'Service signalled');
    if (failures.length > 0) {
      const message = `${signal} not delivered to ${failures.join(', ')} of service ${service}`;
      this.log.error({ service, signal, failures }, 'Signal not delivered');
      return failedReport(requestId, signalled, { code: 'SIGNAL_FAILED', message, path: '' });
    }
    return { requestId, ok: true, containers: signalled, error: undefined };
  }

  /** A socket that is missing or refuses us gets the fix in the message; HTTP errors do not. */
  private dockerFailure(error: unknown, step: string): AgentError {
    const { socketPath } = this.options;
    if (httpStatus(error) !== undefined) {
      return { code: 'DOCKER_ERROR', message: `${step}: ${describeError(error)}`, path: '' };
    }
    const reason = errnoCode(error) ?? describeError(error);
    const fix =
      "bind-mount the node's Docker socket into the agent " +
      `(-v /var/run/docker.sock:${socketPath}) or point --docker-socket at it`;
    const message = `Docker socket ${socketPath} is not usable (${reason}); ${fix}`;
    this.log.warn({ socketPath, err: error }, 'Docker unavailable');
    return { code: 'DOCKER_UNAVAILABLE', message, path: '' };
  }
}

/** Refuses a request the agent must not act on, before Docker is asked anything. */
function checkRequest(request: SignalRequest): AgentError | undefined {
  if (!(SIGNAL_NAMES as readonly string[]).includes(request.signal)) {
    const shown = JSON.stringify(request.signal);
    const allowed = SIGNAL_NAMES.join(', ');
    const message = `signal ${shown} is not one the agent sends (one of ${allowed})`;
    return { code: 'INVALID_SIGNAL', message, path: '' };
  }
  if (request.service.trim() === '') {
    return { code: 'INVALID_SERVICE', message: 'no service name in the signal request', path: '' };
  }
  return undefined;
}

function failedReport(
  requestId: string,
  containers: SignalledContainer[],
  error: AgentError,
): SignalReport {
  return { requestId, ok: false, containers, error };
}

/**
 * 404: no such container; 409: it is not running (stopped, or restarting, and then it reads the
 * new files as it starts). Either way there is nothing to reload.
 */
function isGoneError(error: unknown): boolean {
  const status = httpStatus(error);
  return status === 404 || status === 409;
}

function httpStatus(error: unknown): number | undefined {
  if (typeof error === 'object' && error !== null && 'statusCode' in error) {
    const status = (error as { statusCode: unknown }).statusCode;
    return typeof status === 'number' ? status : undefined;
  }
  return undefined;
}

function describeError(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return 'Docker did not answer in time';
  }
  return error instanceof Error ? error.message : String(error);
}
