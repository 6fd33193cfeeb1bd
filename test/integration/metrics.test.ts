import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../support/pki';
import { freePort, waitFor } from '../support/processes';
import { scrapeMetrics, type Scrape } from '../support/prometheus-scrape';

// A real server with `metrics.listen` and two agents with --metrics-listen, over TLS with tokens:
// after real rollouts, a rejected renewal and a drift repair, /metrics is fetched over HTTP,
// parsed with a Prometheus text-format parser, and its values are compared with the certificates
// and the fleet. The first leaf expires in 10 days, inside the default 14-day expiry window.

const NODES = ['node-a', 'node-b'];
const DAY_MS = 86_400_000;
const BUNDLE = { bundle: 'example' };

describe('metrics, health and the expiry watch on loopback', () => {
  let workDir: string;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;
  let metricsUrl: string;
  const agentMetricsPorts = new Map<string, number>();
  const keyPems: string[] = [];

  const notAfterSeconds = (certPem: string) =>
    Math.floor(Date.parse(new X509Certificate(certPem).validTo) / 1000);
  const pemsFor = (leaf: IssuedCertificate): CertbotPemSet => ({
    cert: leaf.certPem,
    chain: intermediate.certPem,
    fullchain: leaf.certPem + intermediate.certPem,
    privkey: leaf.keyPem,
  });
  const newLeaf = async (notAfter?: Date) => {
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
      ...(notAfter ? { notAfter } : {}),
    });
    keyPems.push(leaf.keyPem);
    return leaf;
  };
  const scrapeUntil = (what: string, check: (scrape: Scrape) => boolean) =>
    waitFor(what, async () => {
      const scrape = await scrapeMetrics(metricsUrl);
      return check(scrape) ? scrape : undefined;
    });
  const agentScrape = (nodeId: string) =>
    scrapeMetrics(`http://127.0.0.1:${agentMetricsPorts.get(nodeId)}/metrics`);
  const serverLog = () => fs.readFile(harness.server!.logFile, 'utf8');
  const logLines = async (message: string) =>
    (await serverLog())
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line['msg'] === message);

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-metrics-'));
    const set = await createWildcardSet({ notAfter: new Date(Date.now() + 10 * DAY_MS) });
    intermediate = set.intermediate;
    keyPems.push(set.leaf.keyPem);
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [
        `metrics: { listen: 127.0.0.1:${metricsPort} }`,
        `fleet: { mode: static, nodes: [${NODES.join(', ')}] }`,
      ],
    });
    await harness.startServer();
    for (const nodeId of NODES) {
      const port = await freePort();
      agentMetricsPorts.set(nodeId, port);
      await harness.startAgent(nodeId, harness.nodeDir(nodeId), [
        '--metrics-listen',
        `127.0.0.1:${port}`,
      ]);
    }
  });

  after(async () => {
    await harness.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('/healthz and /readyz answer 200 on a running server; unknown paths 404', async () => {
    const base = metricsUrl.replace('/metrics', '');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
  });

  test('after the first rollout the gauges hold the leaf, the version and the fleet', async () => {
    await harness.waitForConvergence(1, NODES);
    const scrape = await scrapeUntil(
      'rollout 1 counted as done',
      (s) => s.sample('certsync_rollouts_total', { ...BUNDLE, outcome: 'done' }) !== undefined,
    );
    const status = await harness.admin.getStatus();
    const bundle = status.bundles[0]!;

    const leafPem = (
      await fs.readFile(
        path.join(harness.nodeDir('node-a'), HARNESS_TARGETS.fullchain.target),
        'utf8',
      )
    ).split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
    assert.equal(
      scrape.value('certsync_certificate_expiration_timestamp_seconds', BUNDLE),
      notAfterSeconds(leafPem),
    );
    assert.equal(
      scrape.value('certsync_certificate_expiration_timestamp_seconds', BUNDLE),
      bundle.notAfter!.getTime() / 1000,
    );
    assert.equal(scrape.value('certsync_bundle_version', BUNDLE), 1);
    assert.equal(scrape.value('certsync_nodes_expected', BUNDLE), 2);
    assert.equal(scrape.value('certsync_nodes_in_sync', BUNDLE), 2);
    assert.equal(scrape.value('certsync_rollouts_total', { ...BUNDLE, outcome: 'done' }), 1);
    assert.equal(scrape.family('certsync_rollout_duration_seconds').type, 'HISTOGRAM');
    assert.equal(
      scrape.histogramCount('certsync_rollout_duration_seconds', { ...BUNDLE, outcome: 'done' }),
      1,
    );
    assert.equal(scrape.family('certsync_reload_duration_seconds').type, 'HISTOGRAM');
    assert.equal(scrape.value('certsync_agent_connections'), 2);
    for (const node of NODES) {
      assert.equal(scrape.value('certsync_agent_connected', { node }), 1);
      assert.equal(scrape.value('certsync_agent_connects_total', { node }), 1);
    }
  });

  test('a leaf expiring within expiryWarningDays warns in the log (once), GetStatus, certsyncctl and metrics', async () => {
    const scrape = await scrapeMetrics(metricsUrl);
    assert.equal(scrape.value('certsync_certificate_expiry_warning', BUNDLE), 1);
    const bundle = (await harness.admin.getStatus()).bundles[0]!;
    assert.match(
      bundle.expiryWarning,
      /expires at .* \(in (9|10) days\) and no renewal has been accepted since/,
    );
    const ctl = await harness.runCtl(['status']);
    assert.match(ctl.stdout, /WARNING expiry: the current leaf expires at/);
    const warnings = await logLines('Certificate expiry warning');
    assert.equal(warnings.length, 1, 'one line per change of state, not per evaluation');
    assert.equal(warnings[0]!['bundle'], 'example');
    assert.equal(warnings[0]!['version'], 1);
  });

  test('the agents export what they applied and whether they are connected', async () => {
    for (const nodeId of NODES) {
      const scrape = await agentScrape(nodeId);
      assert.equal(scrape.value('certsync_agent_applied_version', BUNDLE), 1);
      assert.equal(scrape.value('certsync_agent_server_connected'), 1);
      assert.equal(scrape.sample('certsync_agent_write_failures_total', BUNDLE), undefined);
      assert.equal(
        (await fetch(`http://127.0.0.1:${agentMetricsPorts.get(nodeId)}/readyz`)).status,
        200,
      );
    }
  });

  test('a rejected renewal is counted by reason and the version stays', async () => {
    const leaf = await newLeaf();
    const stranger = await newLeaf();
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', {
      ...pemsFor(leaf),
      privkey: stranger.keyPem,
    });
    const scrape = await scrapeUntil(
      'the rejection counted',
      (s) =>
        s.sample('certsync_rejected_candidates_total', { ...BUNDLE, reason: 'key-mismatch' }) !==
        undefined,
    );
    assert.equal(
      scrape.value('certsync_rejected_candidates_total', { ...BUNDLE, reason: 'key-mismatch' }),
      1,
    );
    assert.equal(scrape.value('certsync_bundle_version', BUNDLE), 1);
    assert.equal(scrape.value('certsync_certificate_expiry_warning', BUNDLE), 1);
    assert.match(
      (await harness.admin.getStatus()).bundles[0]!.expiryWarning,
      /was rejected: key-mismatch/,
    );
  });

  test('a good renewal moves the version, counts a second done rollout and clears the warning', async () => {
    const leaf = await newLeaf(new Date(Date.now() + 80 * DAY_MS));
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', pemsFor(leaf));
    await harness.waitForConvergence(2, NODES);
    const scrape = await scrapeUntil(
      'rollout 2 counted',
      (s) => s.value('certsync_rollouts_total', { ...BUNDLE, outcome: 'done' }) === 2,
    );
    assert.equal(scrape.value('certsync_bundle_version', BUNDLE), 2);
    assert.equal(
      scrape.value('certsync_certificate_expiration_timestamp_seconds', BUNDLE),
      notAfterSeconds(leaf.certPem),
    );
    assert.equal(scrape.value('certsync_certificate_expiry_warning', BUNDLE), 0);
    assert.equal(scrape.value('certsync_nodes_in_sync', BUNDLE), 2);
    assert.equal((await harness.admin.getStatus()).bundles[0]!.expiryWarning, '');
    assert.equal((await logLines('Certificate expiry warning cleared')).length, 1);
    await waitFor('node-b to report version 2', async () =>
      (await agentScrape('node-b')).value('certsync_agent_applied_version', BUNDLE) === 2
        ? true
        : undefined,
    );
  });

  test('a drift repair is counted on the agent; a stopped agent leaves the connection gauges', async () => {
    await fs.writeFile(
      path.join(harness.nodeDir('node-a'), HARNESS_TARGETS.fullchain.target),
      'tampered\n',
    );
    await waitFor('the drift repair counted', async () => {
      const sample = (await agentScrape('node-a')).sample(
        'certsync_agent_drift_repairs_total',
        BUNDLE,
      );
      return sample && Number(sample.value) >= 1 ? true : undefined;
    });
    await harness.waitForConvergence(2, NODES);

    await harness.agents.get('node-b')!.stop();
    const scrape = await scrapeUntil(
      'node-b disconnected',
      (s) => s.value('certsync_agent_connections') === 1,
    );
    assert.equal(scrape.value('certsync_agent_connected', { node: 'node-b' }), 0);
    assert.equal(scrape.value('certsync_agent_connected', { node: 'node-a' }), 1);
  });

  test('no metric, label or help text carries key material or a token', async () => {
    const tokens = await Promise.all(
      [harness.credentials.agentTokenFile, harness.credentials.adminTokenFile].map((file) =>
        fs.readFile(file, 'utf8'),
      ),
    );
    const secrets = [
      ...keyPems.flatMap((pem) =>
        pem.split('\n').filter((line) => line.length >= 40 && !line.startsWith('-----')),
      ),
      ...tokens.map((token) => token.trim()),
    ];
    const texts = [(await scrapeMetrics(metricsUrl)).text, (await agentScrape('node-a')).text];
    for (const text of texts) {
      assert.doesNotMatch(text, /PRIVATE KEY|BEGIN /);
      for (const secret of secrets)
        assert.ok(!text.includes(secret), 'a key line or token appears in /metrics');
    }
  });
});
