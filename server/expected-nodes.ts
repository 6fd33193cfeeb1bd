import type { Logger } from '../common/log';
import type { FleetConfig } from './config';
import type { DockerClient, SwarmNode, SwarmTask } from './docker-client';
import type { Fleet } from './fleet';

/**
 * Thrown when an agent claims a node ID that is not one certsync expects (not in the static list,
 * or not a ready, active swarm node that should run the agent service).
 */
export class NodeNotExpectedError extends Error {
  constructor(
    readonly nodeId: string,
    reason: string,
  ) {
    super(`node "${nodeId}" is not an expected node: ${reason}; the agent was refused`);
    this.name = 'NodeNotExpectedError';
  }
}

/** Thrown when the expected set cannot be read right now (Docker API unreachable); retryable. */
export class FleetUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FleetUnavailableError';
  }
}

/** Where the set of nodes that must hold every bundle comes from. */
export interface ExpectedNodes {
  readonly mode: FleetConfig['mode'];
  /**
   * The node IDs that must confirm a version before anything is reloaded, sorted. The same array
   * is returned until the set changes, so callers compare by identity first; never change it.
   */
  current(): readonly string[];
  /** Resolves when `nodeId` may connect; throws NodeNotExpectedError or FleetUnavailableError. */
  admit(nodeId: string): Promise<void>;
  /** Starts watching for changes (swarm mode); `onChange` runs after the set changed. */
  start(onChange: () => void): Promise<void>;
  close(): void;
}

/** Builds the source for the configured fleet mode. */
export function createExpectedNodes(
  config: FleetConfig,
  deps: { fleet: Fleet; docker: () => DockerClient; log: Logger },
): ExpectedNodes {
  switch (config.mode) {
    case 'connected':
      return {
        mode: 'connected',
        current: () => deps.fleet.nodeIds(),
        admit: async () => undefined,
        start: async () => undefined,
        close: () => undefined,
      };
    case 'static': {
      const nodes = [...new Set(config.nodes)].sort();
      return {
        mode: 'static',
        current: () => nodes,
        admit: async (nodeId) => {
          if (!nodes.includes(nodeId))
            throw new NodeNotExpectedError(
              nodeId,
              `it is not in fleet.nodes (${nodes.join(', ')})`,
            );
        },
        start: async () => undefined,
        close: () => undefined,
      };
    }
    case 'swarm':
      return new SwarmExpectedNodes(
        config.agentService,
        config.refreshIntervalMs,
        deps.docker(),
        deps.log,
      );
  }
}

/** Why one swarm node is or is not expected; a pure decision over the Docker API's data. */
export function swarmNodeVerdict(
  node: SwarmNode | undefined,
  agentTasks: readonly SwarmTask[],
  agentService: string,
): string | undefined {
  if (!node) return 'it is not a node of this swarm';
  if (node.state !== 'ready') return `its swarm status is "${node.state}", not "ready"`;
  if (node.availability !== 'active')
    return `its availability is "${node.availability}", not "active"`;
  const scheduled = agentTasks.some(
    (task) => task.nodeId === node.id && task.desiredState === 'running',
  );
  if (!scheduled) return `the swarm does not schedule the agent service "${agentService}" on it`;
  return undefined;
}

/** The expected node IDs: ready, active nodes where the global agent service has (or should have) a task. */
export function expectedSwarmNodeIds(
  nodes: readonly SwarmNode[],
  agentTasks: readonly SwarmTask[],
  agentService: string,
): string[] {
  return nodes
    .filter((node) => swarmNodeVerdict(node, agentTasks, agentService) === undefined)
    .map((node) => node.id)
    .sort();
}

/**
 * Swarm mode: the expected set is read from the Docker API at start, every `refreshIntervalMs`,
 * and whenever an unknown node asks to connect. A global service gets a task (desired state
 * running) on every eligible node even while its container fails to start, so such a node stays
 * expected — and a rollout waits for it — instead of silently dropping out.
 */
class SwarmExpectedNodes implements ExpectedNodes {
  readonly mode = 'swarm' as const;
  private expected: string[] = [];
  private verdicts = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private onChange: () => void = () => undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly agentService: string,
    private readonly refreshIntervalMs: number,
    private readonly docker: DockerClient,
    private readonly log: Logger,
  ) {}

  current(): readonly string[] {
    return this.expected;
  }

  async admit(nodeId: string): Promise<void> {
    if (this.expected.includes(nodeId)) return;
    await this.refresh();
    if (this.expected.includes(nodeId)) return;
    throw new NodeNotExpectedError(
      nodeId,
      this.verdicts.get(nodeId) ?? 'it is not a node of this swarm',
    );
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    try {
      await this.refresh();
    } catch (error) {
      // The server still starts: rollouts wait (and stall, named) until the swarm can be read.
      this.log.error(
        { err: error, agentService: this.agentService },
        'Swarm fleet not read; retrying',
      );
    }
    this.timer = setInterval(() => {
      this.refresh().catch((error: unknown) =>
        this.log.warn({ err: error }, 'Swarm fleet refresh failed'),
      );
    }, this.refreshIntervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** One refresh at a time; callers arriving during a refresh share its result. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.readSwarm().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async readSwarm(): Promise<void> {
    let nodes: SwarmNode[];
    let tasks: SwarmTask[];
    try {
      [nodes, tasks] = await Promise.all([
        this.docker.listNodes(),
        this.docker.listServiceTasks(this.agentService),
      ]);
    } catch (error) {
      throw new FleetUnavailableError(
        `cannot read the swarm's nodes from the Docker API: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (tasks.length === 0) {
      this.log.warn(
        { agentService: this.agentService },
        'Agent service has no tasks; is fleet.agentService the stack-prefixed name?',
      );
    }
    const verdicts = new Map<string, string>();
    for (const node of nodes) {
      const verdict = swarmNodeVerdict(node, tasks, this.agentService);
      if (verdict) verdicts.set(node.id, verdict);
    }
    const expected = expectedSwarmNodeIds(nodes, tasks, this.agentService);
    this.verdicts = verdicts;
    if (expected.join(',') === this.expected.join(',')) return;

    const added = expected.filter((id) => !this.expected.includes(id));
    const removed = this.expected.filter((id) => !expected.includes(id));
    this.expected = expected;
    this.log.info({ expected: expected.length, added, removed }, 'Expected nodes changed');
    this.onChange();
  }
}
