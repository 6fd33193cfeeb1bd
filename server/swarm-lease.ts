import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../common/log';
import {
  ConfigNameConflictError,
  ConfigNotFoundError,
  StaleVersionIndexError,
  type DockerConfigClient,
  type SwarmConfigObject,
} from './docker-client';
import { LABEL, LABELS_ONLY_DATA, LEASE_OBJECT_NAME } from './swarm-objects';

/** What the lease config says: who holds it and until when. */
export interface LeaseState {
  holder: string;
  expiresAt: Date;
}

/** Pure decision: may `holderId` take (or keep) the lease described by `state` at `now`? */
export function mayTakeLease(state: LeaseState | undefined, holderId: string, now: Date): boolean {
  return (
    state === undefined ||
    state.holder === '' ||
    state.holder === holderId ||
    state.expiresAt.getTime() <= now.getTime()
  );
}

export interface SwarmLeaseOptions {
  docker: DockerConfigClient;
  holderId: string;
  ttlMs: number;
  log: Logger;
  /** Called once when the lease is lost (another server took it after it expired). */
  onLost: (holder: string) => void;
  now?: () => Date;
}

/**
 * Single-active guarantee for servers sharing the swarm state: a lease in the labels of the config
 * `certsync-lease` (holder, expiresAt), taken and renewed only by compare-and-set on the config's
 * version index. A server distributes and reloads only while it holds the lease; a second server
 * waits until the holder stops renewing and the lease expires.
 *
 * Known limit: the guarantee rests on the holder noticing a failed renewal within the TTL. A
 * holder frozen for longer than `ttlMs` (e.g. a paused VM) may act once more after a successor
 * took over; state writes are still compare-and-set, so the pointer cannot be torn.
 */
export class SwarmLease {
  private timer: NodeJS.Timeout | undefined;
  private heldUntil = new Date(0);
  private closed = false;
  private readonly now: () => Date;

  constructor(private readonly options: SwarmLeaseOptions) {
    this.now = options.now ?? (() => new Date());
  }

  /** The name this server holds the lease under. */
  get holderId(): string {
    return this.options.holderId;
  }

  /** Reads the lease as it is now, or undefined when nobody ever held it. */
  async read(): Promise<LeaseState | undefined> {
    const config = await this.inspect();
    return config && leaseStateOf(config);
  }

  /** Tries once to take or renew the lease; true when this server holds it afterwards. */
  async tryAcquire(): Promise<boolean> {
    const now = this.now();
    const expiresAt = new Date(now.getTime() + this.options.ttlMs);
    const labels = {
      [LABEL.kind]: 'lease',
      [LABEL.holder]: this.options.holderId,
      [LABEL.expiresAt]: expiresAt.toISOString(),
    };
    const config = await this.inspect();
    try {
      if (!config) {
        await this.options.docker.createConfig(LEASE_OBJECT_NAME, labels, LABELS_ONLY_DATA);
      } else {
        if (!mayTakeLease(leaseStateOf(config), this.options.holderId, now)) return false;
        await this.options.docker.updateConfigLabels(config, labels);
      }
    } catch (error) {
      if (error instanceof ConfigNameConflictError || error instanceof StaleVersionIndexError)
        return false;
      throw error;
    }
    this.heldUntil = expiresAt;
    return true;
  }

  /** Waits until this server holds the lease, saying who holds it meanwhile; then keeps renewing it. */
  async acquire(): Promise<void> {
    let lastHolder = '';
    while (!this.closed) {
      if (await this.tryAcquire().catch((error: unknown) => this.logRetry(error))) {
        this.options.log.info(
          { holder: this.options.holderId, expiresAt: this.heldUntil.toISOString() },
          'Lease acquired',
        );
        this.scheduleRenewal();
        return;
      }
      const state = await this.read().catch(() => undefined);
      if (state && state.holder !== lastHolder) {
        lastHolder = state.holder;
        this.options.log.warn(
          {
            holder: state.holder,
            until: state.expiresAt.toISOString(),
            self: this.options.holderId,
          },
          'Waiting for the lease held by another server; not distributing or reloading',
        );
      }
      await sleep(this.renewIntervalMs());
    }
  }

  /** Stops renewing and, if still held, gives the lease up so a successor need not wait. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const config = await this.inspect().catch(() => undefined);
    if (config && config.labels[LABEL.holder] === this.options.holderId) {
      await this.options.docker
        .updateConfigLabels(config, {
          [LABEL.kind]: 'lease',
          [LABEL.holder]: '',
          [LABEL.expiresAt]: new Date(0).toISOString(),
        })
        .catch(() => undefined);
    }
  }

  private scheduleRenewal(): void {
    this.timer = setTimeout(() => void this.renew(), this.renewIntervalMs());
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    const renewed = await this.tryAcquire().catch((error: unknown) => this.logRetry(error));
    if (renewed) return this.scheduleRenewal();
    if (this.now() < this.heldUntil) {
      // A failed call (not a lost race) before expiry: try again soon.
      const state = await this.read().catch(() => undefined);
      if (!state || state.holder === this.options.holderId) return this.scheduleRenewal();
    }
    const holder = (await this.read().catch(() => undefined))?.holder ?? 'unknown';
    this.options.log.error({ holder, self: this.options.holderId }, 'Lease lost');
    this.closed = true;
    this.options.onLost(holder);
  }

  private renewIntervalMs(): number {
    return Math.max(500, Math.floor(this.options.ttlMs / 3));
  }

  private logRetry(error: unknown): false {
    this.options.log.warn({ err: error }, 'Lease check failed, retrying');
    return false;
  }

  private async inspect(): Promise<SwarmConfigObject | undefined> {
    try {
      return await this.options.docker.inspectConfig(LEASE_OBJECT_NAME);
    } catch (error) {
      if (error instanceof ConfigNotFoundError) return undefined;
      throw error;
    }
  }
}

function leaseStateOf(config: SwarmConfigObject): LeaseState {
  const expiresAt = new Date(config.labels[LABEL.expiresAt] ?? 0);
  return {
    holder: config.labels[LABEL.holder] ?? '',
    expiresAt: Number.isNaN(expiresAt.getTime()) ? new Date(0) : expiresAt,
  };
}
