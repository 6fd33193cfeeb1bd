/**
 * The expiry watch's decision, a pure function over data and `now`: does the current leaf expire
 * within the warning window without a renewal having come in? A renewal that is accepted becomes
 * the current version with a later notAfter, so a warning here means the renewal pipeline
 * (certbot, SWAG, a cron job) has silently stopped, or its candidates are being rejected.
 */

export interface ExpiryFacts {
  now: Date;
  /** The current version's leaf notAfter. */
  notAfter: Date;
  /** When the current version was accepted: the last renewal certsync saw. */
  acceptedAt: Date;
  windowMs: number;
  /** The last rejected candidate, when it came after the current version. */
  lastRejected?: { at: Date; reason: string } | undefined;
}

export type ExpiryVerdict =
  | { kind: 'ok'; secondsLeft: number }
  | { kind: 'expiring' | 'expired'; secondsLeft: number; message: string };

const DAY_MS = 86_400_000;

/** Decides whether the current leaf needs a warning, and words it for the log and GetStatus. */
export function assessExpiry(facts: ExpiryFacts): ExpiryVerdict {
  const leftMs = facts.notAfter.getTime() - facts.now.getTime();
  const secondsLeft = Math.floor(leftMs / 1000);
  if (leftMs > facts.windowMs) return { kind: 'ok', secondsLeft };

  const kind = leftMs <= 0 ? 'expired' : 'expiring';
  const when =
    kind === 'expired'
      ? `the current leaf EXPIRED at ${facts.notAfter.toISOString()}`
      : `the current leaf expires at ${facts.notAfter.toISOString()} (in ${formatDuration(leftMs)})`;
  const rejected =
    facts.lastRejected && facts.lastRejected.at.getTime() > facts.acceptedAt.getTime()
      ? `; the last candidate (${facts.lastRejected.at.toISOString()}) was rejected: ${facts.lastRejected.reason}`
      : '';
  const message = `${when} and no renewal has been accepted since ${facts.acceptedAt.toISOString()}${rejected}; check the renewal job (certbot/SWAG) and its source folder`;
  return { kind, secondsLeft, message };
}

function formatDuration(ms: number): string {
  if (ms >= 2 * DAY_MS) return `${Math.floor(ms / DAY_MS)} days`;
  const hours = Math.floor(ms / 3_600_000);
  return hours >= 1 ? `${hours} h` : `${Math.max(1, Math.floor(ms / 60_000))} min`;
}
