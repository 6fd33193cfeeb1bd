import { createHash } from 'node:crypto';

/**
 * Names and labels of the swarm objects certsync keeps its state in. Every object carries
 * `io.certsync.kind` and (except the lease) `io.certsync.bundle`, so a listing by label finds
 * them whatever their names.
 */
export const LABEL = {
  kind: 'io.certsync.kind',
  bundle: 'io.certsync.bundle',
  version: 'io.certsync.version',
  digest: 'io.certsync.digest',
  acceptedAt: 'io.certsync.acceptedAt',
  sequence: 'io.certsync.sequence',
  current: 'io.certsync.current',
  withdrawn: 'io.certsync.withdrawn',
  rejected: 'io.certsync.rejected',
  holder: 'io.certsync.holder',
  expiresAt: 'io.certsync.expiresAt',
} as const;

export type SwarmObjectKind = 'version' | 'head' | 'history' | 'lease';

/** Swarm refuses config data larger than 500 KiB (swarmkit's MaxConfigSize). */
export const SWARM_OBJECT_MAX_BYTES = 500 * 1024;

/** Swarm object names are at most 64 characters. */
const NAME_MAX_CHARS = 64;

/** Thrown when a state object would not fit into one swarm config. */
export class StateObjectTooLargeError extends Error {
  constructor(
    readonly object: string,
    readonly bytes: number,
  ) {
    super(
      `state object ${object} is ${bytes} bytes after encryption, more than a swarm config holds (${SWARM_OBJECT_MAX_BYTES}); ` +
        'use stateStore: { kind: local } for bundles this large',
    );
    this.name = 'StateObjectTooLargeError';
  }
}

/** `certsync-BUNDLE-SUFFIX`; a bundle name too long for that is replaced by its hash prefix. */
export function objectName(bundle: string, suffix: string): string {
  const plain = `certsync-${bundle}-${suffix}`;
  if (plain.length <= NAME_MAX_CHARS) return plain;
  return `certsync-${createHash('sha256').update(bundle).digest('hex').slice(0, 16)}-${suffix}`;
}

export function versionObjectName(bundle: string, version: number): string {
  return objectName(bundle, `v${String(version).padStart(6, '0')}`);
}

export function headObjectName(bundle: string): string {
  return objectName(bundle, 'head');
}

export function historyObjectName(bundle: string, sequence: number): string {
  return objectName(bundle, `history-${String(sequence).padStart(9, '0')}`);
}

export const LEASE_OBJECT_NAME = 'certsync-lease';

/** Swarm configs need data; the head and lease keep everything in labels and hold this. */
export const LABELS_ONLY_DATA = Buffer.from('certsync: state kept in labels\n');

/** The integer in a label, or undefined when absent or not a non-negative integer. */
export function labelNumber(labels: Record<string, string>, key: string): number | undefined {
  const value = labels[key];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}
