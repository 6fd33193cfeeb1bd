import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log';
import type { BundleConfig } from './config';
import { ConfirmedCount } from './confirmed-count';
import type { ExpectedNodes } from './expected-nodes';
import { isNodeInSync, type Fleet, type NodeRecord } from './fleet';
import type { Prover } from './prover';
import type { Reloader } from './reloader';
import {
  assessConvergence,
  isWaitingForNodes,
  missingNodes,
  newRollout,
  transitionRollout,
  type ProofResultData,
  type ReloadRecordData,
  type RolloutData,
  type RolloutTransitionData,
  type RolloutState,
  type RolloutTrigger,
} from './rollout';
import type { RolloutHistory } from './rollout-history';
import { IGNORED_SERVER_EVENTS, type ServerEvents } from './server-events';
import { FailedPreconditionError } from './status-mapping';
import type { RolloutStorage, VersionStorage } from './state-store';
import type { BundleVersion } from './version-store';

export interface RolloutTrackerOptions {
  bundles: readonly BundleConfig[];
  store: VersionStorage;
  fleet: Fleet;
  expectedNodes: ExpectedNodes;
  reloader: Reloader;
  prover: Prover;
  history: RolloutStorage;
  convergeTimeoutMs: number;
  /** Sends a version to every connected agent (the fan-out hub). */
  distribute: (version: BundleVersion) => void;
  log: Logger;
  /** Told of every transition and finished reload (the metrics module). */
  events?: ServerEvents;
  /** A paused bundle is never reloaded nor rolled out (see PauseRegistry). */
  isPaused?: (bundle: string) => boolean;
  now?: () => Date;
  /**
   * Names this server in every transition's detail (the lease holder with a swarm state store),
   * so a history written by two servers across a failover shows which did what.
   */
  serverId?: string;
  /** How long close() waits for the history's last writes (HISTORY_FLUSH_TIMEOUT_MS). */
  historyFlushTimeoutMs?: number;
}

/** One step of a rollout as it happens, for WatchRollout. `rollout` is the live object. */
export type RolloutEvent =
  | { kind: 'started'; rollout: RolloutData }
  | { kind: 'node-confirmed'; rollout: RolloutData; nodeId: string }
  | { kind: 'transition'; rollout: RolloutData; transition: RolloutTransitionData }
  | { kind: 'reload'; rollout: RolloutData; reload: ReloadRecordData }
  | { kind: 'proof'; rollout: RolloutData; reload: ReloadRecordData };

/** A rollout in one of these states never changes again. */
export const FINAL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set([
  'done',
  'failed',
  'superseded',
]);

/** How often waiting rollouts are re-assessed even without a fleet event (for the stall timeout). */
const TICK_MS = 1_000;

/** How long a stopping server waits for its last rollout history write (a hung Docker API). */
export const HISTORY_FLUSH_TIMEOUT_MS = 5_000;

/**
 * Drives one rollout per bundle version: waits until every expected node confirmed the bytes,
 * then runs the bundle's reload targets in order — never before. Reloads of one bundle never
 * overlap: a version accepted during a reload waits for it.
 */
export class RolloutTracker {
  private readonly active = new Map<string, RolloutData>();
  private readonly reloadChains = new Map<string, Promise<void>>();
  private readonly evaluations = new Map<string, Promise<void>>();
  /** Bundles whose rollout a restart found converged or reloading; started from evaluateNow. */
  private readonly resumed = new Map<string, { resuming: boolean; since: Date }>();
  /** The evaluation of each bundle that is queued and has not started yet. */
  private readonly queuedEvaluations = new Map<string, Promise<void>>();
  private readonly configs: Map<string, BundleConfig>;
  private readonly now: () => Date;
  private readonly events: ServerEvents;
  private timer: NodeJS.Timeout | undefined;
  private readonly watchers = new EventEmitter();
  /**
   * Per bundle, the nodes whose state changed since its last evaluation; no entry means every
   * node must be looked at (a new rollout, the timer, a change of the expected set).
   */
  private readonly changedNodes = new Map<string, Set<string>>();
  private readonly confirmedCounts = new Map<string, ConfirmedCount>();

  constructor(private readonly options: RolloutTrackerOptions) {
    this.configs = new Map(options.bundles.map((bundle) => [bundle.name, bundle]));
    this.now = options.now ?? (() => new Date());
    this.events = options.events ?? IGNORED_SERVER_EVENTS;
  }

  /**
   * Picks up where the last server left off (the same or another one, with a swarm state store):
   * a waiting rollout keeps waiting, a finished one stays finished, a converged one reloads, and
   * one interrupted during its reloads goes on — targets already reloaded are not reloaded again
   * (one reloaded but not proved goes on to its proof); a target whose reload was cut off half-way
   * fails the rollout, since it may have partly happened. Either resumed reload starts once the
   * agents a signal reload needs have reconnected, or after convergeTimeoutMs without them. A
   * current version without a rollout gets one.
   */
  async resume(): Promise<void> {
    for (const bundle of this.options.bundles) {
      const current = this.options.store.current(bundle.name);
      if (!current) continue;
      const newest = this.options.history.latest(bundle.name);
      const latest =
        newest && newest.version === current.version && newest.state !== 'superseded'
          ? newest
          : undefined;
      await this.closeUnfinishedBefore(bundle.name, latest, current.version);
      if (!latest) {
        await this.begin(current, 'restart');
        continue;
      }
      this.active.set(bundle.name, latest);
      if (latest.state === 'converged' || latest.state === 'reloading') {
        // Started from evaluateNow, once the agents a signal reload needs are back.
        this.resumed.set(bundle.name, {
          resuming: latest.state === 'reloading',
          since: this.now(),
        });
      }
    }
    this.timer = setInterval(() => this.evaluateAll(), TICK_MS);
    this.timer.unref();
  }

  /**
   * Stops the timer and waits until the history holds the last state change, so a successor
   * reads what this server did (a save still in flight could read as a reload cut off mid-call).
   */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const timeoutMs = this.options.historyFlushTimeoutMs ?? HISTORY_FLUSH_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      this.options.history.flush().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (!waited)
      this.options.log.error(
        { timeoutMs },
        'Rollout history still being written at shutdown; check the state store before starting a successor',
      );
  }

  /** Calls `listener` for every step of every rollout of `bundle`; returns the unsubscribe. */
  subscribe(bundle: string, listener: (event: RolloutEvent) => void): () => void {
    const channel = `rollout:${bundle}`;
    this.watchers.on(channel, listener);
    return () => this.watchers.off(channel, listener);
  }

  private emit(event: RolloutEvent): void {
    this.watchers.emit(`rollout:${event.rollout.bundle}`, event);
  }

  private isPaused(bundle: string): boolean {
    return this.options.isPaused?.(bundle) ?? false;
  }

  private refuseWhenPaused(bundle: string): void {
    if (this.isPaused(bundle)) {
      throw new FailedPreconditionError(
        `bundle "${bundle}" is paused; run \`certsyncctl resume ${bundle}\` first`,
      );
    }
  }

  /**
   * The Rollback RPC: reinstates `toVersion`, or (0) the newest kept version other than the
   * current one whose rollout finished done, and rolls it out.
   */
  async rollback(bundle: string, toVersion: number): Promise<RolloutData> {
    const current = this.options.store.current(bundle);
    if (!this.configs.has(bundle))
      throw new FailedPreconditionError(`no bundle named "${bundle}" is configured`);
    if (!current)
      throw new FailedPreconditionError(`bundle "${bundle}" has no accepted version yet`);
    const target = toVersion || (await this.lastProvenVersionBefore(bundle, current.version));
    if (target === undefined) {
      throw new FailedPreconditionError(
        `bundle "${bundle}" has no earlier version whose rollout finished done; name one with --to`,
      );
    }
    if (target === current.version)
      throw new FailedPreconditionError(`bundle "${bundle}" is at version ${target} already`);
    return this.rollout(bundle, target, 'rollback');
  }

  current(bundle: string): RolloutData | undefined {
    return this.active.get(bundle);
  }

  /** Starts the rollout of `version`; an earlier rollout still waiting for nodes is superseded. */
  async begin(version: BundleVersion, trigger: RolloutTrigger): Promise<RolloutData> {
    const previous = this.active.get(version.bundle);
    // Only an unfinished rollout is superseded; a done or failed one keeps its outcome in history.
    if (previous && (isWaitingForNodes(previous.state) || previous.state === 'converged')) {
      await this.move(
        previous,
        'superseded',
        `version ${version.version} (${trigger}) replaced it`,
      );
    }
    const rollout = newRollout(version.bundle, version.version, trigger, this.now());
    // Known from the start, so a watcher's first snapshot counts against the right total.
    rollout.expectedNodes = [...this.options.expectedNodes.current()];
    this.active.set(version.bundle, rollout);
    this.changedNodes.delete(version.bundle);
    this.options.log.info(
      { bundle: rollout.bundle, version: rollout.version, trigger },
      'Rollout started',
    );
    // Announced before the save: agents may confirm while it is written, and a watcher that only
    // learned of the rollout afterwards would open on a later state and miss those transitions.
    this.emit({ kind: 'started', rollout });
    await this.options.history.save(rollout);
    await this.evaluate(version.bundle);
    return rollout;
  }

  /**
   * Only the current version's rollout is ever resumed. Any other one still open in the history
   * (a reload cut off by a stop while the next version waited behind it, or was accepted at
   * start) would otherwise stay "reloading" for good: it is closed here — failed if its reload
   * may have partly happened, superseded if it was still waiting for nodes.
   */
  private async closeUnfinishedBefore(
    bundle: string,
    resumed: RolloutData | undefined,
    currentVersion: number,
  ): Promise<void> {
    for (const rollout of this.options.history.list(bundle)) {
      if (rollout === resumed || FINAL_ROLLOUT_STATES.has(rollout.state)) continue;
      const next = `version ${currentVersion} followed`;
      if (rollout.state !== 'reloading') {
        await this.move(rollout, 'superseded', `${next} (found unfinished at start)`);
        continue;
      }
      const detail =
        `the server stopped while reloading it and ${next}; ` +
        'the reload may have partly happened — check the service';
      await this.move(rollout, 'failed', detail);
    }
  }

  /** Re-assesses every waiting rollout against every node; called by the timer and on fleet-set changes. */
  evaluateAll(): void {
    this.changedNodes.clear();
    for (const bundle of this.active.keys()) {
      this.evaluate(bundle).catch((error: unknown) =>
        this.options.log.error({ err: error, bundle }, 'Rollout evaluation failed'),
      );
    }
  }

  /** Re-assesses every waiting rollout after one node's report, connect or disconnect. */
  nodeChanged(nodeId: string): void {
    for (const bundle of this.active.keys()) {
      this.changedNodes.get(bundle)?.add(nodeId);
      this.evaluate(bundle).catch((error: unknown) =>
        this.options.log.error({ err: error, bundle }, 'Rollout evaluation failed'),
      );
    }
  }

  /**
   * The Rollout RPC: sends the current version (0) or an earlier kept one to every node again and
   * reloads once they all confirm. Rolling back to an earlier version withdraws the newer ones, so
   * the watcher does not put them back while the source still holds them.
   */
  async rollout(
    bundle: string,
    version: number,
    trigger: RolloutTrigger = 'rollout',
  ): Promise<RolloutData> {
    const current = this.options.store.current(bundle);
    if (!this.configs.has(bundle))
      throw new FailedPreconditionError(`no bundle named "${bundle}" is configured`);
    if (!current)
      throw new FailedPreconditionError(`bundle "${bundle}" has no accepted version yet`);
    this.refuseWhenPaused(bundle);
    if (this.active.get(bundle)?.state === 'reloading') {
      throw new FailedPreconditionError(
        `bundle "${bundle}" is reloading; wait for it to finish before a new rollout`,
      );
    }
    let target = current;
    if (version !== 0 && version !== current.version) {
      const kept = await this.options.store.listVersions(bundle);
      if (!kept.includes(version)) {
        throw new FailedPreconditionError(
          `bundle "${bundle}" has no version ${version} (kept: ${kept.join(', ')})`,
        );
      }
      target = await this.options.store.reinstate(bundle, version);
      this.options.log.warn(
        { bundle, version, from: current.version },
        'Earlier version reinstated',
      );
    }
    this.options.distribute(target);
    return this.begin(target, trigger);
  }

  /** The Verify RPC: runs the proof of every reload target that has one, against the current version. */
  async verify(bundle: string): Promise<{ version: number; proofs: ProofResultData[] }> {
    const current = this.options.store.current(bundle);
    const config = this.configs.get(bundle);
    if (!config) throw new FailedPreconditionError(`no bundle named "${bundle}" is configured`);
    if (!current)
      throw new FailedPreconditionError(`bundle "${bundle}" has no accepted version yet`);
    const targets = config.reload.filter((target) => target.verify);
    if (targets.length === 0)
      throw new FailedPreconditionError(
        `no reload target of bundle "${bundle}" has a verify section`,
      );
    const expected = {
      version: current.version,
      fingerprintSha256: current.validated.leaf.fingerprintSha256,
    };
    const proofs: ProofResultData[] = [];
    for (const target of targets)
      proofs.push(await this.options.prover.prove(target.service, target.verify!, expected));
    return { version: current.version, proofs };
  }

  /** Rollouts of the bundle, newest first. */
  list(bundle: string): RolloutData[] {
    if (!this.configs.has(bundle))
      throw new FailedPreconditionError(`no bundle named "${bundle}" is configured`);
    return this.options.history.list(bundle);
  }

  /** The Reload RPC: reloads a converged (or, with force, a stalled) rollout now. */
  reload(bundle: string, force: boolean): RolloutData {
    const rollout = this.requireRollout(bundle);
    this.refuseWhenPaused(bundle);
    if (rollout.state === 'reloading')
      throw new FailedPreconditionError(
        `bundle "${bundle}" version ${rollout.version} is reloading already`,
      );
    if (isWaitingForNodes(rollout.state) && !force) {
      const missing = missingNodes(rollout);
      throw new FailedPreconditionError(
        `bundle "${bundle}" version ${rollout.version} is ${rollout.state}: ${missing.length} node(s) have not confirmed (${missing.join(', ')}); reload with force to go ahead anyway`,
      );
    }
    const missing = missingNodes(rollout);
    this.resumed.delete(bundle);
    this.startReload(
      rollout,
      force && missing.length > 0
        ? `forced with ${missing.length} node(s) missing: ${missing.join(', ')}`
        : 'requested',
    );
    return rollout;
  }

  private requireRollout(bundle: string): RolloutData {
    if (!this.configs.has(bundle))
      throw new FailedPreconditionError(`no bundle named "${bundle}" is configured`);
    const rollout = this.active.get(bundle);
    if (!rollout)
      throw new FailedPreconditionError(`bundle "${bundle}" has no accepted version yet`);
    return rollout;
  }

  /**
   * Evaluations of one bundle run one after another, so a transition is never taken twice. A
   * caller that finds an evaluation queued but not yet started joins it: that one will see its
   * change. Without this, N agents reporting at once queued N evaluations, each walking all N
   * nodes (N² work: seconds at N=1000 in the benchmark).
   */
  private evaluate(bundle: string): Promise<void> {
    const queued = this.queuedEvaluations.get(bundle);
    if (queued) return queued;
    const next = (this.evaluations.get(bundle) ?? Promise.resolve()).then(() => {
      this.queuedEvaluations.delete(bundle);
      return this.evaluateNow(bundle);
    });
    this.queuedEvaluations.set(bundle, next);
    this.evaluations.set(
      bundle,
      next.catch(() => undefined),
    );
    return next;
  }

  private async evaluateNow(bundle: string): Promise<void> {
    const rollout = this.active.get(bundle);
    const version = this.options.store.current(bundle);
    const resumed = this.resumed.get(bundle);
    if (rollout && resumed && (rollout.state === 'converged' || rollout.state === 'reloading')) {
      const waitedMs = this.now().getTime() - resumed.since.getTime();
      const away = this.disconnectedForSignals(bundle, rollout.expectedNodes);
      // Past convergeTimeoutMs the reload runs anyway and names the agents still away.
      if (away.length > 0 && waitedMs < this.options.convergeTimeoutMs) return;
      this.resumed.delete(bundle);
      const why = resumed.resuming
        ? 'resumed after a server restart'
        : 'converged before a server restart';
      this.startReload(rollout, why, { resuming: resumed.resuming });
      return;
    }
    if (!rollout || !isWaitingForNodes(rollout.state) || version?.version !== rollout.version)
      return;
    if (this.isPaused(bundle)) return;

    const now = this.now();
    const expected = this.options.expectedNodes.current();
    let changed = !sameNodeIds(expected, rollout.expectedNodes);
    if (changed) rollout.expectedNodes = [...expected];
    const count = this.confirmedCount(bundle);
    count.track(rollout, expected);
    for (const node of this.nodesToCheck(bundle)) {
      const record = node.bundles.get(bundle);
      if (
        rollout.confirmedAt[node.nodeId] ||
        record?.appliedVersion !== rollout.version ||
        !isNodeInSync(record, version)
      )
        continue;
      rollout.confirmedAt[node.nodeId] = now;
      count.confirmed(node.nodeId);
      changed = true;
      const durationMs = now.getTime() - rollout.startedAt.getTime();
      // Debug: one line per node per rollout is a thousand synchronous writes at N=1000; the
      // converged transition names the count, a stall names the missing nodes.
      this.options.log.debug(
        { bundle, version: rollout.version, node: node.nodeId, durationMs },
        'Node confirmed rollout',
      );
      this.emit({ kind: 'node-confirmed', rollout, nodeId: node.nodeId });
    }

    const waitedMs = now.getTime() - rollout.startedAt.getTime();
    const verdict =
      count.mayHaveConverged() || waitedMs >= this.options.convergeTimeoutMs
        ? assessConvergence(
            expected,
            new Set(Object.keys(rollout.confirmedAt)),
            rollout.startedAt,
            now,
            this.options.convergeTimeoutMs,
          )
        : { kind: 'waiting' as const };
    const disconnected =
      verdict.kind === 'converged' ? this.disconnectedForSignals(bundle, expected) : [];
    if (verdict.kind === 'converged' && disconnected.length > 0) {
      // Every node holds the bytes, but a signal reload needs each agent connected (after a server
      // restart they reconnect within seconds); wait for them, stalling after convergeTimeoutMs.
      if (rollout.state === 'distributing' && waitedMs >= this.options.convergeTimeoutMs) {
        const reason = `every node confirmed, but a signal reload needs these agents connected: ${disconnected.join(', ')}`;
        await this.move(
          rollout,
          'stalled',
          `${reason}${this.describeMissing(bundle, disconnected)}`,
        );
      } else if (changed) {
        rollout.updatedAt = now;
        await this.options.history.save(rollout);
      }
    } else if (verdict.kind === 'converged') {
      await this.move(rollout, 'converged', `all ${expected.length} expected nodes confirmed`);
      this.startReload(rollout, 'converged');
    } else if (verdict.kind === 'stalled' && rollout.state === 'distributing') {
      await this.move(
        rollout,
        'stalled',
        `${verdict.reason}${this.describeMissing(bundle, verdict.missing)}`,
      );
    } else if (changed) {
      rollout.updatedAt = now;
      this.options.history.saveProgress(rollout);
    }
  }

  /** The nodes whose state changed since the bundle's last evaluation (all of them when unknown). */
  private nodesToCheck(bundle: string): Iterable<NodeRecord> {
    const changed = this.changedNodes.get(bundle);
    this.changedNodes.set(bundle, new Set());
    if (!changed) return this.options.fleet.nodes();
    const nodes: NodeRecord[] = [];
    for (const nodeId of changed) {
      const node = this.options.fleet.get(nodeId);
      if (node) nodes.push(node);
    }
    return nodes;
  }

  private confirmedCount(bundle: string): ConfirmedCount {
    let count = this.confirmedCounts.get(bundle);
    if (!count) {
      count = new ConfirmedCount();
      this.confirmedCounts.set(bundle, count);
    }
    return count;
  }

  /** Expected nodes whose agent is not connected, when a reload target of the bundle is a signal. */
  private disconnectedForSignals(bundle: string, expected: readonly string[]): string[] {
    const signals =
      this.configs.get(bundle)?.reload.some((target) => target.action === 'signal') ?? false;
    if (!signals) return [];
    return expected.filter((nodeId) => this.options.fleet.get(nodeId)?.connected !== true);
  }

  /** What is known of each missing node: not connected, or the error it reported (and what happens next). */
  private describeMissing(bundle: string, missing: readonly string[]): string {
    const notes = missing.map((nodeId) => {
      const node = this.options.fleet.get(nodeId);
      if (!node) return `${nodeId}: agent never connected`;
      const error = node.bundles.get(bundle)?.lastError;
      if (error) return `${nodeId}: ${error.code} ${error.path}`.trim();
      return node.connected
        ? `${nodeId}: connected, no confirmation`
        : `${nodeId}: agent disconnected`;
    });
    if (notes.length === 0) return '';
    const failed = missing.some(
      (nodeId) => this.options.fleet.get(nodeId)?.bundles.get(bundle)?.lastError,
    );
    const hint = failed
      ? `; a node that failed to write retries by itself with backoff, \`certsyncctl rollout restart ${bundle}\` re-sends now`
      : '';
    return ` (${notes.join('; ')})${hint}`;
  }

  /** Queues the reload of `rollout` behind any reload of the same bundle still running. */
  private startReload(
    rollout: RolloutData,
    why: string,
    options: { resuming?: boolean } = {},
  ): void {
    const previous = this.reloadChains.get(rollout.bundle) ?? Promise.resolve();
    const next = previous
      .then(() => this.runReloads(rollout, why, options.resuming ?? false))
      .catch((error: unknown) =>
        this.options.log.error({ err: error, bundle: rollout.bundle }, 'Reload crashed'),
      );
    this.reloadChains.set(rollout.bundle, next);
  }

  private async runReloads(rollout: RolloutData, why: string, resuming: boolean): Promise<void> {
    if (rollout.state === 'superseded') return;
    const targets = this.configs.get(rollout.bundle)?.reload ?? [];
    if (targets.length === 0) {
      if (rollout.state !== 'done')
        await this.move(rollout, 'done', 'no reload targets configured');
      return;
    }
    if (!resuming) await this.move(rollout, 'reloading', why);
    else
      this.options.log.info(
        { bundle: rollout.bundle, version: rollout.version },
        'Resuming rollout reloads',
      );
    const roundStartedAt = lastEntryInto(rollout, 'reloading');
    const managedTargets = this.configs.get(rollout.bundle)?.files.map((file) => file.target) ?? [];
    for (const [index, target] of targets.entries()) {
      let record = resuming
        ? rollout.reloads.find(
            (done) =>
              done.service === target.service &&
              done.startedAt.getTime() >= roundStartedAt.getTime(),
          )
        : undefined;
      if (!record && resuming && rollout.reloadInFlight === target.service) {
        await this.move(
          rollout,
          'failed',
          `the server stopped while reloading ${target.service}; the reload may have partly happened — check the service, then run \`certsyncctl reload\``,
        );
        return;
      }
      if (!record) {
        rollout.reloadInFlight = target.service;
        await this.options.history.save(rollout);
        record = await this.options.reloader.run(target, {
          bundle: rollout.bundle,
          version: rollout.version,
          nodeIds: rollout.expectedNodes,
          managedTargets,
        });
        rollout.reloadInFlight = '';
        rollout.reloads.push(record);
        await this.options.history.save(rollout);
        this.emit({ kind: 'reload', rollout, reload: record });
      }
      if (record.ok && target.verify && !record.proof) {
        const version = await this.options.store.get(rollout.bundle, rollout.version);
        const expected = {
          version: rollout.version,
          fingerprintSha256: version?.validated.leaf.fingerprintSha256 ?? '',
        };
        record.proof = await this.options.prover.prove(target.service, target.verify, expected);
        record.ok = record.proof.ok;
        record.error = record.proof.error;
        await this.options.history.save(rollout);
        this.emit({ kind: 'proof', rollout, reload: record });
      }
      this.events.reloadFinished(rollout.bundle, record);
      if (!record.ok) {
        const skipped = targets.slice(index + 1).map((next) => next.service);
        const tail = skipped.length > 0 ? `; not reloaded: ${skipped.join(', ')}` : '';
        const failedProof = record.proof !== undefined && !record.proof.ok;
        await this.fail(
          rollout,
          `${record.error}${tail}`,
          failedProof ? target.onFailure : 'reload-failed',
        );
        return;
      }
    }
    await this.move(rollout, 'done', `${targets.length} reload target(s) finished`);
  }

  /**
   * Fails the rollout; after a failed proof with `onFailure: rollback`, puts the last proven
   * version back (which withdraws the failed one from the watcher) and rolls it out. A rollback
   * that fails in turn is held: certsync never loops between two versions.
   */
  private async fail(
    rollout: RolloutData,
    reason: string,
    onFailure: 'hold' | 'rollback' | 'reload-failed',
  ): Promise<void> {
    if (onFailure === 'reload-failed') {
      // onFailure is about proofs: a reload Docker or an agent refused proves nothing either way.
      const fix = `fix the service, then run certsyncctl reload ${rollout.bundle}`;
      await this.move(
        rollout,
        'failed',
        `${reason} (the reload failed, nothing is rolled back: every node keeps version ${rollout.version}; ${fix})`,
      );
      return;
    }
    if (onFailure === 'hold' || rollout.trigger === 'rollback') {
      const why =
        rollout.trigger === 'rollback'
          ? 'the rollback itself failed; nothing more is tried'
          : 'onFailure is hold';
      await this.move(
        rollout,
        'failed',
        `${reason} (${why}: every node keeps version ${rollout.version})`,
      );
      return;
    }
    const previous = await this.lastProvenVersion(rollout);
    if (previous === undefined) {
      await this.move(
        rollout,
        'failed',
        `${reason} (no earlier proven version is kept to roll back to)`,
      );
      return;
    }
    await this.move(rollout, 'failed', `${reason} (rolling back to version ${previous})`);
    const rollback = await this.rollout(rollout.bundle, previous, 'rollback');
    rollback.rollbackOf = rollout.version;
    await this.options.history.save(rollback);
  }

  /** The newest version, other than `rollout`'s, whose rollout finished done and is still kept. */
  private async lastProvenVersion(rollout: RolloutData): Promise<number | undefined> {
    return this.lastProvenVersionBefore(rollout.bundle, rollout.version);
  }

  private async lastProvenVersionBefore(
    bundle: string,
    version: number,
  ): Promise<number | undefined> {
    const kept = new Set(await this.options.store.listVersions(bundle));
    const proven = this.options.history
      .list(bundle)
      .find(
        (earlier) =>
          earlier.version !== version &&
          kept.has(earlier.version) &&
          earlier.transitions.some((step) => step.to === 'done'),
      );
    return proven?.version;
  }

  /** The one place a rollout changes state: guarded, logged, persisted. */
  private async move(rollout: RolloutData, to: RolloutState, detail: string): Promise<void> {
    const by = this.options.serverId ? ` [server ${this.options.serverId}]` : '';
    const transition = transitionRollout(rollout, to, this.now(), `${detail}${by}`);
    const fields = {
      bundle: rollout.bundle,
      version: rollout.version,
      from: transition.from,
      to,
      detail,
      durationMs: transition.at.getTime() - rollout.startedAt.getTime(),
    };
    if (to === 'stalled' || to === 'failed')
      this.options.log.error(fields, 'Rollout state changed');
    else this.options.log.info(fields, 'Rollout state changed');
    this.events.rolloutChanged(rollout, transition);
    await this.options.history.save(rollout);
    this.emit({ kind: 'transition', rollout, transition });
  }
}

/** When `rollout` last entered `state` (its start when it never did): the current reload round. */
function lastEntryInto(rollout: RolloutData, state: RolloutState): Date {
  const entries = rollout.transitions.filter((transition) => transition.to === state);
  return entries.at(-1)?.at ?? rollout.startedAt;
}

function sameNodeIds(a: readonly string[], b: readonly string[]): boolean {
  return a === b || (a.length === b.length && a.every((nodeId, index) => nodeId === b[index]));
}
