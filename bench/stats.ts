/** Percentile summary of a list of durations in milliseconds. */
export interface DurationSummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly maxMs: number;
  readonly minMs: number;
}

/** Nearest-rank percentile (p in 0..100) of `values`; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? Number.NaN;
}

export function summarize(valuesMs: readonly number[]): DurationSummary {
  return {
    count: valuesMs.length,
    p50Ms: round(percentile(valuesMs, 50)),
    p95Ms: round(percentile(valuesMs, 95)),
    maxMs: round(valuesMs.length ? Math.max(...valuesMs) : Number.NaN),
    minMs: round(valuesMs.length ? Math.min(...valuesMs) : Number.NaN),
  };
}

export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
