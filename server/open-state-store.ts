import os from 'node:os';
import type { Logger } from '../common/log';
import { ConfigError, type ServerConfig } from './config';
import { createDockerClient, type DockerConfigClient } from './docker-client';
import { RolloutHistory } from './rollout-history';
import { loadStateKey, StateCipher, StateKeyError } from './state-cipher';
import type { StateStore } from './state-store';
import { SwarmLease } from './swarm-lease';
import { SwarmRolloutHistory } from './swarm-rollout-history';
import { SwarmVersionStore } from './swarm-version-store';
import { VersionStore } from './version-store';

/** The opened state, with the lease that guards it when it is shared (swarm). */
export interface OpenedState extends StateStore {
  lease: SwarmLease | undefined;
}

export interface OpenStateOptions {
  /** Called when a swarm lease is lost after it was held: this server must stop acting. */
  onLeaseLost: (holder: string) => void;
  /** Seam for tests; the real client over dockerode by default. */
  docker?: DockerConfigClient;
}

/**
 * Opens the configured state store. For `swarm`, the lease is taken first (waiting, and saying
 * so, while another server holds it), so the state is read only once nobody else writes it.
 */
export async function openStateStore(
  config: ServerConfig,
  bundleNames: readonly string[],
  log: Logger,
  options: OpenStateOptions,
): Promise<OpenedState> {
  const stateStore = config.stateStore;
  if (stateStore.kind === 'local')
    return { ...(await openLocalState(config, bundleNames, log)), lease: undefined };

  let cipher: StateCipher;
  try {
    cipher = new StateCipher(loadStateKey(stateStore.keyFile));
  } catch (error) {
    if (error instanceof StateKeyError) throw new ConfigError(error.message, { cause: error });
    throw error;
  }
  const docker = options.docker ?? createDockerClient();
  const lease = new SwarmLease({
    docker,
    // In Swarm the stack sets CERTSYNC_LEASE_HOLDER to {{.Task.Name}}; the hostname is the container ID.
    holderId: stateStore.holderId ?? process.env['CERTSYNC_LEASE_HOLDER'] ?? os.hostname(),
    ttlMs: stateStore.leaseTtlMs,
    log: log.child({ component: 'lease' }),
    onLost: options.onLeaseLost,
  });
  await lease.acquire();
  const versions = await SwarmVersionStore.open(
    docker,
    cipher,
    bundleNames,
    config.versionsKept,
    log.child({ component: 'store' }),
  );
  const history = await SwarmRolloutHistory.open(
    docker,
    cipher,
    bundleNames,
    log.child({ component: 'history' }),
  );
  return { versions, history, lease };
}

/** Opens the state folder; a folder that cannot be made or written is the operator's to fix. */
async function openLocalState(
  config: ServerConfig,
  bundleNames: readonly string[],
  log: Logger,
): Promise<StateStore> {
  try {
    const versions = await VersionStore.open(
      config.stateDir,
      bundleNames,
      config.versionsKept,
      log.child({ component: 'store' }),
    );
    const history = await RolloutHistory.open(
      config.stateDir,
      bundleNames,
      log.child({ component: 'history' }),
    );
    return { versions, history };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!code) throw error;
    throw new ConfigError(
      `stateDir: ${config.stateDir} is not usable (${code}: ${(error as Error).message.replace(/^\w+: /, '')}); ` +
        'create it as a folder the server user can write, or set stateDir / --state-dir elsewhere',
      { cause: error },
    );
  }
}
