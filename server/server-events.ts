import type { ReloadRecordData, RolloutData, RolloutTransitionData } from './rollout';

/**
 * What the server's parts report as it happens, for observers that count (the metrics module).
 * Every method is called after the state change has been made and logged; observers must not throw.
 */
export interface ServerEvents {
  rolloutChanged(rollout: RolloutData, transition: RolloutTransitionData): void;
  /** One reload target finished (its proof, if any, included). */
  reloadFinished(bundle: string, record: ReloadRecordData): void;
  /** A candidate was recorded as rejected (after its retry windows). */
  candidateRejected(bundle: string, reason: string): void;
  /** An agent's stream was admitted and attached. */
  agentConnected(nodeId: string): void;
}

/** Observers that ignore everything: the default when metrics are off, and in unit tests. */
export const IGNORED_SERVER_EVENTS: ServerEvents = {
  rolloutChanged: () => undefined,
  reloadFinished: () => undefined,
  candidateRejected: () => undefined,
  agentConnected: () => undefined,
};
