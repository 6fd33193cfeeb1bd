import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256Hex } from '../../common/digest';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../support/pki';
import { waitFor } from '../support/processes';

const NODES = ['node-a', 'node-b', 'node-c'];

/** The bytes and modes a node folder must hold for `pems`. */
async function assertNodeHolds(
  harness: FleetHarness,
  nodeId: string,
  pems: CertbotPemSet,
): Promise<void> {
  for (const kind of ['fullchain', 'privkey'] as const) {
    const file = path.join(harness.nodeDir(nodeId), HARNESS_TARGETS[kind].target);
    assert.equal(
      sha256Hex(await fs.readFile(file)),
      sha256Hex(pems[kind]),
      `${nodeId} ${kind} bytes`,
    );
    assert.equal(
      (await fs.stat(file)).mode & 0o777,
      HARNESS_TARGETS[kind].mode,
      `${nodeId} ${kind} mode`,
    );
  }
}

async function fileIdentities(harness: FleetHarness): Promise<string[]> {
  const identities: string[] = [];
  for (const nodeId of NODES) {
    for (const { target } of Object.values(HARNESS_TARGETS)) {
      const stat = await fs.stat(path.join(harness.nodeDir(nodeId), target));
      identities.push(`${nodeId}/${target}:${stat.ino}:${stat.mtimeMs}`);
    }
  }
  return identities;
}

describe('server and three agents as real processes on loopback', () => {
  let workDir: string;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;
  let current: CertbotPemSet;
  let version = 1;

  const renew = async (pems: CertbotPemSet, delayBetweenLinksMs = 0) => {
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', pems, { delayBetweenLinksMs });
  };
  const nextPems = async (): Promise<CertbotPemSet> => {
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test', 'example.test'],
    });
    return {
      cert: leaf.certPem,
      chain: intermediate.certPem,
      fullchain: leaf.certPem + intermediate.certPem,
      privkey: leaf.keyPem,
    };
  };

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-loopback-'));
    const set = await createWildcardSet();
    intermediate = set.intermediate;
    current = set.pems;
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({ workDir, liveDir });
    await harness.startServer();
    for (const nodeId of NODES) await harness.startAgent(nodeId);
  });

  after(async () => {
    await harness.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('every agent writes version 1 with the configured modes', async () => {
    await harness.waitForConvergence(1, NODES);
    for (const nodeId of NODES) await assertNodeHolds(harness, nodeId, current);
  });

  test('a certbot-style renewal reaches every node folder', async () => {
    current = await nextPems();
    const started = Date.now();
    await renew(current);
    await harness.waitForConvergence(++version, NODES);
    const elapsedMs = Date.now() - started;
    for (const nodeId of NODES) await assertNodeHolds(harness, nodeId, current);
    process.stdout.write(`# renewal to every node folder: ${elapsedMs} ms (settleMs 200)\n`);
  });

  test('a renewal whose key does not match is rejected and nothing changes on any node', async () => {
    const before = await fileIdentities(harness);
    const broken = await nextPems();
    const stranger = await issueLeaf(intermediate, { dnsNames: ['*.example.test'] });
    await renew({ ...broken, privkey: stranger.keyPem });

    const status = await waitFor('the rejection in status', async () => {
      const response = await harness.admin.getStatus();
      return response.bundles[0]?.lastRejected ? response : undefined;
    });
    const bundle = status.bundles[0]!;
    assert.match(bundle.lastRejected!.reason, /^key-mismatch: /);
    assert.equal(bundle.currentVersion, version);
    assert.equal(bundle.nodesInSync, NODES.length);
    assert.deepEqual(await fileIdentities(harness), before);
    for (const nodeId of NODES) await assertNodeHolds(harness, nodeId, current);

    // Put a good renewal back so later tests start from a valid source.
    current = await nextPems();
    await renew(current);
    await harness.waitForConvergence(++version, NODES);
  });

  test('a killed and restarted server keeps its version and rewrites nothing', async () => {
    const before = await fileIdentities(harness);
    await harness.server!.kill();
    await sleep(300);
    await harness.startServer();
    const status = await harness.waitForConvergence(version, NODES);
    assert.equal(status.bundles[0]?.currentVersion, version);
    assert.deepEqual(await fileIdentities(harness), before, 'no file was rewritten on any node');
  });

  test('a managed file changed on a node is put back and reported as drift', async () => {
    const target = path.join(harness.nodeDir('node-b'), HARNESS_TARGETS.fullchain.target);
    await fs.writeFile(target, 'tampered\n');
    await waitFor('the drift repair', async () => {
      const bytes = await fs.readFile(target);
      return sha256Hex(bytes) === sha256Hex(current.fullchain) ? true : undefined;
    });
    const status = await harness.waitForConvergence(version, NODES);
    const node = status.bundles[0]?.nodes.find((candidate) => candidate.nodeId === 'node-b');
    assert.ok((node?.driftRepairs ?? 0) >= 1);
  });

  test('an agent that was away picks up the missed version on reconnect', async () => {
    await harness.agents.get('node-c')!.stop();
    current = await nextPems();
    await renew(current);
    await harness.waitForConvergence(++version, ['node-a', 'node-b']);
    const partial = await harness.admin.getStatus();
    const offline = partial.bundles[0]?.nodes.find((node) => node.nodeId === 'node-c');
    assert.equal(offline?.inSync, false);

    await harness.startAgent('node-c');
    await harness.waitForConvergence(version, NODES);
    await assertNodeHolds(harness, 'node-c', current);
  });

  test('a second agent claiming a connected node ID is refused', async () => {
    const imposterDir = path.join(workDir, 'imposter');
    const original = harness.agents.get('node-a')!;
    const imposter = await harness.startAgent('node-a', imposterDir);
    await waitFor('the refusal in the imposter log', async () =>
      (await fs.readFile(imposter.logFile, 'utf8')).includes('already connected')
        ? true
        : undefined,
    );
    assert.deepEqual(await fs.readdir(imposterDir), []);
    await imposter.stop();
    harness.agents.set('node-a', original);
  });

  test('GetStatus over TLS with the admin token through server reflection (buf curl, no .proto files) shows every node in sync', async () => {
    const buf = path.join(process.cwd(), 'node_modules', '.bin', 'buf');
    const { spawnSync } = await import('node:child_process');
    const token = (await fs.readFile(harness.credentials.adminTokenFile, 'utf8')).trim();
    const tls = ['--cacert', harness.credentials.caFile, '-H', `authorization: Bearer ${token}`];
    const url = `https://127.0.0.1:${harness.port}/certsync.v1.AdminService/GetStatus`;
    const result = spawnSync(buf, ['curl', '--protocol', 'grpc', ...tls, url], {
      encoding: 'utf8',
      cwd: os.tmpdir(),
    });
    assert.equal(result.status, 0, result.stderr);
    const status = JSON.parse(result.stdout) as {
      bundles: Array<{
        currentVersion: string;
        nodesInSync: number;
        nodes: Array<{ inSync?: boolean }>;
      }>;
    };
    assert.equal(status.bundles[0]?.currentVersion, String(version));
    assert.equal(status.bundles[0]?.nodesInSync, NODES.length);
    assert.ok(status.bundles[0]?.nodes.every((node) => node.inSync === true));
    assert.ok(!result.stdout.includes('PRIVATE KEY'));
  });

  test('certsyncctl status prints the table and exits 0 when in sync', async () => {
    const result = await harness.runCtl(['status']);
    assert.equal(result.code, 0, result.stderr);
    for (const nodeId of NODES) assert.match(result.stdout, new RegExp(nodeId));
    assert.match(result.stdout, new RegExp(`version ${version}`));
    const json = await harness.runCtl(['--json', 'status']);
    assert.equal(JSON.parse(json.stdout).bundles[0].currentVersion, version);
  });
});
