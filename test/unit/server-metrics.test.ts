import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentMetrics } from '../../agent/agent-metrics';
import type { NodeRecord } from '../../server/fleet';
import { newRollout, transitionRollout, type ReloadRecordData } from '../../server/rollout';
import { ServerMetrics } from '../../server/server-metrics';
import type { BundleVersion } from '../../server/version-store';
import { parseScrape } from '../support/prometheus-scrape';

// The metrics module over fake sources: gauges computed from state at scrape time, counters and
// histograms from events, all read back through a Prometheus text-format parser.

const NOT_AFTER = new Date('2027-03-01T12:00:00Z');
const ACCEPTED = new Date('2026-12-01T00:00:00Z');
const current = {
  bundle: 'example',
  version: 3,
  acceptedAt: ACCEPTED,
  files: [
    {
      source: 'fullchain.pem',
      target: 'full.crt',
      mode: 0o644,
      sha256: 'aa',
      size: 1,
      content: Buffer.from('x'),
    },
  ],
  validated: { leaf: { notAfter: NOT_AFTER, notBefore: ACCEPTED } },
} as unknown as BundleVersion;

function node(nodeId: string, connected: boolean, sha256: string): NodeRecord {
  const bundles = new Map([
    [
      'example',
      {
        appliedVersion: 3,
        files: [{ path: 'full.crt', sha256, mode: 0o644 }],
        lastError: undefined,
        updatedAt: ACCEPTED,
        driftRepairs: 0,
      },
    ],
  ]);
  return { nodeId, connected, bundles } as unknown as NodeRecord;
}

function metricsOver(nodes: NodeRecord[], expected: string[], warning = '') {
  return new ServerMetrics({
    bundleNames: ['example', 'pending'],
    store: { current: (bundle) => (bundle === 'example' ? current : undefined) },
    fleet: { nodes: () => nodes, get: (id) => nodes.find((candidate) => candidate.nodeId === id) },
    expectedNodes: { current: () => expected },
    expiry: { warning: (bundle) => (bundle === 'example' ? warning : '') },
    serverVersion: '9.9.9',
  });
}

describe('ServerMetrics', () => {
  it('gauges read the store, the fleet and the expected set at scrape time', async () => {
    const nodes = [node('a', true, 'aa'), node('b', false, 'aa'), node('c', true, 'stale')];
    const metrics = metricsOver(nodes, ['a', 'b', 'c', 'd'], 'expires soon');
    const scrape = parseScrape(await metrics.registry.metrics());
    const example = { bundle: 'example' };
    assert.equal(
      scrape.value('certsync_certificate_expiration_timestamp_seconds', example),
      NOT_AFTER.getTime() / 1000,
    );
    assert.equal(
      scrape.value('certsync_bundle_accepted_timestamp_seconds', example),
      ACCEPTED.getTime() / 1000,
    );
    assert.equal(scrape.value('certsync_bundle_version', example), 3);
    assert.equal(scrape.value('certsync_bundle_version', { bundle: 'pending' }), 0);
    assert.equal(
      scrape.sample('certsync_certificate_expiration_timestamp_seconds', { bundle: 'pending' }),
      undefined,
      'no leaf, no expiry sample',
    );
    assert.equal(scrape.value('certsync_nodes_expected', example), 4);
    assert.equal(
      scrape.value('certsync_nodes_in_sync', example),
      2,
      'a and b hold the bytes; c is stale, d never connected',
    );
    assert.equal(scrape.value('certsync_certificate_expiry_warning', example), 1);
    assert.equal(scrape.value('certsync_certificate_expiry_warning', { bundle: 'pending' }), 0);
    assert.equal(scrape.value('certsync_agent_connections'), 2);
    assert.equal(scrape.value('certsync_agent_connected', { node: 'b' }), 0);
    assert.equal(scrape.value('certsync_build_info', { version: '9.9.9' }), 1);

    nodes.pop();
    const later = parseScrape(await metrics.registry.metrics());
    assert.equal(
      later.sample('certsync_agent_connected', { node: 'c' }),
      undefined,
      'a forgotten node leaves no stale series',
    );
  });

  it('counts rollouts by outcome and observes durations of finished ones', async () => {
    const metrics = metricsOver([], []);
    const started = new Date('2026-12-04T00:00:00Z');
    const rollout = newRollout('example', 4, 'accepted', started);
    const step = (to: Parameters<typeof transitionRollout>[1], seconds: number) =>
      metrics.rolloutChanged(
        rollout,
        transitionRollout(rollout, to, new Date(started.getTime() + seconds * 1000)),
      );
    step('stalled', 30);
    step('converged', 40);
    step('reloading', 41);
    step('done', 45);
    const scrape = parseScrape(await metrics.registry.metrics());
    assert.equal(
      scrape.value('certsync_rollouts_total', { bundle: 'example', outcome: 'stalled' }),
      1,
    );
    assert.equal(
      scrape.value('certsync_rollouts_total', { bundle: 'example', outcome: 'done' }),
      1,
    );
    assert.equal(
      scrape.sample('certsync_rollouts_total', { outcome: 'converged' }),
      undefined,
      'intermediate states are not outcomes',
    );
    assert.equal(
      scrape.histogramCount('certsync_rollout_duration_seconds', {
        bundle: 'example',
        outcome: 'done',
      }),
      1,
    );
    assert.match(
      scrape.text,
      /certsync_rollout_duration_seconds_sum\{bundle="example",outcome="done"\} 45\n/,
    );
    assert.match(
      scrape.text,
      /certsync_rollout_duration_seconds_bucket\{le="30",bundle="example",outcome="done"\} 0\n/,
    );
    assert.match(
      scrape.text,
      /certsync_rollout_duration_seconds_bucket\{le="60",bundle="example",outcome="done"\} 1\n/,
    );
  });

  it('observes reload durations per service and action, and counts rejections and connects', async () => {
    const metrics = metricsOver([], []);
    const record = {
      service: 'iklimco_vault',
      action: 'force-update',
      startedAt: new Date(0),
      finishedAt: new Date(7_500),
      ok: true,
    } as ReloadRecordData;
    metrics.reloadFinished('example', record);
    metrics.reloadFinished('example', { ...record, ok: false, finishedAt: new Date(1_000) });
    metrics.candidateRejected('example', 'key-mismatch');
    metrics.candidateRejected('example', 'key-mismatch');
    metrics.candidateRejected('example', 'expired');
    metrics.agentConnected('a');
    metrics.agentConnected('a');
    const scrape = parseScrape(await metrics.registry.metrics());
    const labels = { bundle: 'example', service: 'iklimco_vault', action: 'force-update' };
    assert.equal(
      scrape.histogramCount('certsync_reload_duration_seconds', { ...labels, outcome: 'ok' }),
      1,
    );
    assert.equal(
      scrape.histogramCount('certsync_reload_duration_seconds', { ...labels, outcome: 'failed' }),
      1,
    );
    assert.match(
      scrape.text,
      /certsync_reload_duration_seconds_sum\{bundle="example",service="iklimco_vault",action="force-update",outcome="ok"\} 7.5\n/,
    );
    assert.equal(
      scrape.value('certsync_rejected_candidates_total', {
        bundle: 'example',
        reason: 'key-mismatch',
      }),
      2,
    );
    assert.equal(
      scrape.value('certsync_rejected_candidates_total', { bundle: 'example', reason: 'expired' }),
      1,
    );
    assert.equal(scrape.value('certsync_agent_connects_total', { node: 'a' }), 2);
  });
});

describe('AgentMetrics', () => {
  it('records applied versions, write failures by code, drift repairs and the connection', async () => {
    let connected = false;
    const metrics = new AgentMetrics(() => connected);
    metrics.applyReported({
      bundle: 'example',
      version: 2,
      ok: true,
      files: [],
      error: undefined,
      filesWritten: 2,
    });
    metrics.applyReported({
      bundle: 'example',
      version: 3,
      ok: false,
      files: [],
      error: { code: 'ENOSPC', message: 'no space', path: 'x' },
      filesWritten: 0,
    });
    metrics.driftReported('example');
    connected = true;
    const scrape = parseScrape(await metrics.registry.metrics());
    assert.equal(
      scrape.value('certsync_agent_applied_version', { bundle: 'example' }),
      2,
      'a failed push does not move the applied version',
    );
    assert.equal(
      scrape.value('certsync_agent_write_failures_total', { bundle: 'example', code: 'ENOSPC' }),
      1,
    );
    assert.equal(scrape.value('certsync_agent_drift_repairs_total', { bundle: 'example' }), 1);
    assert.equal(scrape.value('certsync_agent_server_connected'), 1);
  });
});
