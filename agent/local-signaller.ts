import Docker from 'dockerode';
import type { AgentError, SignalReport, SignalRequest } from '../common/contract';
import type { Logger } from '../common/log';

/** Signals an agent may send; the server's config allows the same list. */
const ALLOWED_SIGNALS = new Set(['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGWINCH']);

/** Docker's label for the Swarm service a container belongs to. */
const SERVICE_LABEL = 'com.docker.swarm.service.name';
const TASK_LABEL = 'com.docker.swarm.task.id';

/**
 * The agent's only module that talks to Docker: it signals the running containers of one Swarm
 * service on this node, through this node's Docker socket (Swarm cannot signal a service).
 */
export class LocalSignaller {
  private readonly docker: Docker;

  constructor(
    private readonly socketPath: string,
    private readonly log: Logger,
  ) {
    this.docker = new Docker({ socketPath });
  }

  /** Never throws: every failure becomes a report with ok false and a precise error. */
  async signal(request: SignalRequest): Promise<SignalReport> {
    const report = (ok: boolean, error?: AgentError, containers: SignalReport['containers'] = []): SignalReport => ({
      requestId: request.requestId,
      ok,
      containers,
      error,
    });
    if (!ALLOWED_SIGNALS.has(request.signal)) {
      return report(false, { code: 'BAD_SIGNAL', message: `signal "${request.signal}" is not one the agent sends`, path: '' });
    }

    let listed: Docker.ContainerInfo[];
    try {
      listed = await this.docker.listContainers({ filters: { label: [`${SERVICE_LABEL}=${request.service}`], status: ['running'] } });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const unavailable = code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES';
      return report(false, {
        code: unavailable ? 'DOCKER_UNAVAILABLE' : 'DOCKER_ERROR',
        message: unavailable
          ? `cannot reach Docker at ${this.socketPath} (${code}); bind-mount the node's Docker socket into the agent`
          : `listing containers of ${request.service} failed: ${(error as Error).message}`,
        path: '',
      });
    }

    const signalled: SignalReport['containers'] = [];
    for (const container of listed) {
      const name = (container.Names[0] ?? container.Id).replace(/^\//, '');
      try {
        await this.docker.getContainer(container.Id).kill({ signal: request.signal });
      } catch (error) {
        const status = (error as { statusCode?: number }).statusCode;
        // Gone or stopped between list and kill: nothing left to reload there.
        if (status === 404 || status === 409) {
          this.log.debug({ service: request.service, container: name, status }, 'Container gone before its signal');
          continue;
        }
        return report(false, { code: 'DOCKER_ERROR', message: `sending ${request.signal} to ${name} failed: ${(error as Error).message}`, path: '' }, signalled);
      }
      signalled.push({ containerId: container.Id, containerName: name, taskId: container.Labels[TASK_LABEL] ?? '' });
    }
    this.log.info(
      { service: request.service, signal: request.signal, containers: signalled.map((entry) => entry.containerName), bundle: request.bundle, version: request.version },
      'Service containers signalled',
    );
    return report(true, undefined, signalled);
  }
}
