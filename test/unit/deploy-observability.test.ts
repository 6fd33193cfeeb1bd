import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { AgentMetrics } from '../../agent/agent-metrics';
import { ServerMetrics } from '../../server/server-metrics';
import { metricNamesInPromql } from '../support/promql-metric-names';

// deploy/prometheus-rules.yml and deploy/grafana-dashboard.json must only use metrics certsync
// really exports: the names come from the server's and the agent's registries, not from a list.

function projectRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'deploy', 'prometheus-rules.yml'))) return dir;
  }
  throw new Error(`no deploy/prometheus-rules.yml above ${__dirname}`);
}

/** Every series name the registries can produce (a histogram's _bucket, _sum and _count too). */
async function exportedSeriesNames(): Promise<Set<string>> {
  const server = new ServerMetrics({
    bundleNames: [],
    store: { current: () => undefined },
    fleet: { nodes: () => [], get: () => undefined },
    expectedNodes: { current: () => [] },
    expiry: { warning: () => '' },
    serverVersion: 'test',
  });
  const agent = new AgentMetrics(() => false);
  const names = new Set<string>();
  for (const registry of [server.registry, agent.registry]) {
    for (const metric of await registry.getMetricsAsJSON()) {
      names.add(metric.name);
      if (String(metric.type) === 'histogram')
        for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    }
  }
  return names;
}

/** Series Prometheus makes itself for every scrape target. */
const PROMETHEUS_SERIES = new Set(['up', 'scrape_duration_seconds']);

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
}

describe('deploy/ observability files', () => {
  const root = projectRoot();

  it('every alert expression is valid PromQL over metrics the server or agent exports', async () => {
    const exported = await exportedSeriesNames();
    const rules = parseYaml(
      readFileSync(path.join(root, 'deploy', 'prometheus-rules.yml'), 'utf8'),
    ) as {
      groups: Array<{ name: string; rules: AlertRule[] }>;
    };
    const alerts = rules.groups.flatMap((group) => group.rules);
    assert.ok(alerts.length >= 3);
    for (const alert of alerts) {
      const names = metricNamesInPromql(alert.expr);
      assert.ok(names.length > 0, `${alert.alert} selects no metric`);
      for (const name of names) {
        assert.ok(
          exported.has(name) || PROMETHEUS_SERIES.has(name),
          `${alert.alert}: ${name} is not exported by certsync`,
        );
      }
    }

    const byName = new Map(alerts.map((alert) => [alert.alert, alert]));
    const expiresSoon = byName.get('CertsyncCertificateExpiresSoon');
    assert.deepEqual(metricNamesInPromql(expiresSoon!.expr), [
      'certsync_certificate_expiration_timestamp_seconds',
    ]);
    assert.match(expiresSoon!.expr, /< 14 \* 86400$/);
    const outOfSync = byName.get('CertsyncFleetOutOfSync');
    assert.deepEqual(metricNamesInPromql(outOfSync!.expr).sort(), [
      'certsync_nodes_expected',
      'certsync_nodes_in_sync',
    ]);
    assert.equal(outOfSync!.for, '10m');
    assert.match(
      byName.get('CertsyncRolloutFailed')!.expr,
      /certsync_rollouts_total\{outcome="failed"\}/,
    );
  });

  it('the Grafana dashboard is valid JSON whose every query uses exported metrics', async () => {
    const exported = await exportedSeriesNames();
    const dashboard = JSON.parse(
      readFileSync(path.join(root, 'deploy', 'grafana-dashboard.json'), 'utf8'),
    ) as {
      title: string;
      panels: Array<{ id: number; title: string; targets: Array<{ expr: string }> }>;
    };
    assert.equal(dashboard.title, 'certsync');
    assert.equal(
      new Set(dashboard.panels.map((panel) => panel.id)).size,
      dashboard.panels.length,
      'panel ids are unique',
    );
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      assert.ok(panel.targets.length > 0, `panel ${panel.title} has no query`);
      for (const target of panel.targets) {
        for (const name of metricNamesInPromql(target.expr)) {
          assert.ok(
            exported.has(name),
            `panel ${panel.title}: ${name} is not exported by certsync`,
          );
          used.add(name.replace(/_(bucket|sum|count)$/, ''));
        }
      }
    }
    for (const name of [
      'certsync_certificate_expiration_timestamp_seconds',
      'certsync_nodes_in_sync',
      'certsync_rollouts_total',
      'certsync_rejected_candidates_total',
    ]) {
      assert.ok(used.has(name), `the dashboard shows ${name}`);
    }
  });

  it('an expression naming a metric that does not exist is caught', async () => {
    const exported = await exportedSeriesNames();
    const names = metricNamesInPromql('certsync_certificate_not_after_seconds - time() < 86400');
    assert.deepEqual(
      names.filter((name) => !exported.has(name)),
      ['certsync_certificate_not_after_seconds'],
    );
    assert.throws(() => metricNamesInPromql('sum(rate(certsync_rollouts_total[5m]'), {
      name: 'PromqlSyntaxError',
    });
  });
});
