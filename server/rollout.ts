/**
 * A rollout follows one bundle version from distribution to reload. This file holds the data and
 * the decisions (pure functions over data and `now`); rollout-tracker.ts drives them.
 */

export type RolloutState =
  'distributing' | 'converged' | 'reloading' | 'done' | 'stalled' | 'failed' | 'superseded';

/** How a rollout began. */
export type RolloutTrigger = 'accepted' | 'rollout' | 'restart' | 'rollback' | 'resume' | 'import';

/** One replica as the prover found it. */
export interface ReplicaProofData {
  taskId: string;
  nodeId: string;
  endpoint: string;
  fingerprintSha256: string;
  notAfter: Date | undefined;
  matches: boolean;
  sealState: string;
  ok: boolean;
  error: string;
  attempts: number;
}

/** The proof of one reload target: every replica serves the version's leaf (and is unsealed). */
export interface ProofResultData {
  service: string;
  version: number;
  expectedFingerprintSha256: string;
  ok: boolean;
  error: string;
  startedAt: Date;
  finishedAt: Date;
  replicas: ReplicaProofData[];
}

/** What one reload target did; kept in the rollout for status and history. */
export interface ReloadRecordData {
  service: string;
  action: 'force-update' | 'signal';
  signal: string;
  startedAt: Date;
  finishedAt: Date | undefined;
  ok: boolean;
  error: string;
  tasksBefore: string[];
  tasksAfter: string[];
  signals: Array<{ nodeId: string; ok: boolean; containers: string[]; error: string }>;
  warnings: string[];
  proof: ProofResultData | undefined;
}

export interface RolloutTransitionData {
  from: RolloutState;
  to: RolloutState;
  at: Date;
  detail: string;
}

export interface RolloutData {
  bundle: string;
  version: number;
  trigger: RolloutTrigger;
  state: RolloutState;
  startedAt: Date;
  updatedAt: Date;
  /** The expected set as last evaluated. */
  expectedNodes: string[];
  /** When each node first confirmed this version's bytes. */
  confirmedAt: Record<string, Date>;
  reason: string;
  transitions: RolloutTransitionData[];
  reloads: ReloadRecordData[];
  /** For a rollback: the version whose proof failed. */
  rollbackOf: number;
  /**
   * The reload target whose Docker call is under way ('' when none): saved before the call and
   * cleared with its record after it, so a successor server can tell "never started" (run it)
   * from "cut off half-way" (unknown: fail, never reload twice).
   */
  reloadInFlight: string;
}

/** Thrown when code asks for a state change the table below does not allow (a bug, not input). */
export class RolloutTransitionError extends Error {
  constructor(from: RolloutState, to: RolloutState) {
    super(`rollout cannot go from ${from} to ${to}`);
    this.name = 'RolloutTransitionError';
  }
}

const ALLOWED_TRANSITIONS: Record<RolloutState, readonly RolloutState[]> = {
  distributing: ['converged', 'stalled', 'superseded', 'reloading'],
  stalled: ['converged', 'superseded', 'reloading'],
  converged: ['reloading', 'done', 'superseded'],
  reloading: ['done', 'failed'],
  // A finished rollout can be reloaded again on request (the Reload RPC).
  done: ['reloading', 'superseded'],
  failed: ['reloading', 'superseded'],
  superseded: [],
};

/** States in which the rollout still waits for nodes. */
export function isWaitingForNodes(state: RolloutState): boolean {
  return state === 'distributing' || state === 'stalled';
}

export function newRollout(
  bundle: string,
  version: number,
  trigger: RolloutTrigger,
  now: Date,
): RolloutData {
  return {
    bundle,
    version,
    trigger,
    state: 'distributing',
    startedAt: now,
    updatedAt: now,
    expectedNodes: [],
    confirmedAt: {},
    reason: '',
    transitions: [],
    reloads: [],
    rollbackOf: 0,
    reloadInFlight: '',
  };
}

/** The one guarded state change: records it in the timeline and returns the transition. */
export function transitionRollout(
  rollout: RolloutData,
  to: RolloutState,
  now: Date,
  detail = '',
): RolloutTransitionData {
  const from = rollout.state;
  if (!ALLOWED_TRANSITIONS[from].includes(to)) throw new RolloutTransitionError(from, to);
  const transition = { from, to, at: now, detail };
  rollout.state = to;
  rollout.updatedAt = now;
  rollout.reason = to === 'stalled' || to === 'failed' || to === 'superseded' ? detail : '';
  rollout.transitions.push(transition);
  return transition;
}

export type ConvergenceVerdict =
  | { kind: 'converged' }
  | { kind: 'waiting'; missing: string[] }
  | { kind: 'stalled'; missing: string[]; reason: string };

/**
 * Has every expected node confirmed? An empty expected set never converges: reloading services
 * before a single node holds the files would serve nothing new (or nothing at all).
 */
export function assessConvergence(
  expected: readonly string[],
  confirmed: ReadonlySet<string>,
  startedAt: Date,
  now: Date,
  convergeTimeoutMs: number,
): ConvergenceVerdict {
  const missing = expected.filter((nodeId) => !confirmed.has(nodeId));
  if (expected.length > 0 && missing.length === 0) return { kind: 'converged' };

  const waitedMs = now.getTime() - startedAt.getTime();
  if (waitedMs < convergeTimeoutMs) return { kind: 'waiting', missing };
  const reason =
    expected.length === 0
      ? `no expected node after ${waitedMs} ms (no agent has connected, or the swarm lists none)`
      : `${missing.length} of ${expected.length} expected nodes did not confirm within ${convergeTimeoutMs} ms: ${missing.join(', ')}`;
  return { kind: 'stalled', missing, reason };
}

/** Nodes of the expected set that have not confirmed. */
export function missingNodes(rollout: RolloutData): string[] {
  return rollout.expectedNodes.filter((nodeId) => rollout.confirmedAt[nodeId] === undefined);
}
