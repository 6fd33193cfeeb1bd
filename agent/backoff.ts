/** How the agent spaces reconnect attempts while the server is away. */
export interface BackoffPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** A connection that lasted this long counts as healthy and resets the attempt counter. */
  readonly healthyAfterMs: number;
}

export const DEFAULT_BACKOFF_POLICY: BackoffPolicy = Object.freeze({
  initialDelayMs: 250,
  maxDelayMs: 30_000,
  healthyAfterMs: 60_000,
});

/** Past this many doublings the ceiling is maxDelayMs anyway; it keeps 2 ** attempt finite. */
const MAX_DOUBLINGS = 30;

/**
 * The delay before reconnect attempt number `attempt` (0 for the first retry), with full jitter:
 * uniform between 0 and the exponential ceiling. Full jitter spreads a whole fleet of agents
 * across the window after a server restart instead of having them knock in lockstep.
 */
export function backoffDelayMs(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const ceilingMs = Math.min(
    policy.maxDelayMs,
    policy.initialDelayMs * 2 ** Math.min(Math.max(attempt, 0), MAX_DOUBLINGS),
  );
  return Math.floor(random() * ceilingMs);
}

/**
 * The attempt counter to use after a stream ended: back to 0 when the stream had been healthy for
 * long enough, so one blip after a day of calm retries fast; unchanged for a flapping server.
 */
export function attemptAfterDisconnect(
  attempt: number,
  connectedForMs: number | undefined,
  policy: BackoffPolicy,
): number {
  return connectedForMs !== undefined && connectedForMs >= policy.healthyAfterMs ? 0 : attempt;
}

/** How the agent spaces its own retries of a bundle it could not write. */
export interface RetryPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_APPLY_RETRY_POLICY: RetryPolicy = Object.freeze({
  initialDelayMs: 1_000,
  maxDelayMs: 30_000,
});

/**
 * The delay before retry number `attempt` (0 for the first), with equal jitter: half the
 * exponential ceiling fixed, half random. Unlike full jitter it never comes out near zero, so a
 * write that keeps failing is retried at a bounded rate however the dice fall.
 */
export function retryDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const ceilingMs = Math.min(
    policy.maxDelayMs,
    policy.initialDelayMs * 2 ** Math.min(Math.max(attempt, 0), MAX_DOUBLINGS),
  );
  return Math.floor(ceilingMs / 2 + (random() * ceilingMs) / 2);
}
