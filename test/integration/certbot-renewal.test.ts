import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { sha256Hex } from '../../common/digest';
import { createCertbot } from '../support/certbot';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import { startPebble } from '../support/pebble';
import { checkTools } from '../support/tools';

// The main job on real input: a real certbot renewal against pebble (a real ACME CA), watched by
// a real certsync-server, written by real agents into their own folders.

const tools = checkTools(['pebble', 'certbot']);
const LINEAGE = 'example.test';
const NODES = ['node-1', 'node-2'];

async function assertNodesHoldLive(harness: FleetHarness, liveDir: string): Promise<void> {
  for (const nodeId of NODES) {
    for (const [kind, { target, mode }] of Object.entries(HARNESS_TARGETS)) {
      const live = await fs.readFile(path.join(liveDir, `${kind}.pem`));
      const written = path.join(harness.nodeDir(nodeId), target);
      assert.equal(
        sha256Hex(await fs.readFile(written)),
        sha256Hex(live),
        `${nodeId}/${target} bytes`,
      );
      assert.equal((await fs.stat(written)).mode & 0o777, mode, `${nodeId}/${target} mode`);
    }
  }
}

test(
  'a real certbot renewal reaches every agent folder',
  { skip: tools.skip, timeout: 240_000 },
  async (t) => {
    tools.require();
    const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-certbot-'));
    const pebble = await startPebble(workDir);
    t.after(() => pebble.stop());
    const certbot = createCertbot({
      workDir,
      directoryUrl: pebble.directoryUrl,
      apiCaPath: pebble.apiCaPath,
    });
    await certbot.issue(LINEAGE, ['*.example.test', 'example.test']);
    const liveDir = certbot.liveDir(LINEAGE);

    const harness = await FleetHarness.create({ workDir, liveDir });
    t.after(() => harness.stop());
    await harness.startServer();
    for (const nodeId of NODES) await harness.startAgent(nodeId);
    await harness.waitForConvergence(1, NODES);
    await assertNodesHoldLive(harness, liveDir);

    await certbot.renew(LINEAGE);
    const renewedAt = Date.now();
    assert.equal(
      await fs.readlink(path.join(liveDir, 'fullchain.pem')),
      `../../archive/${LINEAGE}/fullchain2.pem`,
    );
    const status = await harness.waitForConvergence(2, NODES);
    t.diagnostic(
      `certbot renew finished → every node confirmed version 2: ${Date.now() - renewedAt} ms`,
    );
    await assertNodesHoldLive(harness, liveDir);

    const bundle = status.bundles[0]!;
    const liveLeaf = new (await import('node:crypto')).X509Certificate(
      await fs.readFile(path.join(liveDir, 'cert.pem')),
    );
    assert.equal(
      bundle.leafFingerprintSha256,
      liveLeaf.fingerprint256.replace(/:/g, '').toLowerCase(),
    );
    assert.equal(bundle.nodesInSync, NODES.length);

    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      t.after(() => fs.rm(workDir, { recursive: true, force: true }));
  },
);
