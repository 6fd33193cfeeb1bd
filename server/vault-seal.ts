import { readFile } from 'node:fs/promises';
import { pinnedJsonRequest } from './tls-probe';

/** The fields of Vault's seal-status / unseal answers certsync reads. */
interface SealStatus {
  sealed: boolean;
  t: number;
  n: number;
  progress: number;
}

export type SealOutcome = 'unsealed' | 'unsealed by certsync';

/** Thrown when a replica stays sealed; never carries key material. */
export class SealedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SealedError';
  }
}

/**
 * Reads unseal keys, one per line (blank lines and `#` comments skipped). The keys stay in memory
 * only for the proof that needs them, and no message built here ever includes one.
 */
export async function readUnsealKeys(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new SealedError(
      `cannot read the unseal key file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  if (keys.length === 0) throw new SealedError(`the unseal key file ${file} holds no key`);
  return keys;
}

function parseSealStatus(body: unknown, what: string): SealStatus {
  const status = body as Partial<SealStatus> | undefined;
  if (typeof status?.sealed !== 'boolean')
    throw new Error(`${what} did not answer with Vault's seal status`);
  return {
    sealed: status.sealed,
    t: Number(status.t ?? 0),
    n: Number(status.n ?? 0),
    progress: Number(status.progress ?? 0),
  };
}

/**
 * Checks Vault's seal state on one replica and, if it is sealed and keys are given, submits keys
 * through `PUT /v1/sys/unseal` until the threshold is met. Every request is pinned to the bundle's
 * leaf, so keys only go to a replica serving certsync's own certificate.
 */
export async function ensureUnsealed(
  endpoint: string,
  options: {
    serverName: string | undefined;
    expectedFingerprint: string;
    keys: readonly string[] | undefined;
    timeoutMs: number;
  },
): Promise<SealOutcome> {
  const call = async (method: 'GET' | 'PUT', path: string, body?: unknown) => {
    const response = await pinnedJsonRequest(endpoint, { ...options, method, path, body });
    if (response.status !== 200)
      throw new Error(`${method} ${path} answered HTTP ${response.status}`);
    return parseSealStatus(response.body, `${method} ${path}`);
  };

  let status = await call('GET', '/v1/sys/seal-status');
  if (!status.sealed) return 'unsealed';
  if (!options.keys)
    throw new SealedError(
      `sealed (threshold ${status.t}, progress ${status.progress}) and no unseal key file is configured`,
    );

  // Progress left by someone else's half-finished unseal counts against the threshold: Vault
  // expects the remaining keys, and a key it already holds would be refused, so start over.
  if (status.progress > 0) status = await call('PUT', '/v1/sys/unseal', { reset: true });
  for (const [index, key] of options.keys.entries()) {
    status = await call('PUT', '/v1/sys/unseal', { key });
    if (!status.sealed) return 'unsealed by certsync';
    if (status.progress === 0 && index > 0) break;
  }
  throw new SealedError(
    `still sealed after ${options.keys.length} key(s) (threshold ${status.t}, progress ${status.progress}); the key file may hold too few or wrong keys`,
  );
}
