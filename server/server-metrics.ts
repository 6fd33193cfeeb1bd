import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ExpectedNodes } from './expected-nodes';
import type { ExpiryWatch } from './expiry-watch';
import { isNodeInSync, type Fleet } from './fleet';
import type { ReloadRecordData, RolloutData, RolloutTransitionData } from './rollout';
import type { ServerEvents } from './server-events';
import type { VersionStore } from './version-store';

export interface ServerMetricsSources {
  bundleNames: readonly string[];
  store: Pick<VersionStore, 'current'>;
  fleet: Pick<Fleet, 'nodes' | 'get'>;
  expectedNodes: Pick<ExpectedNodes, 'current'>;
  expiry: Pick<ExpiryWatch, 'warning'>;
  serverVersion: string;
}

/** Rollout states that end a rollout (or, for stalled, need a person): counted by outcome. */
const COUNTED_OUTCOMES = new Set(['done', 'failed', 'stalled', 'superseded']);

/**
 * Every metric certsync-server exports, in one registry. Gauges are computed at scrape time from
 * the server's state (version store, fleet, expected nodes, expiry watch); counters and histograms
 * are fed by ServerEvents as things happen. Labels carry bundle names, node IDs, service names,
 * outcomes and reason codes only: never paths' contents, fingerprints of keys, or tokens.
 */
export class ServerMetrics implements ServerEvents {
  readonly registry = new Registry();
  private readonly rollouts: Counter<'bundle' | 'outcome'>;
  private readonly rolloutDuration: Histogram<'bundle' | 'outcome'>;
  private readonly reloadDuration: Histogram<'bundle' | 'service' | 'action' | 'outcome'>;
  private readonly rejected: Counter<'bundle' | 'reason'>;
  private readonly agentConnects: Counter<'node'>;

  constructor(sources: ServerMetricsSources) {
    const registers = [this.registry];
    const { bundleNames, store, fleet, expectedNodes, expiry } = sources;
    const eachBundle = (gauge: Gauge<'bundle'>, value: (bundle: string) => number | undefined) => {
      gauge.reset();
      for (const bundle of bundleNames) {
        const measured = value(bundle);
        if (measured !== undefined) gauge.set({ bundle }, measured);
      }
    };

    new Gauge({
      name: 'certsync_build_info',
      help: 'Always 1; the version label is the running certsync-server.',
      labelNames: ['version'],
      registers,
      collect() {
        this.set({ version: sources.serverVersion }, 1);
      },
    });
    new Gauge({
      name: 'certsync_certificate_expiration_timestamp_seconds',
      help: "The current version's leaf notAfter, in seconds since the Unix epoch (as cert-manager's certmanager_certificate_expiration_timestamp_seconds).",
      labelNames: ['bundle'],
      registers,
      collect() {
        eachBundle(this, (bundle) => epochSeconds(store.current(bundle)?.validated.leaf.notAfter));
      },
    });
    new Gauge({
      name: 'certsync_certificate_not_before_timestamp_seconds',
      help: "The current version's leaf notBefore, in seconds since the Unix epoch.",
      labelNames: ['bundle'],
      registers,
      collect() {
        eachBundle(this, (bundle) => epochSeconds(store.current(bundle)?.validated.leaf.notBefore));
      },
    });
    new Gauge({
      name: 'certsync_bundle_accepted_timestamp_seconds',
      help: 'When the current version was accepted (the last renewal seen), in seconds since the Unix epoch.',
      labelNames: ['bundle'],
      registers,
      collect() {
        eachBundle(this, (bundle) => epochSeconds(store.current(bundle)?.acceptedAt));
      },
    });
    new Gauge({
      name: 'certsync_bundle_version',
      help: 'The current version number of the bundle; 0 before the first accepted version.',
      labelNames: ['bundle'],
      registers,
      collect() {
        eachBundle(this, (bundle) => store.current(bundle)?.version ?? 0);
      },
    });
    new Gauge({
      name: 'certsync_nodes_expected',
      help: 'Nodes that must hold the bundle (from fleet.mode).',
      labelNames: ['bundle'],
      registers,
      collect() {
        const count = expectedNodes.current().length;
        eachBundle(this, () => count);
      },
    });
    new Gauge({
      name: 'certsync_nodes_in_sync',
      help: "Expected nodes whose files hold the current version's bytes.",
      labelNames: ['bundle'],
      registers,
      collect() {
        const expected = expectedNodes.current();
        eachBundle(this, (bundle) => {
          const current = store.current(bundle);
          return expected.filter((nodeId) => {
            const node = fleet.get(nodeId);
            return node !== undefined && isNodeInSync(node.bundles.get(bundle), current);
          }).length;
        });
      },
    });
    new Gauge({
      name: 'certsync_certificate_expiry_warning',
      help: '1 while the current leaf expires within expiryWarningDays and no renewal was accepted, else 0.',
      labelNames: ['bundle'],
      registers,
      collect() {
        eachBundle(this, (bundle) => (expiry.warning(bundle) ? 1 : 0));
      },
    });
    new Gauge({
      name: 'certsync_agent_connections',
      help: 'Agent Sync streams open now.',
      registers,
      collect() {
        this.set(fleet.nodes().filter((node) => node.connected).length);
      },
    });
    new Gauge({
      name: 'certsync_agent_connected',
      help: '1 when the node has an open Sync stream, 0 when its agent was seen and is gone.',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const node of fleet.nodes()) this.set({ node: node.nodeId }, node.connected ? 1 : 0);
      },
    });
    this.agentConnects = new Counter({
      name: 'certsync_agent_connects_total',
      help: 'Agent Sync streams admitted, per node (reconnects included).',
      labelNames: ['node'],
      registers,
    });
    this.rollouts = new Counter({
      name: 'certsync_rollouts_total',
      help: 'Rollouts that reached an outcome: done, failed, stalled or superseded.',
      labelNames: ['bundle', 'outcome'],
      registers,
    });
    this.rolloutDuration = new Histogram({
      name: 'certsync_rollout_duration_seconds',
      help: 'From the start of a rollout (version accepted or re-sent) to done or failed.',
      labelNames: ['bundle', 'outcome'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.reloadDuration = new Histogram({
      name: 'certsync_reload_duration_seconds',
      help: 'How long one reload target took (the update or signals, without its proof).',
      labelNames: ['bundle', 'service', 'action', 'outcome'],
      buckets: [0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.rejected = new Counter({
      name: 'certsync_rejected_candidates_total',
      help: 'Candidates recorded as rejected, by validation reason (key-mismatch, expired, …).',
      labelNames: ['bundle', 'reason'],
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** The names of every metric this registry exports (for the alert-rule and dashboard checks). */
  metricNames(): string[] {
    return this.registry.getMetricsAsArray().map((metric) => metric.name);
  }

  rolloutChanged(rollout: RolloutData, transition: RolloutTransitionData): void {
    if (!COUNTED_OUTCOMES.has(transition.to)) return;
    this.rollouts.inc({ bundle: rollout.bundle, outcome: transition.to });
    if (transition.to === 'done' || transition.to === 'failed') {
      const seconds = (transition.at.getTime() - rollout.startedAt.getTime()) / 1000;
      this.rolloutDuration.observe({ bundle: rollout.bundle, outcome: transition.to }, seconds);
    }
  }

  reloadFinished(bundle: string, record: ReloadRecordData): void {
    const finishedAt = record.finishedAt ?? new Date();
    const seconds = (finishedAt.getTime() - record.startedAt.getTime()) / 1000;
    const labels = {
      bundle,
      service: record.service,
      action: record.action,
      outcome: record.ok ? 'ok' : 'failed',
    };
    this.reloadDuration.observe(labels, seconds);
  }

  candidateRejected(bundle: string, reason: string): void {
    this.rejected.inc({ bundle, reason });
  }

  agentConnected(nodeId: string): void {
    this.agentConnects.inc({ node: nodeId });
  }
}

function epochSeconds(date: Date | undefined): number | undefined {
  return date ? date.getTime() / 1000 : undefined;
}
