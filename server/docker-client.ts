import type Docker from 'dockerode';

/** A swarm node as certsync needs it: identity, health and whether it takes tasks. */
export interface SwarmNode {
  id: string;
  hostname: string;
  role: string;
  /** `ready`, `down`, `unknown`, `disconnected` (Docker's node status). */
  state: string;
  /** `active`, `pause` or `drain`. */
  availability: string;
}

/** One task of a service, as listed by the Docker API. */
export interface SwarmTask {
  id: string;
  nodeId: string;
  /** What the orchestrator wants (`running`, `shutdown`, …). */
  desiredState: string;
  /** What the task is (`new`, `preparing`, `running`, `failed`, …). */
  state: string;
  error: string;
  createdAt: string;
  /** Addresses of the task on its networks (without prefix length), for probing. */
  addresses: string[];
}

/** A bind or volume mount of a service's containers. */
export interface ServiceMount {
  type: string;
  source: string;
  target: string;
}

/** A service's spec and update state, with the raw spec kept for updating it unchanged. */
export interface SwarmService {
  id: string;
  name: string;
  versionIndex: number;
  forceUpdate: number;
  mounts: ServiceMount[];
  /** Docker's update status: `updating`, `paused`, `completed`, `rollback_*`; empty before any update. */
  updateState: string;
  updateMessage: string;
  updateStartedAt: string;
  spec: Docker.ServiceSpec;
}

/**
 * The only calls certsync-server makes to Docker. Everything Docker-facing goes through this
 * interface, so the rest of the server can be read (and tested) without dockerode's types.
 */
export interface DockerClient {
  listNodes(): Promise<SwarmNode[]>;
  /** Tasks of one service by name; an empty list when the service does not exist. */
  listServiceTasks(service: string): Promise<SwarmTask[]>;
  /** Throws ServiceNotFoundError when the service does not exist. */
  inspectService(service: string): Promise<SwarmService>;
  /** Writes `spec` as the service's new spec; `versionIndex` guards against concurrent edits. */
  updateService(id: string, versionIndex: number, spec: Docker.ServiceSpec): Promise<string[]>;
}

/** Thrown when a configured service is not in the swarm (typo, or its stack is not deployed). */
export class ServiceNotFoundError extends Error {
  constructor(readonly service: string) {
    super(`service "${service}" does not exist in the swarm (check the name; stacks prefix it, e.g. iklimco_vault)`);
    this.name = 'ServiceNotFoundError';
  }
}

/**
 * Builds the client over dockerode. `DOCKER_HOST` is honoured (dockerode reads it); otherwise the
 * local socket `/var/run/docker.sock` is used.
 */
export function createDockerClient(options: { socketPath?: string } = {}): DockerClient {
  // Loaded here, not at the top: dockerode and what it pulls in (ssh2, protobufjs, …) add about
  // 23 MB of RSS, and a server with a connected/static fleet and signal reloads never needs it.
  const DockerClass = require('dockerode') as typeof Docker;
  const docker = options.socketPath ? new DockerClass({ socketPath: options.socketPath }) : new DockerClass();
  return {
    async listNodes() {
      const nodes = (await docker.listNodes()) as RawNode[];
      return nodes.map((node) => ({
        id: node.ID,
        hostname: node.Description?.Hostname ?? '',
        role: node.Spec?.Role ?? '',
        state: node.Status?.State ?? 'unknown',
        availability: node.Spec?.Availability ?? 'active',
      }));
    },

    async listServiceTasks(service) {
      // The API's name filter matches prefixes; keep the service with exactly this name.
      const services = await docker.listServices({ filters: { name: [service] } });
      const serviceIds = new Set(services.filter((entry) => entry.Spec?.Name === service).map((entry) => entry.ID));
      if (serviceIds.size === 0) return [];
      const tasks = (await docker.listTasks({ filters: { service: [...serviceIds] } })) as RawTask[];
      return tasks
        .filter((task) => serviceIds.has(task.ServiceID))
        .map((task) => ({
          id: task.ID,
          nodeId: task.NodeID ?? '',
          desiredState: task.DesiredState ?? '',
          state: task.Status?.State ?? '',
          error: task.Status?.Err ?? '',
          createdAt: task.CreatedAt ?? '',
          addresses: (task.NetworksAttachments ?? []).flatMap((attachment) =>
            (attachment.Addresses ?? []).map((address) => address.split('/')[0] ?? address),
          ),
        }));
    },

    async inspectService(service) {
      let info: Docker.Service;
      try {
        info = (await docker.getService(service).inspect()) as Docker.Service;
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode === 404) throw new ServiceNotFoundError(service);
        throw error;
      }
      const spec = info.Spec ?? {};
      const containerSpec = spec.TaskTemplate && 'ContainerSpec' in spec.TaskTemplate ? spec.TaskTemplate.ContainerSpec : undefined;
      return {
        id: info.ID,
        name: spec.Name ?? service,
        versionIndex: info.Version?.Index ?? 0,
        forceUpdate: spec.TaskTemplate?.ForceUpdate ?? 0,
        mounts: (containerSpec?.Mounts ?? []).map((mount) => ({
          type: mount.Type ?? '',
          source: mount.Source ?? '',
          target: mount.Target ?? '',
        })),
        updateState: info.UpdateStatus?.State ?? '',
        updateMessage: info.UpdateStatus?.Message ?? '',
        updateStartedAt: info.UpdateStatus?.StartedAt ?? '',
        spec,
      };
    },

    async updateService(id, versionIndex, spec) {
      const response = (await docker.getService(id).update({ _query: { version: versionIndex }, _body: spec })) as {
        Warnings?: string[] | null;
      };
      return response?.Warnings ?? [];
    },
  };
}

interface RawNode {
  ID: string;
  Description?: { Hostname?: string };
  Spec?: { Role?: string; Availability?: string };
  Status?: { State?: string };
}

interface RawTask {
  ID: string;
  ServiceID: string;
  NodeID?: string;
  DesiredState?: string;
  CreatedAt?: string;
  Status?: { State?: string; Err?: string };
  NetworksAttachments?: Array<{ Addresses?: string[] }>;
}
