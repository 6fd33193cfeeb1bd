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

/** A swarm config (immutable data, updatable labels) as the swarm state store uses it. */
export interface SwarmConfigObject {
  id: string;
  name: string;
  /** Raft version index; an update must carry the current one (compare-and-set). */
  versionIndex: number;
  labels: Record<string, string>;
  /** The config's bytes (configs, unlike secrets, can be read back through the API). */
  data: Buffer;
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

/** The swarm config calls the swarm state store makes (same dockerode client, narrower seam). */
export interface DockerConfigClient {
  /** Configs carrying every label in `labels` (a label with value '' matches any value). */
  listConfigs(labels: Record<string, string>): Promise<SwarmConfigObject[]>;
  /** Throws ConfigNotFoundError when there is no config with this name or ID. */
  inspectConfig(nameOrId: string): Promise<SwarmConfigObject>;
  /** Creates a config; throws ConfigNameConflictError when the name is taken. Returns its ID. */
  createConfig(name: string, labels: Record<string, string>, data: Buffer): Promise<string>;
  /**
   * Replaces the labels of `config` (the only thing Swarm lets change). Throws
   * StaleVersionIndexError when `config.versionIndex` is no longer current (someone else updated it).
   */
  updateConfigLabels(config: SwarmConfigObject, labels: Record<string, string>): Promise<void>;
  /** Removes a config; a config that is already gone is not an error. */
  removeConfig(nameOrId: string): Promise<void>;
}

/** Thrown when a swarm config does not exist. */
export class ConfigNotFoundError extends Error {
  constructor(readonly config: string) {
    super(`swarm config "${config}" does not exist`);
    this.name = 'ConfigNotFoundError';
  }
}

/** Thrown when a config with this name already exists (another writer got there first). */
export class ConfigNameConflictError extends Error {
  constructor(
    readonly config: string,
    options?: { cause?: unknown },
  ) {
    super(`swarm config "${config}" already exists`, options);
    this.name = 'ConfigNameConflictError';
  }
}

/** Thrown when a config update carried an outdated version index: another writer changed it first. */
export class StaleVersionIndexError extends Error {
  constructor(
    readonly config: string,
    readonly versionIndex: number,
    options?: { cause?: unknown },
  ) {
    super(
      `swarm config "${config}" changed since version index ${versionIndex}; read it again`,
      options,
    );
    this.name = 'StaleVersionIndexError';
  }
}

/** Thrown when a configured service is not in the swarm (typo, or its stack is not deployed). */
export class ServiceNotFoundError extends Error {
  constructor(readonly service: string) {
    super(
      `service "${service}" does not exist in the swarm (check the name; stacks prefix it, e.g. iklimco_vault)`,
    );
    this.name = 'ServiceNotFoundError';
  }
}

/**
 * Builds the client over dockerode. `DOCKER_HOST` is honoured (dockerode reads it); otherwise the
 * local socket `/var/run/docker.sock` is used.
 */
export function createDockerClient(
  options: { socketPath?: string } = {},
): DockerClient & DockerConfigClient {
  // Loaded here, not at the top: dockerode and what it pulls in (ssh2, protobufjs, …) add about
  // 23 MB of RSS, and a server with a connected/static fleet and signal reloads never needs it.
  const DockerClass = require('dockerode') as typeof Docker;
  const docker = options.socketPath
    ? new DockerClass({ socketPath: options.socketPath })
    : new DockerClass();
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
      const serviceIds = new Set(
        services.filter((entry) => entry.Spec?.Name === service).map((entry) => entry.ID),
      );
      if (serviceIds.size === 0) return [];
      const tasks = (await docker.listTasks({
        filters: { service: [...serviceIds] },
      })) as RawTask[];
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
        if ((error as { statusCode?: number }).statusCode === 404)
          throw new ServiceNotFoundError(service);
        throw error;
      }
      const spec = info.Spec ?? {};
      const containerSpec =
        spec.TaskTemplate && 'ContainerSpec' in spec.TaskTemplate
          ? spec.TaskTemplate.ContainerSpec
          : undefined;
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
      const response = (await docker
        .getService(id)
        .update({ _query: { version: versionIndex }, _body: spec })) as {
        Warnings?: string[] | null;
      };
      return response?.Warnings ?? [];
    },

    async listConfigs(labels) {
      const label = Object.entries(labels).map(([key, value]) =>
        value === '' ? key : `${key}=${value}`,
      );
      const configs = (await docker.listConfigs({ filters: { label } })) as RawConfig[];
      return configs.map(toConfigObject);
    },

    async inspectConfig(nameOrId) {
      try {
        return toConfigObject((await docker.getConfig(nameOrId).inspect()) as RawConfig);
      } catch (error) {
        if (statusCodeOf(error) === 404) throw new ConfigNotFoundError(nameOrId);
        throw error;
      }
    },

    async createConfig(name, labels, data) {
      try {
        const created = (await docker.createConfig({
          Name: name,
          Labels: labels,
          Data: data.toString('base64'),
        })) as { id?: string; ID?: string };
        return created.id ?? created.ID ?? '';
      } catch (error) {
        if (statusCodeOf(error) === 409) throw new ConfigNameConflictError(name, { cause: error });
        throw error;
      }
    },

    async updateConfigLabels(config, labels) {
      const spec = { Name: config.name, Labels: labels, Data: config.data.toString('base64') };
      try {
        await docker
          .getConfig(config.id)
          .update({ _query: { version: config.versionIndex }, _body: spec });
      } catch (error) {
        if (isOutOfSequence(error))
          throw new StaleVersionIndexError(config.name, config.versionIndex, { cause: error });
        if (statusCodeOf(error) === 404) throw new ConfigNotFoundError(config.name);
        throw error;
      }
    },

    async removeConfig(nameOrId) {
      try {
        await docker.getConfig(nameOrId).remove();
      } catch (error) {
        if (statusCodeOf(error) !== 404) throw error;
      }
    },
  };
}

function statusCodeOf(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

/**
 * Swarmkit refuses an update whose version index is not the object's current one with "update
 * out of sequence"; dockerd passes it on as a 500 (older engines) or a 409 — match either.
 */
function isOutOfSequence(error: unknown): boolean {
  const text = `${(error as Error).message ?? ''} ${JSON.stringify((error as { json?: unknown }).json ?? '')}`;
  return /out of sequence/i.test(text) || statusCodeOf(error) === 409;
}

function toConfigObject(raw: RawConfig): SwarmConfigObject {
  return {
    id: raw.ID,
    name: raw.Spec?.Name ?? '',
    versionIndex: raw.Version?.Index ?? 0,
    labels: raw.Spec?.Labels ?? {},
    data: Buffer.from(raw.Spec?.Data ?? '', 'base64'),
  };
}

interface RawConfig {
  ID: string;
  Version?: { Index?: number };
  Spec?: { Name?: string; Labels?: Record<string, string>; Data?: string };
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
